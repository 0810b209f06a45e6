"""The training loop: one place for data, model, optimiser, loss, validation, history, plots and checkpoints."""
import dataclasses
import random
import shutil
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from models.deform_ops import NonFiniteArgument
from models.network import ConvNet, count_parameters, model_args
from utils.engine import data as data_mod
from utils.engine.checkpoint import check_model_args, load_checkpoint, save_checkpoint
from utils.engine.device import backend_note, resolve_backend, resolve_device
from utils.engine.evaluate import evaluate
from utils.engine.plots import plot_loss
from utils.engine.record import Record, finish
from utils.plumbing.errors import Interrupted, UserError
from utils.plumbing.files import write_csv, write_json
from utils.plumbing.runs import RunLayout, run_status


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def prepare_data(cfg):
    return data_mod.Split.of(cfg).draw(data_mod.load_cifar10(cfg.data_dir, train=True, download=cfg.download))


def group_learning_rates(cfg):
    """AdamW's learning rate per parameter group: [all] or, with an offset_lr_mult, [others, predictors]."""
    return [cfg.learning_rate] if cfg.offset_lr_mult == 1.0 else [cfg.learning_rate, cfg.learning_rate * cfg.offset_lr_mult]


def make_optimizer(model, cfg):
    """AdamW; the offset/mask predictors get their own group when offset_lr_mult is not 1 (one group
    otherwise, so runs and checkpoints from before the key existed resume unchanged)."""
    predictors = {id(p) for p in model.predictor_parameters()}
    if cfg.offset_lr_mult == 1.0 or not predictors:
        return torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    groups = [[p for p in model.parameters() if id(p) not in predictors], [p for p in model.parameters() if id(p) in predictors]]
    return torch.optim.AdamW([{"params": ps, "lr": lr} for ps, lr in zip(groups, group_learning_rates(cfg))], weight_decay=cfg.weight_decay)


def resume_state(run, cfg):
    """Model/optimizer/history of the latest finished epoch, checked against the config."""
    if not run.last.exists():
        hint = (" (a finished run from another machine keeps only its final weights, not the optimizer state needed to continue it)"
                if run.weights.exists() else "")
        raise UserError(f"--resume: no resumable checkpoint at {run.last}{hint}; start the run without --resume")
    state = load_checkpoint(run.last)
    check_model_args(state, run.last, model_args(cfg), "the config (--resume continues a run with the config it was started with)")
    if state["epoch"] > cfg.num_epoch or (state["epoch"] == cfg.num_epoch and run_status(run, cfg.num_epoch).state == "done"):
        raise UserError(f"--resume: the run in {run.root} already has {state['epoch']} epochs; raise num_epoch above {state['epoch']} to extend it")
    return state


def train(cfg, resume=False, overwrite=False, resume_command="--resume", on_epoch=None):
    """Train the model a TrainConfig describes; returns the per-epoch history. `on_epoch(entry)` is called after
    each finished (and saved) epoch with its history entry (compare.py's progress line)."""
    run = RunLayout(cfg.outdir)
    if run.has_training() and not (resume or overwrite):
        raise UserError(f"{run.train} already holds a training run; add --resume to continue it or --overwrite to replace it (or change outdir)")
    state = resume_state(run, cfg) if resume else None
    device = resolve_device(cfg.device)
    backend = resolve_backend(cfg.dcn_backend, device, cfg.variant)
    name = cfg.variant
    config_dict = dataclasses.asdict(cfg)
    if state is not None and state["epoch"] == cfg.num_epoch:
        # Training finished but the process stopped before the final files were written (or an older
        # version wrote none): write them from the last checkpoint; nothing is retrained.
        finish(run, Record(run, cfg, state, device, backend), cfg, state["model"])
        print(f"{name}: all {cfg.num_epoch} epochs were trained already; wrote {run.weights} and {run.record}")
        return list(state["history"])
    seed_everything(cfg.random_seed)
    train_set, val_set = prepare_data(cfg)

    model = ConvNet(**model_args(cfg), backend=backend, zero_predictors=cfg.predictor_init == "zeros").to(device)
    optimizer = make_optimizer(model, cfg)
    history, start_epoch = [], 1
    if state is not None:
        model.load_state_dict(state["model"])
        if len(state["optimizer"]["param_groups"]) != len(optimizer.param_groups):
            raise UserError(f"--resume: {run.last} was trained with a different offset_lr_mult (1.0 and other values use different "
                            f"optimizer groups); resume with the run's own offset_lr_mult or start a new run")
        optimizer.load_state_dict(state["optimizer"])
        # A resumed run may change these (e.g. a new learning rate); the config wins, as it does for num_epoch.
        for group, lr in zip(optimizer.param_groups, group_learning_rates(cfg)):
            group["lr"], group["weight_decay"] = lr, cfg.weight_decay
        torch.set_rng_state(state["torch_rng"])
        history, start_epoch = list(state["history"]), state["epoch"] + 1
    elif overwrite:
        # Only now: a config or data error above leaves the old run untouched.
        for path in (run.train, run.test):
            if path.exists():
                shutil.rmtree(path)
        run.record.unlink(missing_ok=True)

    train_batches = data_mod.Batches(train_set, cfg.batch_size, device, shuffle=True, seed=cfg.random_seed)
    val_batches = data_mod.Batches(val_set, cfg.batch_size, device)
    print(
        f"training {name} ({count_parameters(model):,} parameters) on {len(train_set):,} images, validating on "
        f"{len(val_set):,}; {device}{backend_note(backend)}, epochs {start_epoch}..{cfg.num_epoch}, writing {run.root}"
    )
    # Compiled: the same parameters (checkpoints hold `model`'s), run as a compiled graph. The first epoch pays
    # the compilation (tens of seconds; once more for the smaller last batch and for evaluation mode).
    runner = torch.compile(model) if cfg.compile else model
    record = Record(run, cfg, state, device, backend)
    if state is None:
        save_checkpoint(run.last, model, optimizer, 0, history, config_dict)  # so even a Ctrl-C in epoch 1 can resume
    record.update(start_epoch - 1, trained=False)

    for epoch in range(start_epoch, cfg.num_epoch + 1):
        try:
            train_loss, seconds = train_one_epoch(runner, optimizer, train_batches, epoch, cfg.num_epoch)
            val = evaluate(runner, val_batches, train_mode=cfg.validate_in_train_mode)
            history.append(
                {"epoch": epoch, "train_loss": train_loss, "val_loss": val.loss, "val_accuracy": val.accuracy,
                 "train_seconds": seconds, "val_seconds": val.seconds}
            )
            print(f"epoch {epoch}/{cfg.num_epoch}: train loss {train_loss:.4f}, val loss {val.loss:.4f}, "
                  f"val acc {val.accuracy:.4f}, {seconds:.1f}s", flush=True)
            write_json(run.history_json, history)
            write_csv(run.history_csv, history)
            plot_loss(history, run.loss_png, f"{name}: loss per epoch")
            if epoch % cfg.save_epoch_freq == 0 or epoch == cfg.num_epoch:
                save_checkpoint(run.checkpoint(epoch), model, optimizer, epoch, history, config_dict)
            save_checkpoint(run.last, model, optimizer, epoch, history, config_dict)
            if epoch == cfg.num_epoch:
                finish(run, record, cfg, model.state_dict())
            else:
                record.update(epoch, trained=False)
        except KeyboardInterrupt:
            done = history[-1]["epoch"] if history else 0  # last.pth is written last: it holds `done` epochs
            raise Interrupted(f"interrupted in epoch {epoch}; {done} finished epochs are saved in {run.last}; continue with: {resume_command}") from None
        except NonFiniteLoss as e:
            raise UserError(
                f"training stopped: the loss became {e.value} in epoch {epoch}, batch {e.batch}; the last good checkpoint "
                f"({epoch - 1} epochs) is {run.last}; lower learning_rate and start again with --overwrite"
            ) from None
        except NonFiniteArgument as e:  # the offset/mask predictors diverged before the loss could show it
            raise UserError(
                f"training stopped in epoch {epoch}: {e}; the last good checkpoint ({epoch - 1} epochs) is {run.last}; "
                f"lower learning_rate and start again with --overwrite"
            ) from None
        except torch.OutOfMemoryError:
            raise UserError(
                f"out of GPU memory in epoch {epoch} at batch_size {cfg.batch_size}; set a smaller batch_size (e.g. {max(1, cfg.batch_size // 2)})"
            ) from None
        if on_epoch is not None:
            on_epoch(history[-1])
    print(f"done: {run.loss_png}, {run.history_json}, {run.weights} (final weights), {run.checkpoint(cfg.num_epoch)}")
    return history


class NonFiniteLoss(Exception):
    def __init__(self, value, batch):
        super().__init__(f"loss {value} at batch {batch}")
        self.value, self.batch = value, batch


def train_one_epoch(model, optimizer, batches, epoch, num_epoch):
    """One pass over the training batches; returns (mean training loss per image, seconds)."""
    model.train()
    batches.epoch = epoch  # the shuffle order depends only on (seed, epoch)
    loss_sum, n = 0.0, 0
    start = time.perf_counter()
    bar = tqdm(batches, desc=f"epoch {epoch}/{num_epoch}", leave=False, dynamic_ncols=True, disable=None)  # off when not a terminal
    for batch, (images, labels) in enumerate(bar, start=1):
        loss = F.cross_entropy(model(images), labels)
        value = loss.item()
        if not np.isfinite(value):
            raise NonFiniteLoss(value, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += value * labels.numel()
        n += labels.numel()
        bar.set_postfix(loss=f"{loss_sum / n:.4f}")
    bar.close()
    return loss_sum / n, time.perf_counter() - start
