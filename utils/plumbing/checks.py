"""The value rules of config keys: each returns None when a value is fine, else the phrase "must be ..."
that the error message uses. No torch."""
import math

from models.backends import BACKENDS
from models.registry import variant_name

DCN_BACKENDS = ("auto",) + BACKENDS


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)  # JSON true must not pass as 1


def _is_number(v):
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


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


def layer_shape(v):
    ok = isinstance(v, list) and len(v) == 3 and all(_is_int(c) and c >= 1 for c in v)
    return None if ok else "must be [batch, channels, resolution], three whole numbers >= 1, e.g. [128, 256, 64]"


def device(v):
    ok = isinstance(v, str) and (v in ("auto", "cpu", "cuda") or (v.startswith("cuda:") and v[5:].isdigit()))
    return None if ok else 'must be "auto", "cpu", "cuda" or "cuda:N"'


def dcn_backend(v):
    return None if v in DCN_BACKENDS else "must be one of " + ", ".join(f'"{b}"' for b in DCN_BACKENDS)


def optional_robustness_images(v):
    return None if v is None or (_is_int(v) and 100 <= v <= 10_000) else "must be null (all 10,000 test images) or a whole number from 100 to 10000"


def optional_subset(v):
    return None if v is None or (_is_int(v) and v >= 20) else "must be null (all images) or a whole number >= 20"


def backend_list(v):
    ok = isinstance(v, list) and len(v) >= 1 and all(b in BACKENDS for b in v)
    return None if ok else "must be a non-empty list of " + ", ".join(f'"{b}"' for b in BACKENDS)


def seed_list(v):
    ok = isinstance(v, list) and len(v) >= 1 and all(_is_int(x) and x >= 0 for x in v) and len(set(v)) == len(v)
    return None if ok else "must be a non-empty list of distinct whole numbers >= 0, e.g. [0, 1, 2]"


def seeds_by_variant(v):
    """{variant: [seeds]}: the variants a comparison trains on other seeds than its "seeds"."""
    if not isinstance(v, dict):
        return 'must be an object of variant -> seed list, e.g. {"Conv2d-params": [0, 1, 2]}'
    for name, seeds in v.items():
        problem = variant(name) or (seed_list(seeds) and f"[{name!r}] {seed_list(seeds)}")
        if problem:
            return problem
    return None


def variant_list(v):
    if not isinstance(v, list) or not v:
        return "must be a non-empty list of model variants, e.g. [\"Conv2d\", \"DeformConv2dv2\"]"
    problem = next((variant(x) for x in v if variant(x)), None)
    if problem:
        return problem
    return None if len({variant_name(x) for x in v}) == len(v) else "must not name a variant twice"


def layer_choice(v):
    ok = v in (None, "all", "last") or (isinstance(v, list) and v and all(_is_int(i) and i >= 1 for i in v) and len(set(v)) == len(v))
    return None if ok else 'must be "all", "last", null (the variant\'s own) or a list of distinct conv block numbers from 1, e.g. [2]'


def one_of(*choices):
    return lambda v: None if v in choices else "must be one of " + ", ".join(f'"{c}"' for c in choices)


def optional_of(check_fn):
    return lambda v: None if v is None else check_fn(v)


LAUNCHERS = ("local", "slurm", "submitit-local")
# The resources of one cluster job (one run): field -> (check, required).
CLUSTER_FIELDS = {"partition": (text, False), "time_min": (positive_int, True), "cpus": (positive_int, True), "gpus": (non_negative_int, False),
                  "mem_gb": (positive_float, True)}


def launcher(v):
    return None if v in LAUNCHERS else "must be one of " + ", ".join(f'"{name}"' for name in LAUNCHERS)


def cluster_resources(v):
    example = '{"partition": "cpu", "time_min": 240, "cpus": 4, "gpus": 0, "mem_gb": 8}'
    if not isinstance(v, dict):
        return f"must be an object like {example}"
    unknown = sorted(set(v) - set(CLUSTER_FIELDS))
    if unknown:
        return f"has unknown field(s) {', '.join(unknown)}; its fields are {', '.join(CLUSTER_FIELDS)}"
    missing = [name for name, (_, required) in CLUSTER_FIELDS.items() if required and name not in v]
    if missing:
        return f"misses the field(s) {', '.join(missing)}, e.g. {example}"
    return next((f'field "{name}" {check(v[name])}' for name, (check, _) in CLUSTER_FIELDS.items() if name in v and check(v[name])), None)
