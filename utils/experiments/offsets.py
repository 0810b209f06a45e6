"""What the offsets learned: sampling points of one output location drawn on test images, plus statistics.

For an output location of the last layer of the model's sampling chain (models: `sampling_chain`; the small CNN's
deformable layers, or a ResNet's last deformable block), its k*k sampling points (regular grid + learned offset)
are followed back through the chain's earlier layers: each point, rounded to the nearest position of that
layer's output grid, contributes that position's k*k sampling points. With two 3x3 layers this gives the
9 x 9 = 81 points of the deformable-convolution papers' figures. For DCNv2 each point carries the product of the
masks along its path (drawn as colour and size). A chain on a coarser grid than the image (a ResNet's later
stage) is drawn at the image pixels its grid positions are centred on (position * stride).
"""
from pathlib import Path

import numpy as np
import torch

from models.registry import VARIANTS
from utils.engine import data as data_mod
from utils.engine.checkpoint import load_checkpoint, model_from_checkpoint
from utils.experiments.figures import plot_sampling_points
from utils.plumbing.errors import UserError
from utils.plumbing.files import write_json


@torch.no_grad()
def offsets_and_masks(model, images):
    """Per deformable layer (forward order): offsets [N, K, 2, H, W] (dy, dx) and masks [N, K, H, W] or None, predicted
    from the input the layer receives in the model's forward pass (caught by a hook, whatever the network)."""
    inputs = {}
    hooks = [layer.register_forward_pre_hook(lambda layer, args: inputs.__setitem__(layer, args[0])) for layer in model.deformable_convs()]
    try:
        model(images)
    finally:
        for hook in hooks:
            hook.remove()
    found = []
    for layer in model.deformable_convs():
        off, mask = layer.predict(inputs[layer])
        n, _, h, w = off.shape
        found.append((layer, off.view(n, -1, 2, h, w), mask))
    return found


def sampling_points(found, index, y, x, stride=1):
    """Points (y, x) in input-image pixels and their mask weight, composed over the layers of `found` (a chain of
    stride-1 layers on one grid, `stride` image pixels per grid step)."""
    points = np.array([[float(y), float(x)]])
    weights = np.ones(1)
    for layer, off, mask in reversed(found):
        kh, kw = layer.kernel_size
        dil, pad = layer.dilation, layer.padding
        h, w = off.shape[-2:]
        base = np.array([[i * dil[0] - pad[0], j * dil[1] - pad[1]] for i in range(kh) for j in range(kw)], dtype=float)
        new_points, new_weights = [], []
        for (py, px), pw in zip(points, weights):
            cy, cx = int(np.clip(round(py), 0, h - 1)), int(np.clip(round(px), 0, w - 1))
            o = off[index, :, :, cy, cx].cpu().numpy()  # [K, 2]
            m = mask[index, :, cy, cx].cpu().numpy() if mask is not None else np.ones(len(base))
            new_points.append(np.array([py, px]) + base + o)  # stride 1: output grid == input grid
            new_weights.append(pw * m)
        points, weights = np.concatenate(new_points), np.concatenate(new_weights)
    return points * stride, weights


def summary(found):
    """Per deformable layer, over every image, position and tap: the mean and largest offset length (pixels of the
    layer's input grid), the share of sampling points moved more than one pixel; with a mask, its mean and spread
    (std), overall and per tap (row by row over the k x k kernel)."""
    rows = []
    for i, (_, off, mask) in enumerate(found, start=1):
        magnitude = off.norm(dim=2)  # [N, K, H, W]: per tap, in pixels
        row = {"layer": i, "mean_offset_magnitude_px": float(magnitude.mean()), "max_offset_magnitude_px": float(magnitude.max()),
               "share_moved_over_1px": float((magnitude > 1).float().mean())}
        if mask is not None:
            taps = mask.transpose(0, 1).flatten(1)  # [K, N*H*W]
            row.update({"mask_mean": float(mask.mean()), "mask_std": float(mask.std()),
                        "mask_mean_per_tap": taps.mean(1).tolist(), "mask_std_per_tap": taps.std(1).tolist()})
        rows.append(row)
    return rows


def visualize(checkpoint, data_dir, download, image_indices, location, out, summary_images, device="cpu"):
    """`location`: (y, x) on the output grid of the chain's last layer, or None for its centre."""
    state = load_checkpoint(checkpoint)
    variant = VARIANTS[state["model_args"]["variant"]]
    if not variant.deformable:
        deformable = ", ".join(v.name for v in VARIANTS.values() if v.deformable)
        raise UserError(f"checkpoint {checkpoint} is a {variant.name} model: it has no offsets to show; pass a checkpoint of {deformable}")
    model = model_from_checkpoint(state, checkpoint, "gather").to(device).eval()
    test = data_mod.load_cifar10(data_dir, train=False, download=download)
    bad = [i for i in image_indices if not 0 <= i < len(test)]
    if bad:
        raise UserError(f"image index {bad[0]} is outside the test set (0..{len(test) - 1}); pass --images with valid indices")
    chosen = test.subset(image_indices)
    chain, stride = model.sampling_chain()
    found = [entry for entry in offsets_and_masks(model, data_mod.to_unit(chosen.images, device)) if entry[0] in chain]
    h, w = found[-1][1].shape[-2:]
    y, x = location if location is not None else (h // 2, w // 2)
    if not (0 <= y < h and 0 <= x < w):
        raise UserError(f"--location {y} {x} is outside the {h}x{w} output grid of the last deformable layer; use values 0..{h - 1} and 0..{w - 1}")
    panels = [(chosen.images[i].permute(1, 2, 0).numpy(), *sampling_points(found, i, y, x, stride), data_mod.CLASSES[int(chosen.labels[i])])
              for i in range(len(chosen))]
    name = variant.name
    out = Path(out)
    star = (y * stride, x * stride)
    plot_sampling_points(panels, star, out, f"{name} (epoch {state.get('epoch')}): sampling points of output ({y}, {x})", modulated=variant.modulated)

    stats_set = test.subset(torch.arange(min(summary_images, len(test))))
    stats = summary(offsets_and_masks(model, data_mod.to_unit(stats_set.images, device)))
    report = {"checkpoint": str(checkpoint), "model_name": name, "location": [y, x], "images": list(image_indices),
              "summary_over_test_images": len(stats_set), "layers": stats}
    write_json(out.with_suffix(".json"), report)
    for row in stats:
        line = f"layer {row['layer']}: mean |offset| {row['mean_offset_magnitude_px']:.3f} px (max {row['max_offset_magnitude_px']:.2f})"
        if "mask_mean" in row:
            line += f", mask mean {row['mask_mean']:.3f} std {row['mask_std']:.3f}"
        print(line)
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return report
