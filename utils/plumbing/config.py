"""Configs: a JSON file plus `--set key=value` overrides, parsed once into a typed, validated dataclass.

The defaults below are the standard protocol, so a config file holds only what differs from it. Every
other module reads `cfg.learning_rate`, never `raw["learning_rate"]`; every mistake becomes one
`UserError` line naming the file (or the --set), the key, what was wrong and how to fix it. Nothing here
imports torch: a bad config is refused before torch loads.
"""
import dataclasses
import difflib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from models.registry import BACKENDS, VARIANTS, variant_name
from utils.plumbing.errors import UserError

DCN_BACKENDS = ("auto",) + BACKENDS
# Keys older configs used, and the key that replaced each: accepted and mapped at parsing.
RENAMED = {"model_type": "variant"}


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)  # JSON true must not pass as 1


def _is_number(v):
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


# Each check returns None when the value is fine, else the phrase "must be ..." used in the message.
def positive_int(v):
    return None if _is_int(v) and v >= 1 else "must be a whole number >= 1"


def non_negative_int(v):
    return None if _is_int(v) and v >= 0 else "must be a whole number >= 0"


def positive_float(v):
    return None if _is_number(v) and v > 0 else "must be a number > 0"


def non_negative_float(v):
    return None if _is_number(v) and v >= 0 else "must be a number >= 0"


def open_fraction(v):
    return None if _is_number(v) and 0 < v < 1 else "must be a number strictly between 0 and 1"


def text(v):
    return None if isinstance(v, str) and v.strip() else "must be a non-empty string"


def boolean(v):
    return None if isinstance(v, bool) else "must be true or false"


def variant(v):
    try:
        variant_name(v)
    except ValueError as e:
        return f"must name a model variant ({str(e).split('; ', 1)[1]})"
    return None


def channel_list(v):
    ok = isinstance(v, list) and len(v) >= 1 and all(_is_int(c) and c >= 1 for c in v)
    return None if ok else "must be a non-empty list of whole numbers >= 1, e.g. [64, 128]"


def device(v):
    ok = isinstance(v, str) and (v in ("auto", "cpu", "cuda") or (v.startswith("cuda:") and v[5:].isdigit()))
    return None if ok else 'must be "auto", "cpu", "cuda" or "cuda:N"'


def dcn_backend(v):
    return None if v in DCN_BACKENDS else "must be one of " + ", ".join(f'"{b}"' for b in DCN_BACKENDS)


def optional_subset(v):
    return None if v is None or (_is_int(v) and v >= 20) else "must be null (all images) or a whole number >= 20"


def backend_list(v):
    ok = isinstance(v, list) and len(v) >= 1 and all(b in BACKENDS for b in v)
    return None if ok else "must be a non-empty list of " + ", ".join(f'"{b}"' for b in BACKENDS)


def seed_list(v):
    ok = isinstance(v, list) and len(v) >= 1 and all(_is_int(x) and x >= 0 for x in v) and len(set(v)) == len(v)
    return None if ok else "must be a non-empty list of distinct whole numbers >= 0, e.g. [0, 1, 2]"


def variant_list(v):
    if not isinstance(v, list) or not v:
        return "must be a non-empty list of model variants, e.g. [\"Conv2d\", \"DeformConv2dv2\"]"
    problem = next((variant(x) for x in v if variant(x)), None)
    if problem:
        return problem
    return None if len({variant_name(x) for x in v}) == len(v) else "must not name a variant twice"


def optional_of(check_fn):
    return lambda v: None if v is None else check_fn(v)


# A field's metadata: `check` validates the JSON value, `convert` (optional) turns it into the field's value
# (a variant's legacy integer into its name). `required`: the config (or the calling script) must give it.
def required(check_fn, convert=None):
    return field(metadata={"check": check_fn, "convert": convert})


def default(check_fn, value, convert=None):
    factory = (lambda: list(value)) if isinstance(value, (list, tuple)) else (lambda: value)
    return field(default_factory=factory, metadata={"check": check_fn, "convert": convert})


@dataclass(frozen=True, kw_only=True)
class TrainingKeys:
    """What a training run needs besides its variant, seed and outdir; shared by train and compare configs."""
    conv_ch: list = default(channel_list, [64, 128])
    batch_size: int = default(positive_int, 32)
    test_size: float = default(open_fraction, 0.1)  # validation share of the training images (stratified)
    learning_rate: float = default(positive_float, 0.001)
    weight_decay: float = default(non_negative_float, 0.01)
    num_epoch: int = default(positive_int, 30)
    # Stratified subset of the 50,000 training images, drawn before the train/validation split; null = all.
    train_subset: Optional[int] = default(optional_subset, None)
    data_dir: str = default(text, "./data")
    download: bool = default(boolean, True)
    device: str = default(device, "auto")
    dcn_backend: str = default(dcn_backend, "auto")


@dataclass(frozen=True, kw_only=True)
class TrainConfig(TrainingKeys):
    outdir: str = required(text)
    variant: str = required(variant, convert=variant_name)  # train_<Model>.py supplies its own
    random_seed: int = default(non_negative_int, 0)
    save_epoch_freq: int = default(positive_int, 10)  # a full checkpoint every N epochs (and after the last)


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


@dataclass(frozen=True, kw_only=True)
class CompareConfig(TrainingKeys):
    protocol: str = required(text)  # a label written on every table and figure, e.g. "cpu-quick" or "full"
    outdir: str = required(text)
    seeds: list = default(seed_list, [0, 1, 2])
    # Default: the three models of the question (a variant's own script is its name); controls are opt-in.
    models: list = default(variant_list, [v.name for v in VARIANTS.values() if v.script == v.name], convert=lambda v: [variant_name(x) for x in v])
    eval_batch_size: int = default(positive_int, 500)
    aggregate_only: bool = default(boolean, False)  # only summarise the runs already in outdir


@dataclass(frozen=True, kw_only=True)
class BenchmarkConfig:
    outdir: str = default(text, "./result")
    batch_size: int = default(positive_int, 32)
    conv_ch: list = default(channel_list, [64, 128])
    warmup: int = default(non_negative_int, 2)
    repeats: int = default(positive_int, 5)
    device: str = default(device, "auto")
    backends: list = default(backend_list, list(BACKENDS))
    # Real images for the data-pipeline share (random images are used when these are missing).
    data_dir: str = default(text, "./data")
    download: bool = default(boolean, False)
    data_batches: int = default(positive_int, 100)


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
            if name in (defaults or {}):
                merged[name], origin[name] = defaults[name], ("the script", name)
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
    return cls(**values)


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
