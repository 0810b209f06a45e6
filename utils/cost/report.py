"""The benchmark's Markdown report (result/benchmark.md): the measured table, the speed-ups over
torchvision's op, the parameter-matched control's count and the data pipeline's share."""
from models.registry import DEFAULT_NETWORK, VARIANTS


def _speed(ratio):
    """A speed ratio (other's time / ours) in words that read right both ways: 2.0x faster, 10.0x slower."""
    return f"{ratio:.1f}x faster" if ratio >= 1 else f"{1 / ratio:.1f}x slower"


def _network(env):
    """The network the rows built, where it is not the default (reports from before the key read as they did)."""
    return f"{env['network']} with " if env.get("network", DEFAULT_NETWORK) != DEFAULT_NETWORK else ""


def render_markdown(result):
    env, rows, pipe = result["environment"], result["results"], result["data_pipeline"]
    matched = result.get("parameter_matched", [])
    lines = [
        f"# Benchmark: batch {env['batch_size']}, 32x32 images, {_network(env)}conv_ch {env['conv_ch']}",
        "",
        f"Device {env['device']} ({env['device_name']}), {env['torch_threads']} torch threads / {env['cpu_count']} CPUs, "
        f"torch {env['torch']}, torchvision {env['torchvision']}, Python {env['python']}. Median of {env['repeats']} runs "
        f"after {env['warmup']} warm-up runs; ratios are to Conv2d in this same run. `auto` picks `{env['auto_backend']}` here. "
        "Layer = the last conv layer alone (with its offset/mask predictors); model = the whole network. "
        "`compiled`: torch.compile (default mode), compilation excluded (it happens in the warm-up).",
        "",
        "| model | backend | layer fwd ms | layer fwd+bwd ms | model fwd ms | model fwd+bwd ms | train step ms | × Conv2d (step) "
        "| × Conv2d (layer fwd+bwd) | train img/s | infer img/s | peak MB | params |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['backend']}{', compiled' if r.get('compiled') else ''} | {r['layer_forward_ms']:.1f} | "
            f"{r['layer_forward_backward_ms']:.1f} | {r['model_forward_ms']:.1f} | {r['model_forward_backward_ms']:.1f} | {r['train_step_ms']:.1f} | "
            f"{r['train_step_vs_conv2d']:.2f} | {r['layer_forward_backward_vs_conv2d']:.2f} | {r['train_images_per_s']:.0f} | "
            f"{r['inference_images_per_s']:.0f} | {r['peak_memory_mb']:.0f} | {r['parameters']:,} |"
        )
    by_key = {(r["model"], r["backend"]): r for r in rows if not r.get("compiled")}
    for name in (v.name for v in VARIANTS.values() if v.deformable):
        tv = by_key.get((name, "torchvision"))
        for backend in ("gather", "cpp"):
            ours = by_key.get((name, backend))
            if tv and ours:
                layer, step = (tv[k] / ours[k] for k in ("layer_forward_backward_ms", "train_step_ms"))
                lines.append(f"\n{name}: `{backend}` against `torchvision`: layer (fwd+bwd) {_speed(layer)}, train step {_speed(step)}.")
    for m in matched:
        lines.append(f"\n{m['model']}: widths {m['widths']} (conv_ch {env['conv_ch']} scaled by one factor), {m['parameters']:,} parameters = "
                     f"{100 * m['parameters'] / m['target_parameters']:.1f}% of {m['target']}'s {m['target_parameters']:,}.")
    ops = result.get("op_inference", {})
    if ops.get("rows"):
        batch, in_ch, out_ch, size = ops["shape"]
        lines += ["", f"The op alone, forward (inference): batch {batch}, {in_ch}→{out_ch} channels, {size}x{size}, 3x3, given offsets and mask; "
                  f"ONNX Runtime as one node with the same weights and {env['torch_threads']} threads. Difference: max |output difference| to "
                  "the first row of its kind (deformable / plain).", "", "| op | forward ms | × plain F.conv2d (NCHW) | max difference |",
                  "|---|---|---|---|"]
        plain = next(r["forward_ms"] for r in ops["rows"] if r["op"] == "F.conv2d, NCHW")
        lines += [f"| {r['op']} | {r['forward_ms']:.1f} | {r['forward_ms'] / plain:.2f} | {r['max_abs_difference']:.1e} |" for r in ops["rows"]]
    lines += _breakdown_lines(result.get("layer_breakdown", []))
    lines += [
        "",
        f"Data pipeline ({pipe['source']}, Conv2d training, {pipe['batches']} batches): {pipe['data_seconds']:.2f} s producing "
        f"batches vs {pipe['model_seconds']:.2f} s in the model: {100 * pipe['data_share']:.1f}% of the epoch is outside the model.",
        "",
    ]
    return "\n".join(lines)


def _breakdown_lines(rows):
    """Where the deformable layers' time goes (op.layer_breakdown_rows), block by block."""
    if not rows:
        return []
    lines = ["", f"Where the time goes (backend `{rows[0]['backend']}`, forward+backward ms unless marked; op = the deformable op alone "
             "with given offsets/mask; predictor = its offset/mask convolution alone; excess = layer - nn.Conv2d):", "",
             "| block | batch, in→out, size | model | nn.Conv2d | predictor conv | op forward | op fwd+bwd | layer | excess |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        n, i, o, size = r["shape"]
        lines.append(f"| {r['block']} | {n}, {i}→{o}, {size}x{size} | {r['model']} | {r['nn.Conv2d']:.1f} | {r['predictor conv']:.1f} | "
                     f"{r['op forward']:.1f} | {r['op forward+backward']:.1f} | {r['layer']:.1f} | {r['layer'] - r['nn.Conv2d']:+.1f} |")
    return lines
