"""The reference repository's checkpoints (github.com/hrmc2022/Conv_vs_DeformConv, `result/<Model>/train/ckpt/
model_30.pth`): recognised by their keys and read into this repository's checkpoint format, so that every tool
(test_<Model>.py, export_onnx.py, visualize_offsets.py) takes them.

Its files are a plain state_dict whose network is this repository's ConvNet with `bias=False` and
`inputs="unit"` ([0, 1] images, no standardization): block i is `conv<i>` (the weight of the plain or deformable
convolution), `offset<i>` (the offsets, torchvision's layout), `modulity<i>` (the mask, through a sigmoid) and
`bn<i>`; then `fc`. Every model holds all the modules, so the file does not say which model it is: the caller
does (test_DeformConv2dv2.py says DeformConv2dv2). The BatchNorm statistics are kept as they are.

    python -m utils.engine.reference --variant DeformConv2dv2 ../shared/reference/DeformConv2dv2-model_30.pth
        writes result/reference-weights/DeformConv2dv2/train/weights.pth
"""
import argparse
import re
from pathlib import Path

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


def convert(path, variant, out):
    """Write the reference checkpoint `path` as this repository's weights file `out`; returns the state."""
    from utils.engine.checkpoint import load_checkpoint, model_from_checkpoint, save_weights

    state = load_checkpoint(path, variant=variant)
    model_from_checkpoint(state, path, backend="gather")  # refuses a file that does not fit the network
    save_weights(out, state["model_args"], state["model"], state["epoch"], {"source": SOURCE, "converted_from": str(path)})
    return state


def main(argv=None):
    from utils.cli import run_cli
    from utils.plumbing.runs import reference_weights

    parser = argparse.ArgumentParser(prog="python -m utils.engine.reference", description="Convert a reference checkpoint into this repository's format.")
    parser.add_argument("checkpoint", help="e.g. ../shared/reference/DeformConv2dv2-model_30.pth")
    parser.add_argument("--variant", required=True, choices=["Conv2d", "DeformConv2d", "DeformConv2dv2"], help="the model the file holds")
    parser.add_argument("--out", help="default: result/reference-weights/<variant>/train/weights.pth")
    args = parser.parse_args(argv)

    def body():
        out = Path(args.out) if args.out else reference_weights(args.variant).weights
        if out.exists():
            raise UserError(f"{out} exists already; remove it or pass another --out")
        convert(args.checkpoint, args.variant, out)
        print(f"wrote {out} ({args.variant}; bias false, inputs unit; the BatchNorm statistics of the file)")

    run_cli(body)


if __name__ == "__main__":
    main()
