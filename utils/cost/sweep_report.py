"""The sweep's report: growth exponents, the Markdown tables and the log-log figure (sweep.py measures)."""
import numpy as np
from matplotlib.ticker import ScalarFormatter

from utils.cost.sweep import AXES
from utils.engine.plots import plt, save_figure

KINDS = (("forward", "forward"), ("forward_backward", "forward+backward"))


def _series(rows, impl, axis, threads, kind):
    """[(axis value, ms)] measured (not skipped) along `axis`."""
    return [(r[axis], r[f"{kind}_ms"]) for r in rows
            if r["axis"] == axis and r["impl"] == impl and r["threads"] == threads and r[f"{kind}_ms"] is not None]


def growth_exponent(series):
    """b in ms ~ value^b, least squares on log-log over all points; None with fewer than two."""
    if len(series) < 2:
        return None
    x, y = np.log([s[0] for s in series]), np.log([s[1] for s in series])
    return float(np.polyfit(x, y, 1)[0])


def growth_table(rows, impls, threads):
    """[{impl, kind, axis: exponent over all points, axis + " (last step)": exponent of the last two}]."""
    table = []
    for impl in impls:
        for kind, _ in KINDS:
            entry = {"impl": impl, "kind": kind}
            for axis in AXES:
                series = _series(rows, impl, axis, threads, kind)
                entry[axis], entry[f"{axis} (last step)"] = growth_exponent(series), growth_exponent(series[-2:])
            if any(entry[a] is not None for a in AXES):
                table.append(entry)
    return table


def _fmt(v, spec=".1f"):
    return "–" if v is None else format(v, spec)


def _cell(row, conv):
    parts = [_fmt(row[f"{k}_ms"]) for k, _ in KINDS if row[f"{k}_ms"] is not None or row["impl"].split(", ")[0] != "op"]
    ratios = [f"{row[f'{k}_ms'] / conv[f'{k}_ms']:.2f}x" for k, _ in KINDS if row[f"{k}_ms"] is not None and conv[f"{k}_ms"]]
    return " / ".join(parts) + (f" ({' / '.join(ratios)})" if ratios and row["impl"] != "Conv2d" else "")


def render_sweep(result):
    env, sweep = result["environment"], result["sweep"]
    rows, impls, base = sweep["rows"], sweep["implementations"], sweep["base"]
    lines = [f"# Cost curves: one 3x3 layer, {base['channels']}->{base['channels']} channels, batch {base['batch']}, "
             f"{base['resolution']}x{base['resolution']} at the base; one axis moved at a time", "",
             f"CPU: {env['device_name']} ({env['cpu_count']} cores), torch {env['torch']}, torchvision {env['torchvision']}, "
             f"ONNX Runtime {env.get('onnxruntime', 'absent')}, Python {env['python']}. Median of at least {env['repeats']} timed calls "
             f"after one warm-up call (more while they take under {env['sweep_min_time_s']} s in all); a call over "
             f"{env['sweep_max_call_s']} s is timed once and the larger points of its axis are skipped (–). Each cell: forward / "
             "forward+backward ms (× nn.Conv2d of the same point, same threads). DCNv2 = the whole modulated layer with its "
             "predictors; op = the deformable op alone, forward, given offsets and mask; ONNX Runtime gets the same threads.", ""]
    for axis in AXES:
        lines += [f"## {axis}", "", f"| {axis} | threads | " + " | ".join(impls) + " |", "|---|---|" + "---|" * len(impls)]
        for conv in (r for r in rows if r["axis"] == axis and r["impl"] == "Conv2d"):
            same = {r["impl"]: r for r in rows if r["axis"] == axis and r["threads"] == conv["threads"] and r[axis] == conv[axis]}
            lines.append(f"| {conv[axis]} | {conv['threads']} | " + " | ".join(_cell(same[i], conv) for i in impls) + " |")
        lines.append("")
    lines += _ort_lines(rows, impls)
    top = max(r["threads"] for r in rows)
    lines += ["## Growth", "", f"Exponent b of ms ~ value^b, fitted on log-log over each axis's points ({top} threads); in brackets the "
              "exponent between the last two points (the large-size trend, free of fixed per-call costs).", "",
              "| implementation | measured | " + " | ".join(AXES) + " |", "|---|---|" + "---|" * len(AXES)]
    for g in growth_table(rows, impls, top):
        cells = [f"{_fmt(g[a], '.2f')} ({_fmt(g[a + ' (last step)'], '.2f')})" for a in AXES]
        lines.append(f"| {g['impl']} | {dict(KINDS)[g['kind']]} | " + " | ".join(cells) + " |")
    lines += ["", "## Special cases", "", "Each in a fresh process; peak = peak resident memory above the process's own before the "
              "tensors were made (input, output, gradients included).", "",
              "| case | batch, channels, resolution | implementation | forward ms | forward+backward ms | peak MB | input MB | note |",
              "|---|---|---|---|---|---|---|---|"]
    for s in sweep["special"]:
        lines.append(f"| {s['case']} | {s['batch']}, {s['channels']}, {s['resolution']} | {s['impl']} | {_fmt(s.get('forward_ms'))} | "
                     f"{_fmt(s.get('forward_backward_ms'))} | {_fmt(s.get('peak_memory_mb'), '.0f')} | {_fmt(s.get('input_mb'), '.0f')} | "
                     f"{s.get('error') or s.get('skipped') or ''} |")
    return "\n".join(lines) + "\n"


def _ort_lines(rows, impls):
    if "op, cpp" not in impls:
        return []
    pairs = {}
    for r in rows:
        if r["impl"] in ("op, cpp", "op, ONNX Runtime") and r["forward_ms"] is not None:
            pairs.setdefault((r["batch"], r["channels"], r["resolution"], r["threads"]), {})[r["impl"]] = r["forward_ms"]
    both = {k: v for k, v in pairs.items() if len(v) == 2}
    if not both:
        return []
    ratio = {k: v["op, ONNX Runtime"] / v["op, cpp"] for k, v in both.items()}
    slower = [k for k, q in ratio.items() if q < 1]
    worst = min(ratio, key=ratio.get)
    return ["## The op alone against ONNX Runtime's DeformConv (forward)", "",
            f"cpp is faster at {len(both) - len(slower)} of {len(both)} measured shapes (ONNX Runtime time / cpp time from "
            f"{min(ratio.values()):.2f} to {max(ratio.values()):.2f}; lowest at batch, channels, resolution, threads = {worst}).",
            *(["Slower at: " + ", ".join(str(k) for k in slower) + "."] if slower else []), ""]


def _curve(rows, impl, axis, threads, kind, base):
    """[(x, ms)] of one line of the figure: along `axis` at `threads`, or for axis "threads" the base shape
    at every thread count."""
    if axis != "threads":
        return _series(rows, impl, axis, threads, kind)
    return [(r["threads"], r[f"{kind}_ms"]) for r in rows
            if r["axis"] == "batch" and r["batch"] == base["batch"] and r["impl"] == impl and r[f"{kind}_ms"] is not None]


def plot_sweep(result, path):
    """Rows: forward ms, forward+backward ms, forward+backward × nn.Conv2d; columns: batch, channels,
    resolution (log-log), threads. Solid: the most threads, dotted: one thread."""
    sweep = result["sweep"]
    rows, impls, base = sweep["rows"], sweep["implementations"], sweep["base"]
    threads = sorted({r["threads"] for r in rows})
    fig, axes = plt.subplots(3, 4, figsize=(18, 11), squeeze=False)
    for col, axis in enumerate(AXES + ("threads",)):
        for i, impl in enumerate(impls):
            for t in threads[-1:] if axis == "threads" else threads:  # the threads column: one curve over threads
                style = dict(color=f"C{i}", ls="-" if t == threads[-1] else ":", marker="o", ms=3)
                conv = dict(_curve(rows, "Conv2d", axis, t, "forward_backward", base))
                for row, (kind, _) in enumerate(KINDS):
                    pts = _curve(rows, impl, axis, t, kind, base)
                    if not pts:
                        continue
                    axes[row][col].plot(*zip(*pts), label=impl if t == threads[-1] else None, **style)
                    ratio = [(x, ms / conv[x]) for x, ms in pts if conv.get(x)]
                    if kind == "forward_backward" and impl.startswith("DCNv2") and ratio:
                        axes[2][col].plot(*zip(*ratio), **style)
        for row, label in enumerate(["forward ms", "forward+backward ms", "forward+backward × nn.Conv2d"]):
            ax = axes[row][col]
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel(axis)
            ax.set_ylabel(label)
            ax.grid(alpha=0.3, which="both")
            ax.set_xticks(sorted({line_x for line in ax.get_lines() for line_x in line.get_xdata()}))
            ax.xaxis.set_major_formatter(ScalarFormatter())
            if row == 2:
                ax.axhline(1, color="k", lw=0.8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(impls), frameon=False)
    fig.suptitle(f"One 3x3 layer; base: batch {base['batch']}, {base['channels']} channels, {base['resolution']}x{base['resolution']}; "
                 f"solid {threads[-1]} threads, dotted {threads[0]}", y=0.995)
    fig.tight_layout(rect=(0, 0.04, 1, 0.98))
    save_figure(fig, path)
