"""What test_<Model>.py runs: a checkpoint evaluated on the 10,000 official test images as trained and with precise
BatchNorm statistics (and, for the robustness report, on transformed copies of them), written to the run's test/ folder."""
import dataclasses

import numpy as np
import torch

from models.network import count_parameters, stored_model_args
from models.registry import VARIANTS
from utils.engine import data as data_mod
from utils.engine.checkpoint import check_model_args, load_checkpoint, model_from_checkpoint, save_weights
from utils.engine.device import backend_note, resolve_backend, resolve_device
from utils.engine.evaluate import evaluate, precise_bn
from utils.engine.plots import plot_confusion
from utils.engine.robustness import robustness
from utils.plumbing.errors import UserError
from utils.plumbing.files import write_json
from utils.plumbing.machine import this_machine
from utils.plumbing.runs import RunLayout, reference_weights


def scores(result):
    """One evaluation as metrics.json keeps it: exact counts, per class, and the confusion matrix."""
    return {"accuracy": result.accuracy, "correct": int(np.trace(result.confusion)), "loss": result.loss,
            "per_class_accuracy": dict(zip(data_mod.CLASSES, result.per_class_accuracy())), "confusion_matrix": result.confusion.tolist()}


def estimate_bn(cfg, state, model, device):
    """Precise BatchNorm statistics on the run's own training split (the split its checkpoint's config defines), in
    batches of its training batch size, un-augmented unless `precise_bn_augmented` asks for the run's own
    augmentation; (PreciseBN, augmentation, None), or (None, None, why not)."""
    if not cfg.precise_bn:
        return None, None, "turned off (precise_bn false)"
    split = data_mod.Split.recorded(state.get("config"))
    if split is None:
        return None, None, "the checkpoint does not record its training split (weights from elsewhere): its own statistics are used"
    train_set, _ = split.draw(data_mod.load_cifar10(cfg.data_dir, train=True, download=cfg.download))
    if cfg.precise_bn_images is not None:
        train_set = train_set.subset(torch.arange(min(cfg.precise_bn_images, len(train_set))))
    augmentation = state["config"].get("augmentation", "none") if cfg.precise_bn_augmented else "none"
    return precise_bn(model, train_set, state["config"].get("batch_size", 32), device, augmentation, split.seed), augmentation, None


def _count(scores_, images):
    return f"{scores_['accuracy']:.4f} ({scores_['correct']:,}/{images:,})"


def run_test(cfg, script_variant=None):
    """Evaluate the checkpoint a TestConfig names on the 10,000 official test images: as trained, then (unless
    turned off) with precise BatchNorm statistics, which are the headline and what the robustness copies use. The
    checkpoint says which variant and widths it holds; `variant`/`conv_ch` in the config, when given, are checked
    against it, and a test_<Model>.py script (`script_variant`) only tests the variants it runs. The checkpoint
    file is never changed."""
    state = load_checkpoint(cfg.model, variant=cfg.variant or script_variant)  # before loading data: a bad checkpoint fails fast
    check_model_args(state, cfg.model, {"variant": cfg.variant, "conv_ch": cfg.conv_ch}, "the config")
    name = state["model_args"]["variant"]
    if script_variant is not None and VARIANTS[name].family != script_variant:
        script = VARIANTS[name].family
        raise UserError(f"checkpoint {cfg.model} holds a {name} model; test it with test_{script}.py, not test_{script_variant}.py")
    run = RunLayout(cfg.outdir) if cfg.outdir else reference_weights(name) if "source" in state else RunLayout.of_checkpoint(cfg.model)
    device = resolve_device(cfg.device)
    backend = resolve_backend(cfg.dcn_backend, device, name)
    model = model_from_checkpoint(state, cfg.model, backend).to(device)
    test_set = data_mod.load_cifar10(cfg.data_dir, train=False, download=cfg.download)
    print(f"testing {name} ({count_parameters(model):,} parameters) from {cfg.model} on {len(test_set):,} test images, {device}{backend_note(backend)}")
    test_batches = data_mod.Batches(test_set, cfg.batch_size, device)
    as_trained = evaluate(model, test_batches)
    bn, augmentation, skipped = estimate_bn(cfg, state, model, device)
    precise = evaluate(model, test_batches) if bn else None
    headline = precise or as_trained
    metrics = {
        "variant": name,
        "model_args": stored_model_args(state["model_args"]),
        "checkpoint": str(cfg.model),
        "checkpoint_epoch": state.get("epoch"),
        "parameters": count_parameters(model),
        "test_images": headline.images,
        # The headline (what compare.py aggregates): precise BatchNorm statistics when estimated, else as trained.
        "bn_statistics": "precise" if bn else "as trained",
        **scores(headline),
        "as_trained": scores(as_trained),
        # "augmentation" only when not "none": metrics.json files written before it stay as they were.
        "precise_bn": ({**scores(precise), **dataclasses.asdict(bn), "subset": cfg.precise_bn_images,
                        **({"augmentation": augmentation} if augmentation != "none" else {})} if bn else {"skipped": skipped}),
        "images_per_second": as_trained.images / as_trained.seconds,
        "device": str(device),
        "dcn_backend": backend,
        # Where it was tested: images/s depend on the machine, and the rotated copies' bytes do too (robustness.py).
        "host": this_machine(device, torch.get_num_threads()),
    }
    if "source" in state:  # a reference checkpoint: also kept in this repository's format, for every other tool
        metrics["source"] = state["source"]
        if not run.weights.exists():
            save_weights(run.weights, state["model_args"], state["model"], state["epoch"], {"source": state["source"], "converted_from": str(cfg.model)})
            print(f"wrote {run.weights}: the same weights in this repository's format (export_onnx.py, visualize_offsets.py take it)")
    print(f"test accuracy as trained: {_count(metrics['as_trained'], as_trained.images)}")
    if bn:
        print(f"test accuracy with precise BatchNorm statistics: {_count(metrics['precise_bn'], precise.images)} (re-estimated on "
              f"{bn.images:,} training images of the run's split{'' if augmentation == 'none' else f' ({augmentation}, as trained)'}, "
              f"{bn.batches:,} batches of {bn.batch_size}, in {bn.seconds:.1f} s)")
    else:
        print(f"precise BatchNorm statistics: skipped, {skipped}")
    per_class = ", ".join(f"{c} {metrics['as_trained']['per_class_accuracy'][c]:.3f}" + (f"/{metrics['per_class_accuracy'][c]:.3f}" if bn else "")
                          for c in data_mod.CLASSES)
    print(f"per class ({'as trained/precise BN' if bn else 'as trained'}): {per_class}")
    if cfg.robustness:
        metrics["robustness"] = robustness(model, test_set, cfg.batch_size, device, cfg.robustness_images)
        shown = ", ".join(f"{copy} {acc:.3f}" for copy, acc in metrics["robustness"]["accuracy"].items())
        print(f"robustness on {metrics['robustness']['images']:,} test images ({metrics['bn_statistics']} BatchNorm statistics): {shown}")
    existed = run.metrics.exists()
    write_json(run.metrics, metrics)
    panels = [(as_trained.confusion, f"as trained: {as_trained.accuracy:.4f}")] + ([(precise.confusion, f"precise BN: {precise.accuracy:.4f}")] if bn else [])
    plot_confusion(panels, data_mod.CLASSES, run.confusion_png, f"{name}: test accuracy")
    print(f"wrote {run.metrics} and {run.confusion_png.name}" + (" (replacing the previous test results)" if existed else ""))
    return metrics
