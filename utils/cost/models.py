"""Cost of each model and backend: layer and whole-model timings, throughput, peak memory, parameters.

Each (model, backend) is measured in a fresh subprocess, so that peak memory (CPU: growth of the peak
resident set over the process's own baseline; CUDA: torch's peak allocation) belongs to that variant
alone. Times are medians of `repeats` runs after `warmup` runs; ratios to Conv2d come from the same run.
"""
import dataclasses
import multiprocessing as mp
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision

from models.factory import CLASSES, build_model, matched_widths
from models.network import count_parameters, make_conv
from models.registry import VARIANTS
from utils.cost.op import layer_breakdown_rows, op_inference_rows, perturb_predictors
from utils.cost.report import render_markdown
from utils.engine import data as data_mod
from utils.engine.device import resolve_backend, resolve_device, usable_backends
from utils.plumbing.errors import UserError
from utils.plumbing.files import write_json, write_text
from utils.plumbing.isolated import call_in_process, peak_rss_mb
from utils.plumbing.machine import this_machine


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn, device, warmup, repeats):
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def measure_variant(variant, backend, compiled, cfg_dict, device_name):
    """All figures for one (model, backend, compiled or not); runs inside its own process. A compiled row's
    warm-up includes the compilation (warmup >= 2: one compile for training mode, one for evaluation)."""
    torch.manual_seed(0)
    device = torch.device(device_name)
    bs, conv_ch, warmup, repeats = cfg_dict["batch_size"], cfg_dict["conv_ch"], cfg_dict["warmup"], cfg_dict["repeats"]
    x = torch.randn(bs, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (bs,), device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    base_rss = peak_rss_mb()

    # The layer alone: the last conv of the network, on its real input size.
    in_ch, out_ch, size = CLASSES[cfg_dict["network"]].last_conv_shape(conv_ch)
    layer = make_conv(variant, in_ch, out_ch, backend).to(device)
    if hasattr(layer, "predictor_parameters"):  # non-zero offsets and masks, as after training (zero ones hit the same code paths anyway)
        perturb_predictors(layer)
    lx = torch.randn(bs, in_ch, size, size, device=device, requires_grad=True)

    def layer_forward():
        with torch.no_grad():
            run_layer(lx)

    def layer_forward_backward():
        run_layer(lx).sum().backward()

    model = build_model(variant, conv_ch, network=cfg_dict["network"], backend=backend).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    run_layer, run_model = (torch.compile(layer), torch.compile(model)) if compiled else (layer, model)

    def model_forward():
        model.eval()
        with torch.no_grad():
            run_model(x)

    def model_forward_backward():
        model.train()
        F.cross_entropy(run_model(x), y).backward()

    def train_step():
        model.train()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(run_model(x), y).backward()
        optimizer.step()

    row = {"model": variant, "backend": backend or "-", "compiled": compiled}
    for name, fn in [
        ("layer_forward_ms", layer_forward),
        ("layer_forward_backward_ms", layer_forward_backward),
        ("model_forward_ms", model_forward),
        ("model_forward_backward_ms", model_forward_backward),
        ("train_step_ms", train_step),
    ]:
        row[name] = median_ms(fn, device, warmup, repeats)
    row["train_images_per_s"] = bs / row["train_step_ms"] * 1000
    row["inference_images_per_s"] = bs / row["model_forward_ms"] * 1000
    if device.type == "cuda":
        row["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        row["peak_memory_mb"] = peak_rss_mb() - base_rss
    row["parameters"] = count_parameters(model)
    row["layer_parameters"] = count_parameters(layer)
    return row


def run_isolated(args):
    ok, value = call_in_process(measure_variant, *args)
    if not ok:
        raise UserError(f"benchmark of {args[0]} / {args[1] or 'no deformable op'} failed: {value}")
    return value


def data_pipeline_share(cfg, device):
    """Share of a real Conv2d training epoch's time spent producing batches (outside the model)."""
    try:
        full = data_mod.load_cifar10(cfg.data_dir, train=True, download=cfg.download)
        source = "CIFAR-10 training images"
    except UserError:
        n = cfg.batch_size * cfg.data_batches
        full = data_mod.ImageSet(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8), torch.arange(n) % 10)
        source = "random images (CIFAR-10 not found)"
    subset = full.subset(torch.arange(min(len(full), cfg.batch_size * cfg.data_batches)))
    batches = data_mod.Batches(subset, cfg.batch_size, device, shuffle=True, seed=0)
    model = build_model("Conv2d", cfg.conv_ch, network=cfg.network).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    model.train()
    data_s = model_s = 0.0
    it = iter(batches)
    while True:
        t0 = time.perf_counter()
        try:
            images, labels = next(it)
        except StopIteration:
            break
        _sync(device)
        t1 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()
        _sync(device)
        data_s += t1 - t0
        model_s += time.perf_counter() - t1
    return {"source": source, "batches": len(batches), "data_seconds": data_s, "model_seconds": model_s, "data_share": data_s / (data_s + model_s)}


def _cpu_name():
    host = this_machine()
    return f"{host['cpu']}, {host['cpu_isa'] or 'no AVX2'}"


def environment(cfg, device):
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": mp.cpu_count(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "auto_backend": resolve_backend("auto", device),
        "batch_size": cfg.batch_size,
        "network": cfg.network,
        "conv_ch": list(cfg.conv_ch),
        "warmup": cfg.warmup,
        "repeats": cfg.repeats,
    }


def run_sweep_benchmark(cfg):
    """The cost curves (sweep.py): <outdir>/<report_name, default benchmark_sweep>.{json,md,png}."""
    from utils.cost.sweep import implementations, run_sweep
    from utils.cost.sweep_report import plot_sweep, render_sweep

    env = {**environment(cfg, torch.device("cpu")), "sweep_max_call_s": cfg.sweep_max_call_s, "sweep_min_time_s": cfg.sweep_min_time_s}
    try:
        import onnxruntime

        env["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    sweep = run_sweep(cfg)
    sweep["implementations"] = implementations(sweep["backends"])
    sweep["base"] = {"batch": cfg.batch_size, "channels": cfg.sweep_base_channels, "resolution": cfg.sweep_base_resolution}
    result, stem = {"environment": env, "sweep": sweep}, Path(cfg.outdir) / (cfg.report_name or "benchmark_sweep")
    report = render_sweep(result)
    write_json(stem.with_suffix(".json"), result)
    write_text(stem.with_suffix(".md"), report)
    plot_sweep(result, stem.with_suffix(".png"))
    print(report)
    print(f"wrote {stem}.json, {stem}.md and {stem}.png")
    return result


def run_benchmark(cfg):
    if cfg.sweep:
        return run_sweep_benchmark(cfg)
    device = resolve_device(cfg.device)
    backends = usable_backends(cfg.backends, device)
    # Plain variants once; deformable ones once per backend. The first row (Conv2d) is the reference.
    models = ["Conv2d"] + [m for m in cfg.models if m != "Conv2d"]
    variants = [(m, b, False) for m in models for b in (backends if VARIANTS[m].deformable else [None])]
    if cfg.compile:  # compiled: each model once, deformable ones on the backend `auto` picks
        auto = resolve_backend("auto", device)
        variants += [(m, auto if VARIANTS[m].deformable else None, True) for m in models]
    rows = []
    for variant, backend, compiled in variants:
        print(f"measuring {variant}{f' / {backend}' if backend else ''}{', compiled' if compiled else ''} ...", flush=True)
        rows.append(run_isolated((variant, backend, compiled, dataclasses.asdict(cfg), str(device))))
    base = rows[0]
    for row in rows:
        for key in ("layer_forward_ms", "layer_forward_backward_ms", "model_forward_ms", "model_forward_backward_ms", "train_step_ms"):
            row[key.replace("_ms", "_vs_conv2d")] = row[key] / base[key]
    pipeline = data_pipeline_share(cfg, device)
    in_ch, out_ch, size = CLASSES[cfg.network].last_conv_shape(cfg.conv_ch)  # the layer the rows above measure
    op_rows = op_inference_rows(cfg.batch_size, in_ch, out_ch, size, backends, median_ms, cfg.warmup, cfg.repeats) if device.type == "cpu" else []
    env = environment(cfg, device)
    count = lambda name: count_parameters(build_model(name, cfg.conv_ch, network=cfg.network))  # noqa: E731
    matched = [{"model": m, "parameters": count(m), "target": VARIANTS[m].match_params, "target_parameters": count(VARIANTS[m].match_params),
                "widths": matched_widths({"variant": m, "conv_ch": cfg.conv_ch, "network": cfg.network})} for m in models if VARIANTS[m].match_params]
    result = {"environment": env, "results": rows, "data_pipeline": pipeline, "parameter_matched": matched,
              "op_inference": {"shape": [cfg.batch_size, in_ch, out_ch, size], "rows": op_rows}}
    deformable = [m for m in models if VARIANTS[m].deformable]
    if device.type == "cpu" and "cpp" in backends and deformable and cfg.network == "convnet":  # where the fastest backend's time goes, per block
        result["layer_breakdown"] = layer_breakdown_rows(cfg.batch_size, cfg.conv_ch, deformable, "cpp", median_ms, cfg.warmup, cfg.repeats)
    stem = Path(cfg.outdir) / (cfg.report_name or "benchmark")
    write_json(stem.with_suffix(".json"), result)
    report = render_markdown(result)
    write_text(stem.with_suffix(".md"), report)
    print(report)
    print(f"wrote {stem}.json and {stem}.md")
    return result
