"""JSON configs parsed once into typed, validated dataclasses.

Every other module reads `cfg.learning_rate`, never `raw["learning_rate"]`; every mistake in a config file
becomes one `UserError` line that names the file, the key, what was wrong and how to fix it.
"""
import dataclasses
import difflib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from utils.errors import UserError

from models.deform_ops import BACKENDS
from models.network import MODEL_NAMES

DCN_BACKENDS = ("auto",) + BACKENDS


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


def model_type(v):
    return None if _is_int(v) and v in MODEL_NAMES else "must be 1 (Conv2d), 2 (DeformConv2d) or 3 (DeformConv2dv2)"


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


def model_list(v):
    ok = isinstance(v, list) and len(v) >= 1 and all(model_type(x) is None for x in v) and len(set(v)) == len(v)
    return None if ok else "must be a non-empty list of distinct model types from 1, 2, 3"


def check(fn):
    """Attach a validator to a dataclass field (no default: the key is required)."""
    return field(metadata={"check": fn})


def optional(fn, default):
    return field(default=default, metadata={"check": fn})


@dataclass(frozen=True)
class TrainConfig:
    outdir: str = check(text)
    model_type: int = check(model_type)
    conv_ch: list = check(channel_list)
    batch_size: int = check(positive_int)
    test_size: float = check(open_fraction)
    random_seed: int = check(non_negative_int)
    learning_rate: float = check(positive_float)
    weight_decay: float = check(non_negative_float)
    num_epoch: int = check(positive_int)
    save_epoch_freq: int = check(positive_int)
    data_dir: str = optional(text, "./data")
    download: bool = optional(boolean, True)
    device: str = optional(device, "auto")
    # Stratified subset of the 50,000 training images, drawn before the train/validation split; null = all.
    train_subset: Optional[int] = optional(optional_subset, None)
    dcn_backend: str = optional(dcn_backend, "auto")


@dataclass(frozen=True)
class TestConfig:
    __test__ = False  # not a pytest test class, despite the name
    outdir: str = check(text)
    model_type: int = check(model_type)
    model: str = check(text)
    conv_ch: list = check(channel_list)
    batch_size: int = check(positive_int)
    data_dir: str = optional(text, "./data")
    download: bool = optional(boolean, True)
    device: str = optional(device, "auto")
    dcn_backend: str = optional(dcn_backend, "auto")


@dataclass(frozen=True)
class BenchmarkConfig:
    outdir: str = optional(text, "./result")
    batch_size: int = optional(positive_int, 32)
    conv_ch: list = optional(channel_list, (64, 128))
    warmup: int = optional(non_negative_int, 2)
    repeats: int = optional(positive_int, 5)
    device: str = optional(device, "auto")
    backends: list = optional(backend_list, ("torchvision", "gather", "cpp"))
    # Real images for the data-pipeline share (random images are used when these are missing).
    data_dir: str = optional(text, "./data")
    download: bool = optional(boolean, False)
    data_batches: int = optional(positive_int, 100)


@dataclass(frozen=True)
class CompareConfig:
    protocol: str = check(text)  # a label written on every table and figure, e.g. "cpu-quick" or "full"
    outdir: str = check(text)
    seeds: list = check(seed_list)
    conv_ch: list = check(channel_list)
    batch_size: int = check(positive_int)
    test_size: float = check(open_fraction)
    learning_rate: float = check(positive_float)
    weight_decay: float = check(non_negative_float)
    num_epoch: int = check(positive_int)
    models: list = optional(model_list, (1, 2, 3))
    train_subset: Optional[int] = optional(optional_subset, None)
    eval_batch_size: int = optional(positive_int, 500)
    data_dir: str = optional(text, "./data")
    download: bool = optional(boolean, True)
    device: str = optional(device, "auto")
    dcn_backend: str = optional(dcn_backend, "auto")
    aggregate_only: bool = optional(boolean, False)  # only summarise the runs already in outdir


def parse_config(raw, cls, source="config"):
    """Validate a dict against `cls`; `source` names the file in messages."""
    if not isinstance(raw, dict):
        raise UserError(f"{source}: the top level must be a JSON object {{...}}, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1, cutoff=0.5)
            hint = f'did you mean "{close[0]}"?' if close else "valid keys: " + ", ".join(fields)
            raise UserError(f'{source}: unknown key "{key}"; {hint}')
    values = {}
    for name, f in fields.items():
        required = f.default is dataclasses.MISSING
        if name not in raw:
            if required:
                raise UserError(f'{source}: missing key "{name}"; add it (see README, "Config keys")')
            continue
        problem = f.metadata["check"](raw[name])
        if problem:
            raise UserError(f'{source}: "{name}" {problem}, got {json.dumps(raw[name])}')
        values[name] = float(raw[name]) if f.type is float else raw[name]
    return cls(**values)


def load_config(path, cls, expected_model_type=None, script=None):
    """Read a JSON file into `cls`; optionally insist that its model_type matches the calling script."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"config file {path} does not exist; pass the path of an existing JSON config (examples in config/)")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read config file {path} ({e.__class__.__name__}); check the path and its permissions")
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}; fix the file")
    cfg = parse_config(raw, cls, source=str(path))
    if expected_model_type is not None and cfg.model_type != expected_model_type:
        right = MODEL_NAMES[cfg.model_type]
        raise UserError(
            f"{path}: model_type {cfg.model_type} ({right}) does not match {script}, which runs model_type "
            f"{expected_model_type} ({MODEL_NAMES[expected_model_type]}); use the {right} script or set model_type to {expected_model_type}"
        )
    return cfg
