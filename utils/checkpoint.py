"""Checkpoints: everything needed to rebuild the model and to resume training, loaded as untrusted input.

Only tensors, numbers, strings, lists and dicts are stored, so `torch.load(weights_only=True)` can read
them; a file that carries any other pickled object (which could run code when unpickled) is refused.
"""
import pickle
import re
import zipfile

import torch

from models import MODEL_NAMES, ConvNet
from utils.errors import UserError
from utils.files import atomic_path


def save_checkpoint(path, model, optimizer, epoch, history, config):
    state = {
        "model_type": model.model_type,
        "model_name": MODEL_NAMES[model.model_type],
        "conv_ch": list(model.conv_ch),
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "history": history,
        "config": config,
        "torch_rng": torch.get_rng_state(),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def save_weights(path, model_state, model_type, conv_ch, epoch, config):
    """A finished run's model alone (no optimizer state, history or RNG): ~0.4 MB, small enough to commit.
    Loads like any checkpoint (test scripts, visualize_offsets.py)."""
    state = {"model_type": model_type, "model_name": MODEL_NAMES[model_type], "conv_ch": list(conv_ch), "epoch": epoch,
             "model": {k: v.detach().cpu() for k, v in model_state.items()}, "config": config}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path):
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"checkpoint {path} does not exist; train first or fix the path")
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if found:  # the file asks to import and call something: refused before anything runs
            raise UserError(f"refusing checkpoint {path}: it holds a pickled {found.group(1)}, not plain weights; only load files this tool wrote")
        raise UserError(f"checkpoint {path} is truncated or corrupt (not a readable checkpoint); use another checkpoint or retrain")
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise UserError(f"checkpoint {path} is truncated or corrupt ({e.__class__.__name__}); use another checkpoint or retrain")
    required = ("model_type", "conv_ch", "model")
    if not isinstance(state, dict) or any(k not in state for k in required):
        raise UserError(f"{path} is not a checkpoint written by this tool (no {', '.join(required)}); pass a ckpt/model_<epoch>.pth file")
    return state


def model_from_checkpoint(state, path, model_type, conv_ch, backend):
    """Rebuild the network stored in `state` after checking it is the one the config asks for."""
    if state["model_type"] != model_type or list(state["conv_ch"]) != list(conv_ch):
        raise UserError(
            f"checkpoint {path} holds model_type {state['model_type']} ({MODEL_NAMES.get(state['model_type'], '?')}) "
            f"with conv_ch {list(state['conv_ch'])}, but the config asks for model_type {model_type} "
            f"({MODEL_NAMES[model_type]}) with conv_ch {list(conv_ch)}; point \"model\" at a matching checkpoint or fix the config"
        )
    model = ConvNet(model_type, conv_ch, backend=backend)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, TypeError) as e:
        raise UserError(f"checkpoint {path} does not fit the network ({str(e).splitlines()[0]}); retrain or use another checkpoint")
    return model
