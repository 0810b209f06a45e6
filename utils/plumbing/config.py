"""Configs: a JSON file plus `--set key=value` overrides, parsed once into a typed, validated dataclass.

The defaults below are the standard protocol, so a config file holds only what differs from it. Every
other module reads `cfg.learning_rate`, never `raw["learning_rate"]`; every mistake becomes one
`UserError` line naming the file (or the --set), the key, what was wrong and how to fix it. Nothing here
imports torch: a bad config is refused before torch loads.
"""
import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from models.backends import BACKENDS
from models.registry import BASE, DEFAULT_NETWORK, NETWORKS, VARIANTS, network_problem, variant_name
from utils.plumbing.checks import (
    backend_list,
    boolean,
    channel_list,
    cluster_resources,
    dcn_backend,
    device,
    launcher,
    layer_choice,
    layer_shape,
    non_negative_float,
    non_negative_int,
    one_of,
    open_fraction,
    optional_of,
    optional_robustness_images,
    optional_subset,
    positive_float,
    positive_int,
    seed_list,
    seeds_by_variant,
    text,
    variant,
    variant_list,
)
from utils.plumbing.errors import UserError

# Keys older configs used, and the key that replaced each: accepted and mapped at parsing.
RENAMED = {"model_type": "variant"}


# A field's metadata: `check` validates the JSON value, `convert` (optional) turns it into the field's value
# (a variant's legacy integer into its name). `required`: the config (or the calling script) must give it.
def required(check_fn, convert=None):
    return field(metadata={"check": check_fn, "convert": convert})


def default(check_fn, value, convert=None, later=False, default_from=None):
    """`later`: a key added after results were published; the files a config is written into (a run's record and
    checkpoints, a comparison) leave it out while it holds this default, so that every file written before it is
    written again byte for byte, and a file without it reads as this default. `default_from`: (key, function): when
    the config leaves this key out but gives that one, the default is the function of that key's value."""
    factory = (lambda: list(value)) if isinstance(value, (list, tuple)) else (lambda: value)
    return field(default_factory=factory, metadata={"check": check_fn, "convert": convert, "later": later, "default_from": default_from})


NETWORK_WIDTHS = ("network", lambda name: list(NETWORKS[name].widths))  # conv_ch left out: the network's own widths


def default_of(cls, name):
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


class Recorded:
    """What writes a config into a file, and reads it back: the one owner of which keys a file leaves out."""

    def as_record(self, keys=None):
        """The config (or `keys` of it) as files keep it: the later keys that hold their defaults left out."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        values = dataclasses.asdict(self) if keys is None else {key: getattr(self, key) for key in keys}
        return {key: value for key, value in values.items() if not (fields[key].metadata.get("later") and value == default_of(type(self), key))}

    @classmethod
    def read_record(cls, recorded, keys):
        """`keys` of a file's config: a key the file lacks holds its default (it was written before the key existed,
        or left out holding it)."""
        return {key: recorded[key] if key in recorded else default_of(cls, key) for key in keys}


@dataclass(frozen=True, kw_only=True)
class TrainingKeys(Recorded):
    """What a training run needs besides its variant, seed and outdir; shared by train and compare configs."""
    # The network every variant is built in: the small CNN of the question, or "resnet20" (He et al.'s CIFAR ResNet-20).
    network: str = default(one_of(*NETWORKS), DEFAULT_NETWORK, later=True)
    conv_ch: list = default(channel_list, [64, 128], default_from=NETWORK_WIDTHS)  # the widths of the network's blocks or stages
    batch_size: int = default(positive_int, 32)
    test_size: float = default(open_fraction, 0.1)  # validation share of the training images (stratified)
    learning_rate: float = default(positive_float, 0.001)
    weight_decay: float = default(non_negative_float, 0.01)
    num_epoch: int = default(positive_int, 30)
    # The recipe (docs/configuration.md); the defaults are the standard protocol's: AdamW at a constant rate, no augmentation.
    optimizer: str = default(one_of("adamw", "sgd"), "adamw", later=True)  # "sgd": momentum 0.9, Nesterov, weight decay as L2
    lr_schedule: str = default(one_of("constant", "cosine"), "constant", later=True)  # "cosine": to zero at the end of the last epoch
    warmup_epochs: int = default(non_negative_int, 0, later=True)  # a linear warmup over these epochs' steps, before the schedule
    augmentation: str = default(one_of("none", "crop-flip"), "none", later=True)  # "crop-flip": 4-pixel padded random crop + horizontal flip
    # Stratified subset of the 50,000 training images, drawn before the train/validation split; null = all.
    train_subset: Optional[int] = default(optional_subset, None)
    data_dir: str = default(text, "./data")
    download: bool = default(boolean, True)
    device: str = default(device, "auto")
    dcn_backend: str = default(dcn_backend, "auto")
    # Ablations: which blocks of a deformable variant deform (null: the variant's choice); the predictors' lr multiplier.
    deformable_layers: object = default(layer_choice, None)
    offset_lr_mult: float = default(non_negative_float, 1.0)
    # torch.compile the model (the cpp op is a registered operator: one graph). Off: benchmark.md says if it pays.
    compile: bool = default(boolean, False)
    # The reference repository's choices, one key each (config/compare_reference.json sets them all; docs/configuration.md).
    inputs: str = default(one_of("standardized", "unit"), "standardized")  # "unit": [0, 1] images, not standardized
    bias: bool = default(boolean, True)  # false: no bias in any convolution or offset/mask predictor
    predictor_init: str = default(one_of("zeros", "default"), "zeros")  # "default": PyTorch's initialisation of a convolution
    stratified_split: bool = default(boolean, True)  # false: a plain random train/validation split (seeded)
    # true: validation runs BatchNorm in training mode (batch statistics; the running statistics move to the validation images)
    validate_in_train_mode: bool = default(boolean, False)

    # The keys that define what a run computes besides its variant (not where or on what it runs): stored in the run's
    # record, and a finished run is reused only when they match (compare.py).
    RESULT_KEYS = ("conv_ch", "batch_size", "test_size", "random_seed", "learning_rate", "weight_decay", "train_subset", "deformable_layers",
                   "offset_lr_mult", "inputs", "bias", "predictor_init", "stratified_split", "validate_in_train_mode",
                   "network", "optimizer", "lr_schedule", "warmup_epochs", "augmentation")
    PREDICTOR_KEYS = ("offset_lr_mult", "predictor_init")  # of these, the ones that concern only the offset/mask predictors

    def result_settings(self):
        """The settings as a run's record keeps them (later keys at their defaults left out)."""
        return self.as_record(self.RESULT_KEYS)

    def settings_mismatch(self, recorded):
        """Where a file's config (a run record's settings, a checkpoint's config) differs from this one in a key that
        shapes the result, in words ("was trained with KEY VALUE ..., the config says VALUE ..."); None where it does
        not. A key the file lacks holds its default."""
        have = self.read_record(recorded, self.RESULT_KEYS)
        differ = [key for key in self.shaping_keys() if have[key] != getattr(self, key)]
        if not differ:
            return None
        return (f"was trained with {' and '.join(f'{key} {json.dumps(have[key])}' for key in differ)}, "
                f"the config says {' and '.join(json.dumps(getattr(self, key)) for key in differ)}")

    def shaping_keys(self):
        """The RESULT_KEYS a run of this config depends on: all of them, unless the variant is known (TrainConfig)."""
        return self.RESULT_KEYS

    def layer_problem(self, variants):
        """The rules between keys for network, conv_ch and deformable_layers; the problem, or None."""
        layers, unit = self.deformable_layers, NETWORKS[self.network].unit
        problem = network_problem(self.network, self.conv_ch)
        if problem:
            return problem
        if isinstance(layers, list) and max(layers) > len(self.conv_ch):
            return f'"deformable_layers" {layers} names a {unit} beyond the {len(self.conv_ch)} {unit}s of conv_ch {self.conv_ch}'
        if layers is not None and not any(VARIANTS[v].takes_layers for v in variants):
            return (f'"deformable_layers" is set but {", ".join(variants)} changes no layers; remove it or pick a deformable, dilated or '
                    f"parameter-matched variant")
        return None


@dataclass(frozen=True, kw_only=True)
class TrainConfig(TrainingKeys):
    outdir: str = required(text)
    variant: str = required(variant, convert=variant_name)  # train_<Model>.py supplies its own
    random_seed: int = default(non_negative_int, 0)
    save_epoch_freq: int = default(positive_int, 10)  # a full checkpoint every N epochs (and after the last)

    def problem(self):
        return self.layer_problem([self.variant])

    def shaping_keys(self):
        """Without offset/mask predictors (Conv2d and the plain controls) their keys change nothing: make_optimizer
        puts every parameter in one group whatever offset_lr_mult says, and predictor_init has nothing to initialise
        (a test trains both ways bit for bit). So a protocol that sets them reuses its finished plain runs."""
        if VARIANTS[self.variant].learns_predictors:
            return self.RESULT_KEYS
        return tuple(key for key in self.RESULT_KEYS if key not in self.PREDICTOR_KEYS)


@dataclass(frozen=True, kw_only=True)
class TestConfig:
    __test__ = False  # not a pytest test class, despite the name
    model: str = required(text)  # the checkpoint to test; it says which variant and widths it holds
    outdir: Optional[str] = default(optional_of(text), None)  # default: the run folder the checkpoint is in
    variant: Optional[str] = default(optional_of(variant), None, convert=lambda v: None if v is None else variant_name(v))
    conv_ch: Optional[list] = default(optional_of(channel_list), None)  # given: checked against the checkpoint
    batch_size: int = default(positive_int, 500)
    data_dir: str = default(text, "./data")
    download: bool = default(boolean, True)
    device: str = default(device, "auto")
    dcn_backend: str = default(dcn_backend, "auto")
    robustness: bool = default(boolean, True)  # also test on rotated, scaled and shifted copies of the test images
    robustness_images: Optional[int] = default(optional_robustness_images, None)  # null: all 10,000; else a stratified subset
    # Re-estimate the BatchNorm statistics of the fixed final weights on the run's training split before testing
    # (the as-trained accuracy is reported beside it); images: null = the whole training split.
    precise_bn: bool = default(boolean, True)
    precise_bn_images: Optional[int] = default(optional_subset, None)
    # A check, not a protocol's setting: the statistics over the run's own training augmentation instead of the
    # un-augmented images (for a run trained on crops, which of the two its downstream weights expect).
    precise_bn_augmented: bool = default(boolean, False)


@dataclass(frozen=True)
class ClusterResources:
    """What one cluster job (one run) asks the scheduler for; README "Running on a cluster"."""
    time_min: int
    cpus: int  # also the run's torch threads
    mem_gb: float
    partition: Optional[str] = None  # required by "slurm"
    gpus: int = 0


@dataclass(frozen=True, kw_only=True)
class CompareConfig(TrainingKeys):
    protocol: str = required(text)  # a label written on every table and figure, e.g. "cpu-quick" or "full"
    outdir: str = required(text)
    seeds: list = default(seed_list, [0, 1, 2])
    # Default: the three models of the question; the controls are opt-in.
    models: list = default(variant_list, list(BASE), convert=lambda v: [variant_name(x) for x in v])
    # Variants trained on other seeds than `seeds` (controls on fewer seeds, say); seeds a variant shares pair it by seed.
    model_seeds: dict = default(seeds_by_variant, {}, convert=lambda v: {variant_name(k): list(s) for k, s in v.items()})
    eval_batch_size: int = default(positive_int, 500)
    robustness: bool = default(boolean, True)
    robustness_images: Optional[int] = default(optional_robustness_images, None)
    precise_bn: bool = default(boolean, True)
    precise_bn_images: Optional[int] = default(optional_subset, None)
    aggregate_only: bool = default(boolean, False)  # only summarise the runs already in outdir
    # Who trains the runs: "local" (here, in turn), "slurm" or "submitit-local" (a job per run); `cluster`: a job's resources.
    launcher: str = default(launcher, "local")
    cluster: Optional[ClusterResources] = default(optional_of(cluster_resources), None, convert=lambda v: v and ClusterResources(**v))

    def seeds_of(self, name):
        return self.model_seeds.get(name, self.seeds)

    def all_seeds(self):
        return sorted({s for name in self.models for s in self.seeds_of(name)})

    def jobs(self):
        """Every (variant, seed) run, seed by seed: every variant of a seed is done before the next seed begins."""
        return [(name, s) for s in self.all_seeds() for name in self.models if s in self.seeds_of(name)]

    def problem(self):  # deformable_layers applies to the deformable models of the protocol
        stray = [name for name in self.model_seeds if name not in self.models]
        if stray:
            return f'"model_seeds" names {", ".join(stray)}, which "models" does not list; add it to "models" or remove it from "model_seeds"'
        if self.launcher != "local" and self.cluster is None:
            return (f'"launcher": "{self.launcher}" needs "cluster", the resources of each job, e.g. '
                    '{"partition": "cpu", "time_min": 240, "cpus": 4, "mem_gb": 8}')
        if self.launcher == "slurm" and not self.cluster.partition:
            return '"launcher": "slurm" needs "cluster": {"partition": ...}, the SLURM partition to submit to (sinfo lists them)'
        return self.layer_problem(self.models)


@dataclass(frozen=True, kw_only=True)
class BenchmarkConfig:
    outdir: str = default(text, "./result")
    report_name: Optional[str] = default(optional_of(text), None)  # <outdir>/<this>.json|.md; null: benchmark (benchmark_sweep)
    batch_size: int = default(positive_int, 32)
    network: str = default(one_of(*NETWORKS), DEFAULT_NETWORK)  # the network the rows build (models/registry.py)
    conv_ch: list = default(channel_list, [64, 128], default_from=NETWORK_WIDTHS)
    warmup: int = default(non_negative_int, 2)
    repeats: int = default(positive_int, 5)
    device: str = default(device, "auto")
    backends: list = default(backend_list, list(BACKENDS))
    models: list = default(variant_list, list(BASE), convert=lambda v: [variant_name(x) for x in v])
    compile: bool = default(boolean, True)  # also rows for torch.compile'd models (Conv2d, and each deformable one on `auto`)
    data_dir: str = default(text, "./data")  # real images for the data-pipeline share (random ones when missing)
    download: bool = default(boolean, False)
    data_batches: int = default(positive_int, 100)
    # Cost curves of one layer instead of the model table (config/benchmark_sweep.json; utils/cost/sweep.py).
    sweep: bool = default(boolean, False)
    sweep_batch: list = default(channel_list, [1, 8, 32, 128])
    sweep_channels: list = default(channel_list, [16, 64, 128, 256])
    sweep_resolution: list = default(channel_list, [16, 32, 64, 128])
    sweep_threads: list = default(channel_list, [1, 2])
    sweep_base_channels: int = default(positive_int, 64)
    sweep_base_resolution: int = default(positive_int, 32)
    sweep_min_time_s: float = default(non_negative_float, 0.5)  # time each point at least this long (small shapes: many calls)
    sweep_max_call_s: float = default(positive_float, 3.0)  # a slower call is timed once; larger points of its axis are skipped
    sweep_large: list = default(layer_shape, [128, 256, 64])  # the large case: [batch, channels, resolution]

    def problem(self):
        if network_problem(self.network, self.conv_ch):
            return network_problem(self.network, self.conv_ch)
        if self.sweep and self.device not in ("auto", "cpu"):
            return f'"sweep" measures CPU implementations (the cpp kernel, ONNX Runtime\'s CPU DeformConv), got device "{self.device}"; set device "cpu"'
        if self.compile and not self.sweep and self.warmup < 2:  # else a compilation lands inside the timed runs
            return f'"compile" needs "warmup" >= 2 (the compilation happens in the warm-up runs), got warmup {self.warmup}; raise it or set compile false'
        return None


def parse_overrides(items):
    """["key=value", ...] from --set: the value is read as JSON (numbers, true, null, [..]) or else as text."""
    raw = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f'--set {item}: expected key=value, e.g. --set learning_rate=0.01')
        try:
            raw[key.strip()] = json.loads(value)
        except ValueError:
            raw[key.strip()] = value
    return raw


def parse_config(raw, cls, source="config", overrides=None, defaults=None):
    """Validate a dict (plus --set overrides, plus defaults the calling script supplies) against `cls`;
    `source` names the file in messages."""
    if not isinstance(raw, dict):
        raise UserError(f"{source}: the top level must be a JSON object {{...}}, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    merged, origin = {}, {}
    for where, values in ((source, raw), ("--set", overrides or {})):
        for key, value in values.items():
            name = RENAMED.get(key, key) if RENAMED.get(key) in fields else key
            if name not in fields:
                close = difflib.get_close_matches(key, fields, n=1, cutoff=0.5)
                hint = f'did you mean "{close[0]}"?' if close else "valid keys: " + ", ".join(fields)
                raise UserError(f'{where}: unknown key "{key}"; {hint}')
            if name in merged and origin[name][0] == where:  # "model_type" and "variant" in the same place
                raise UserError(f'{where}: "{key}" and "{origin[name][1]}" both set "{name}"; keep one')
            merged[name], origin[name] = value, (where, key)
    values = {}
    for name, f in fields.items():
        if name not in merged:
            depends = f.metadata.get("default_from")
            if name in (defaults or {}):
                merged[name], origin[name] = defaults[name], ("the script", name)
            elif depends and depends[0] in values:  # checked already: its field comes first
                merged[name], origin[name] = depends[1](values[depends[0]]), (f'"{depends[0]}"', name)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise UserError(f'{source}: missing key "{name}"; add it (see README, "Config keys")')
            else:
                continue
        where, key = origin[name]
        problem = f.metadata["check"](merged[name])
        if problem:
            raise UserError(f'{where}: "{key}" {problem}, got {json.dumps(merged[name])}')
        value = f.metadata["convert"](merged[name]) if f.metadata["convert"] else merged[name]
        values[name] = float(value) if f.type is float else value
    cfg = cls(**values)
    problem = cfg.problem() if hasattr(cfg, "problem") else None
    if problem:
        raise UserError(f"{source}: {problem}")
    return cfg


def read_json(path):
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"config file {path} does not exist; pass the path of an existing JSON config (examples in config/)")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read config file {path} ({e.__class__.__name__}); check the path and its permissions")
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}; fix the file")


def load_config(path, cls, overrides=(), defaults=None):
    """Read a JSON file into `cls`, with `--set key=value` overrides and the calling script's defaults."""
    return parse_config(read_json(path), cls, source=str(path), overrides=parse_overrides(overrides), defaults=defaults)
