"""Cost curves: one deformable layer against nn.Conv2d as batch, width, resolution and threads grow
(benchmark.py with "sweep": true; report and figures in sweep_report.py).

One axis at a time moves away from the base shape (batch `batch_size`, `sweep_base_channels` -> same
channels, `sweep_base_resolution` squared, 3x3, padding 1), and every point is measured at every thread
count: a reader sees each growth alone, and the ratio to nn.Conv2d of the same point. Implementations:
- "Conv2d": nn.Conv2d, the reference of every ratio;
- "DCNv2, <backend>": the whole modulated deformable layer (DeformableConv: its offset/mask predictor
  convolution, the sigmoid, the op), forward and forward+backward (the input needs a gradient, as in a
  network's second layer);
- "op, cpp" and "op, ONNX Runtime": the op alone, forward only, on the same input, offsets, mask and
  weights: ONNX Runtime's DeformConv node against our kernel at every shape (op.py builds it).
Timing adapts to the size: one warm-up call, then at least `repeats` timed calls (more while they take
under `sweep_min_time_s` in all); the median counts. A call slower than `sweep_max_call_s` is recorded once
and the larger points of that axis are skipped for that implementation (torchvision's CPU op reaches
this early). Two special cases run in a process each, so the peak memory is theirs alone: a batch-1
layer with a 1x1 output and the `sweep_large` shape.
"""
import statistics
import time

import torch

from models.deform_ops import deform_conv2d
from models.deformable_conv import DeformableConv
from utils.cost.op import onnxruntime_op, op_inputs, perturb_predictors
from utils.engine.device import usable_backends
from utils.plumbing.isolated import call_in_process, peak_rss_mb

AXES = ("batch", "channels", "resolution")


def implementations(backends):
    return ["Conv2d"] + [f"DCNv2, {b}" for b in backends] + (["op, cpp"] if "cpp" in backends else []) + ["op, ONNX Runtime"]


def _case(impl, batch, channels, size, threads):
    """{"forward": fn, "forward_backward": fn or None} for one implementation at one shape (CPU)."""
    torch.manual_seed(0)
    if impl == "Conv2d" or impl.startswith("DCNv2"):
        x = torch.randn(batch, channels, size, size, requires_grad=True)
        if impl == "Conv2d":
            layer = torch.nn.Conv2d(channels, channels, 3, padding=1)
        else:
            layer = DeformableConv(channels, channels, 3, padding=1, modulated=True, backend=impl.split(", ")[1])
            perturb_predictors(layer)

        def forward():
            with torch.no_grad():
                layer(x)
        return {"forward": forward, "forward_backward": lambda: layer(x).sum().backward()}
    x, weight, bias, offset, mask = op_inputs(batch, channels, channels, size)
    if impl == "op, cpp":
        x_cl = x.contiguous(memory_format=torch.channels_last)

        def forward():
            with torch.no_grad():
                deform_conv2d(x_cl, offset, weight, bias, 1, 1, 1, mask, backend="cpp")
        return {"forward": forward, "forward_backward": None}
    run = onnxruntime_op("DeformConv", {"x": x, "w": weight, "offset": offset, "b": bias, "mask": mask}, (batch, channels, size, size), threads)
    return {"forward": run, "forward_backward": None} if run else None


def timed(fn, repeats, max_call_s, min_time_s):
    """(median ms, timed calls): at least `repeats` calls, more while they took under min_time_s in all
    (at most 200); a first call over max_call_s is the only one (calls = 1)."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    if first > max_call_s:
        return first * 1000, 1
    times = []
    while len(times) < repeats or (sum(times) < min_time_s and len(times) < 200):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, len(times)


def points(cfg):
    """[(axis, shape dict)] in ascending order along each axis, the base shape on each."""
    base = {"batch": cfg.batch_size, "channels": cfg.sweep_base_channels, "resolution": cfg.sweep_base_resolution}
    values = {"batch": cfg.sweep_batch, "channels": cfg.sweep_channels, "resolution": cfg.sweep_resolution}
    return [(axis, {**base, axis: v}) for axis in AXES for v in sorted(set(values[axis]))]


def measure_sweep(cfg, backends):
    """Rows {axis, batch, channels, resolution, threads, impl, forward_ms, forward_backward_ms, calls, skipped}."""
    rows, cache, over = [], {}, set()  # over: (impl, axis, threads, kind) whose last call took too long
    saved_threads = torch.get_num_threads()
    try:
        for threads in sorted(set(cfg.sweep_threads)):
            torch.set_num_threads(threads)
            for axis, shape in points(cfg):
                for impl in implementations(backends):
                    key = (impl, threads, *shape.values())
                    # The base point is measured once and shared by the axes (unless one axis skipped it);
                    # a call too slow there stops the larger points of every axis.
                    point = cache.get(key) or _measure_point(impl, shape, threads, cfg, axis, over)
                    if not point["skipped"]:
                        cache[key] = point
                    over.update((impl, axis, threads, kind) for kind in point["too_slow"])
                    rows.append({"axis": axis, **shape, "threads": threads, "impl": impl, **point})
                print(f"  sweep: {threads} thread(s), {axis} = {shape[axis]} done", flush=True)
    finally:
        torch.set_num_threads(saved_threads)
    return rows


def _measure_point(impl, shape, threads, cfg, axis, over):
    case = _case(impl, shape["batch"], shape["channels"], shape["resolution"], threads)
    out = {"forward_ms": None, "forward_backward_ms": None, "calls": {}, "skipped": {}, "too_slow": []}
    if case is None:
        out["skipped"]["forward"] = "onnx/onnxruntime not installed"
        return out
    for kind in ("forward", "forward_backward"):
        if case[kind] is None:
            continue
        if (impl, axis, threads, kind) in over:
            out["skipped"][kind] = f"a smaller {axis} already took over {cfg.sweep_max_call_s} s per call"
            continue
        out[f"{kind}_ms"], out["calls"][kind] = timed(case[kind], cfg.repeats, cfg.sweep_max_call_s, cfg.sweep_min_time_s)
        if out[f"{kind}_ms"] > cfg.sweep_max_call_s * 1000:
            out["too_slow"].append(kind)
    return out


def measure_special(impl, batch, channels, size, threads, repeats, max_call_s, min_time_s):
    """One implementation at one shape in this (fresh) process: times and the peak resident memory above
    the process's own before any tensor was made (inputs, outputs and gradients included)."""
    torch.set_num_threads(threads)
    base = peak_rss_mb()
    case = _case(impl, batch, channels, size, threads)
    if case is None:
        return {"skipped": "onnx/onnxruntime not installed"}
    row = {}
    for kind in ("forward", "forward_backward"):
        if case[kind] is not None:
            row[f"{kind}_ms"], row[f"{kind}_calls"] = timed(case[kind], repeats, max_call_s, min_time_s)
    row["peak_memory_mb"] = peak_rss_mb() - base
    row["input_mb"] = batch * channels * size * size * 4 / 2**20
    return row


def special_cases(cfg, backends, rows):
    """The 1x1-output batch-1 case and the large case, for every implementation the sweep never had to
    skip a point of (one that had would take minutes per call at the large shape: torchvision's)."""
    slow = {r["impl"] for r in rows if any("took over" in why for why in r["skipped"].values())}
    cases = [("1x1 output, batch 1", (1, cfg.sweep_base_channels, 1)), ("large", tuple(cfg.sweep_large))]
    threads = max(cfg.sweep_threads)
    out = []
    for name, (batch, channels, size) in cases:
        for impl in implementations(backends):
            print(f"  sweep: {name} case, {impl} ...", flush=True)
            shape = {"case": name, "batch": batch, "channels": channels, "resolution": size, "threads": threads, "impl": impl}
            if impl in slow and name == "large":
                out.append({**shape, "skipped": "skipped at a smaller sweep point already (over sweep_max_call_s per call)"})
                continue
            ok, row = call_in_process(measure_special, impl, batch, channels, size, threads, cfg.repeats, cfg.sweep_max_call_s, cfg.sweep_min_time_s)
            out.append({**shape, **(row if ok else {"error": row})})
    return out


def run_sweep(cfg):
    """The sweep on the CPU: {"rows": [...], "special": [...], "backends": [...]}."""
    backends = usable_backends(cfg.backends, torch.device("cpu"))
    rows = measure_sweep(cfg, backends)
    return {"rows": rows, "special": special_cases(cfg, backends, rows), "backends": backends}
