"""What a trained model's output depends on: its effective receptive field (Luo et al., NeurIPS 2016), and, for a
deformable variant, what its offsets and masks do over test images.

The effective receptive field of a unit (y, x) of the last block's output before pooling (models: `feature_map`):
the gradient of the sum of its channels with respect to the [0, 1] input image, its absolute value summed over the
three colour channels, averaged over a fixed set of test images (the first 1,000 of the official test set by
default). Three units: the centre of the feature map, the middle of its top border and its top-left corner, since
zero padding shapes the field at the image's edges. The model is in eval mode: BatchNorm normalizes with the
statistics the checkpoint holds (those training left; a test's precise statistics are not stored) and nothing
changes them; each image's gradient is its own.

Numbers per unit, from its map normalized to a total of 1: the radii (Euclidean distance, in pixels, from the pixel
the unit is centred on) within which 50 % and 90 % of the gradient mass lie, and the share of the mass outside the
plain network's fixed-grid receptive field (models: `fixed_receptive_field`; 5x5 in the small CNN, clipped to the
image; 81x81 in ResNet-20, which covers the image).
"""
import contextlib
import io
import time

import numpy as np
import torch

from models.registry import VARIANTS
from utils.engine import data as data_mod
from utils.engine.checkpoint import load_checkpoint, model_from_checkpoint
from utils.engine.device import resolve_backend, resolve_device
from utils.experiments.offsets import offsets_and_masks, summary
from utils.plumbing.files import write_json
from utils.plumbing.machine import this_machine
from utils.plumbing.runs import ProtocolLayout, run_status

IMAGES = 1000  # the first this many official test images


def units(height, width):
    """The feature-map units measured: {position: (y, x)}."""
    return {"centre": (height // 2, width // 2), "border": (0, width // 2), "corner": (0, 0)}


def erf_maps(model, images, batch_size=100):
    """{position: [H_img, W_img] float64 numpy}: the mean over `images` of |d(sum of the unit's channels) / d image|,
    summed over colour channels; and the units {position: (y, x)}. Eval mode; BatchNorm statistics untouched."""
    model.eval()
    sums, found = {}, None
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].detach().clone().requires_grad_(True)
        fmap = model.feature_map(x)
        found = found or units(*fmap.shape[-2:])
        for i, (name, (y, xx)) in enumerate(found.items()):
            (grad,) = torch.autograd.grad(fmap[:, :, y, xx].sum(), x, retain_graph=i < len(found) - 1)
            sums[name] = sums.get(name, 0) + grad.abs().sum(dim=(0, 1)).double()
    return {name: (total / len(images)).cpu().numpy() for name, total in sums.items()}, found


def grid_covers_image(side, shape):
    """Whether a fixed grid of `side` pixels, centred on any pixel of an image of `shape` (H, W), covers the whole image:
    then no gradient mass can lie outside it (ResNet-20's 81x81 on 32x32), and only the radii tell fields apart."""
    return side // 2 >= max(shape) - 1


def map_statistics(erf, centre, side):
    """Radii holding 50 % and 90 % of the mass around pixel `centre` (y, x), and the share of it outside the square of
    `side` pixels centred there."""
    mass = erf / erf.sum()
    yy, xx = np.mgrid[: mass.shape[0], : mass.shape[1]]
    distance = np.hypot(yy - centre[0], xx - centre[1]).ravel()
    order = np.argsort(distance, kind="stable")
    cumulative = np.cumsum(mass.ravel()[order])
    radius = {share: float(distance[order][min(np.searchsorted(cumulative, share - 1e-12), len(order) - 1)]) for share in (0.5, 0.9)}
    half = side // 2
    inside = (np.abs(yy - centre[0]) <= half) & (np.abs(xx - centre[1]) <= half)
    return {"radius_50": radius[0.5], "radius_90": radius[0.9], "share_outside_fixed": float(mass[~inside].sum())}


def analyse(checkpoint, run, data_dir, download, images=IMAGES, device="auto", verbose=False):
    """The effective receptive field (and, for a deformable variant, the offset/mask summary) of a checkpoint over the
    first `images` test images, written to `run`'s analysis/ folder (utils/plumbing/runs.py). Returns the field's report."""
    state = load_checkpoint(checkpoint)
    device = resolve_device(device)
    variant = state["model_args"]["variant"]
    model = model_from_checkpoint(state, checkpoint, resolve_backend("auto", device, variant)).to(device).eval()
    test = data_mod.load_cifar10(data_dir, train=False, download=download)
    chosen = data_mod.to_unit(test.images[: min(images, len(test))], device)
    start = time.perf_counter()
    maps, found = erf_maps(model, chosen)
    side, stride = model.fixed_receptive_field(), model.feature_stride
    positions = {}
    for name, erf in maps.items():
        centre = (found[name][0] * stride, found[name][1] * stride)
        positions[name] = {"unit": list(found[name]), "pixel": list(centre), **map_statistics(erf, centre, side),
                           "map": np.round(erf / erf.sum(), 7).tolist()}
    report = {"checkpoint": str(checkpoint), "checkpoint_epoch": state.get("epoch"), "variant": variant, "network": state["model_args"]["network"],
              "images": len(chosen), "image_indices": f"0-{len(chosen) - 1} of the official test set", "bn_statistics": "the checkpoint's own",
              "fixed_receptive_field": side, "feature_stride": stride, "positions": positions, "seconds": round(time.perf_counter() - start, 1),
              "host": this_machine(device, torch.get_num_threads())}
    write_json(run.receptive_field_json, report)
    if VARIANTS[variant].deformable:
        write_json(run.offsets_json, {"checkpoint": str(checkpoint), "variant": variant, "images": len(chosen),
                                      "layers": summary(offsets_and_masks(model, chosen))})
    from utils.experiments.figures import plot_receptive_fields  # matplotlib loads here

    plot_receptive_fields({variant: report}, run.receptive_field_png, f"{variant}: effective receptive field, {len(chosen):,} test images")
    if verbose:
        print(f"{variant} ({checkpoint}): effective receptive field over {len(chosen):,} test images in {report['seconds']:.1f} s")
        for name, entry in positions.items():
            print(f"  {name}: unit {entry['unit']} (pixel {entry['pixel']}): 50 % of the gradient mass within {entry['radius_50']:.2f} px, "
                  f"90 % within {entry['radius_90']:.2f} px; {100 * entry['share_outside_fixed']:.1f} % outside the fixed-grid {side}x{side}")
        offsets = f" and {run.offsets_json.name}" if VARIANTS[variant].deformable else ""
        print(f"wrote {run.receptive_field_json}, {run.receptive_field_png.name}{offsets}")
    else:
        print(f"analysed {checkpoint}: centre r50 {positions['centre']['radius_50']:.2f} px, {report['seconds']:.1f} s", flush=True)
    return report


def analyse_protocol(cfg, images=IMAGES, device="auto"):
    """Analyse every finished and tested run of a protocol that has no analysis of its final weights yet, then aggregate
    its report again (compare.py's aggregation: the tables and comparison_receptive_field.png)."""
    from utils.experiments.compare import aggregate, needs_analysis  # compare imports this module

    layout = ProtocolLayout(cfg.outdir)
    for name, seed in cfg.jobs():
        run = layout.run(name, seed)
        if run_status(run, cfg.num_epoch).tested and needs_analysis(run, cfg, name):
            analyse(run.weights, run, cfg.data_dir, cfg.download, images, device)
    with contextlib.redirect_stdout(io.StringIO()):  # the whole report: it is in the file
        aggregate(cfg)
    print(f"[{cfg.protocol}] report aggregated again: {layout.file('comparison.md')}, {layout.file('comparison_receptive_field.png').name}")
