"""The reference repository's checkpoints (github.com/hrmc2022/Conv_vs_DeformConv, `result/<Model>/train/ckpt/
model_30.pth`): recognised by their keys and read into this repository's checkpoint format, so that every tool
(test_<Model>.py, export_onnx.py, visualize_offsets.py) takes them.

Its files are a plain state_dict whose network is this repository's ConvNet with `bias=False` and
`inputs="unit"` ([0, 1] images, no standardization): block i is `conv<i>` (the weight of the plain or deformable
convolution), `offset<i>` (the offsets, torchvision's layout), `modulity<i>` (the mask, through a sigmoid) and
`bn<i>`; then `fc`. Every model holds all the modules, so the file does not say which model it is: the caller
does (test_DeformConv2dv2.py says DeformConv2dv2). The BatchNorm statistics are kept as they are. Testing one
also writes it in this repository's format (utils/engine/testing.py), which every other tool takes.
"""
import re

import torch

from models.network import model_args
from models.registry import VARIANTS
from utils.plumbing.errors import UserError

SOURCE = "github.com/hrmc2022/Conv_vs_DeformConv (commit 340da98)"
_BLOCK = re.compile(r"^(conv|offset|modulity|bn)(\d+)\.")


def is_reference(state):
    """A plain state_dict with the reference's module names (conv1, offset1, modulity1, bn1, ..., fc)."""
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        return False
    return {"conv1.weight", "offset1.weight", "modulity1.weight", "bn1.running_mean", "fc.weight"} <= set(state)


def from_reference(state, variant):
    """The reference state_dict as a checkpoint of this repository (model_args + model), for `variant` (one of
    the three models: the modules the variant does not use are left out)."""
    if variant not in ("Conv2d", "DeformConv2d", "DeformConv2dv2"):
        raise UserError(f"a reference checkpoint holds Conv2d, DeformConv2d or DeformConv2dv2, not {variant}; test it with one of their scripts")
    blocks = sorted({int(m.group(2)) for key in state if (m := _BLOCK.match(key))})
    conv_ch = [state[f"conv{i}.weight"].shape[0] for i in blocks]
    args = model_args({"variant": variant, "conv_ch": conv_ch, "bias": False, "inputs": "unit"})
    spec = VARIANTS[variant]
    ours = {}
    for i in blocks:
        conv, bn = f"features.{3 * (i - 1)}", f"features.{3 * (i - 1) + 1}"
        ours[f"{conv}.weight"] = state[f"conv{i}.weight"]
        if spec.offsets:
            ours[f"{conv}.offset.weight"] = state[f"offset{i}.weight"]
        if spec.modulated:
            ours[f"{conv}.mask.weight"] = state[f"modulity{i}.weight"]
        for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            ours[f"{bn}.{name}"] = state[f"bn{i}.{name}"]
    ours["classifier.weight"], ours["classifier.bias"] = state["fc.weight"], state["fc.bias"]
    return {"model_args": args, "model": ours, "epoch": None, "config": None, "source": SOURCE}
