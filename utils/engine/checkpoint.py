"""Checkpoints: everything needed to rebuild the model and to resume training, loaded as untrusted input.

Only tensors, numbers, strings, lists and dicts are stored, so `torch.load(weights_only=True)` can read
them; a file that carries any other pickled object (which could run code when unpickled) is refused.
The model is rebuilt from the checkpoint's own arguments: `build_model(**state["model_args"])`.
Checkpoints written before variants had names (`model_type` 1/2/3 and `conv_ch` at the top level) load
as well: they are read into the same `model_args`, completed with the defaults of arguments added since; so do
the reference repository's files (utils/engine/reference.py), given the variant they hold.
"""
import pickle
import re
import zipfile

import torch

from models.factory import build_model
from models.network import model_args, stored_model_args
from models.registry import variant_name
from utils.engine import reference
from utils.plumbing.errors import UserError
from utils.plumbing.files import atomic_path

FORMAT = 2


def _save(path, state):
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **state}, tmp)


def save_checkpoint(path, model, optimizer, epoch, history, config):
    """The full state after `epoch`, for resuming: model, optimizer, history, RNG."""
    _save(path, {
        "model_args": model.model_args, "epoch": epoch, "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "history": history, "config": config, "torch_rng": torch.get_rng_state(),
    })


def save_weights(path, args, model_state, epoch, config):
    """A finished run's model alone (no optimizer state, history or RNG): ~0.4 MB, small enough to commit.
    Loads like any checkpoint (test scripts, visualize_offsets.py)."""
    _save(path, {"model_args": stored_model_args(args), "epoch": epoch, "model": {k: v.detach().cpu() for k, v in model_state.items()}, "config": config})


def load_checkpoint(path, variant=None):
    """The checkpoint as a dict with complete `model_args`; `variant`: the model a reference file holds."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"checkpoint {path} does not exist; train first or fix the path")
    except IsADirectoryError:
        raise UserError(f"checkpoint {path} is a folder; pass a .pth file (e.g. <run>/train/weights.pth)")
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if found:  # the file asks to import and call something: refused before anything runs
            raise UserError(f"refusing checkpoint {path}: it holds a pickled {found.group(1)}, not plain weights; only load files this tool wrote")
        raise UserError(f"checkpoint {path} is truncated or corrupt (not a readable checkpoint); use another checkpoint or retrain")
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise UserError(f"checkpoint {path} is truncated or corrupt ({e.__class__.__name__}); use another checkpoint or retrain")
    not_ours = UserError(f"{path} is not a checkpoint written by this tool (no model arguments and weights); "
                         "pass a train/weights.pth or ckpt/model_<epoch>.pth file")
    if reference.is_reference(state):
        if variant is None:
            raise UserError(f"{path} is a reference-repository checkpoint, which does not say its model; test it with test_<Model>.py "
                            f'(its script names the model) or set "variant"')
        return reference.from_reference(state, variant)
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise not_ours
    if "model_args" not in state:  # written before variants had names
        if "model_type" not in state or "conv_ch" not in state:
            raise not_ours
        try:
            state["model_args"] = {"variant": variant_name(state.pop("model_type")), "conv_ch": list(state.pop("conv_ch"))}
        except ValueError:
            raise not_ours from None
    state["model_args"] = model_args(state["model_args"])
    return state


def check_model_args(state, path, wanted, source):
    """Refuse a checkpoint whose model differs from what `source` (a config, say) asks for in `wanted`
    (a dict of model arguments; missing or None entries are not checked)."""
    have = state["model_args"]
    differ = {k: v for k, v in wanted.items() if v is not None and have.get(k) != v}
    if differ:
        holds = ", ".join(f"{k} {have.get(k)}" for k in differ)
        asks = ", ".join(f"{k} {v}" for k, v in differ.items())
        raise UserError(f"checkpoint {path} holds {holds}, but {source} asks for {asks}; use a matching checkpoint or fix {source}")


def model_from_checkpoint(state, path, backend):
    """The network the checkpoint describes, with its weights."""
    try:
        model = build_model(**state["model_args"], backend=backend)
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        raise UserError(f"checkpoint {path} does not fit the network ({str(e).splitlines()[0]}); retrain or use another checkpoint")
    return model
