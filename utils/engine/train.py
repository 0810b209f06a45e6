"""The training loop: data -> model -> loss -> optimizer step, epoch by epoch (train() and train_one_epoch()), with
what surrounds it kept apart: starting or resuming (start, restore, clear), what each epoch saves (save_epoch,
finish) and what a stop answers (Stops)."""
import math
import random
import shutil
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from tqdm import tqdm

from models.deform_ops import NonFiniteArgument
from models.factory import build_model
from models.network import count_parameters, model_args
from utils.engine import data as data_mod
from utils.engine.checkpoint import check_model_args, load_checkpoint, save_checkpoint, save_weights
from utils.engine.device import backend_note, resolve_backend, resolve_device
from utils.engine.evaluate import evaluate
from utils.engine.plots import plot_loss
from utils.plumbing.errors import Interrupted, UserError
from utils.plumbing.files import write_csv, write_json
from utils.plumbing.machine import this_machine
from utils.plumbing.runs import RunLayout, RunRecord, run_status


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def prepare_data(cfg):
    return data_mod.Split.of(cfg).draw(data_mod.load_cifar10(cfg.data_dir, train=True, download=cfg.download))


def group_learning_rates(cfg):
    """The base learning rate per parameter group: [all] or, with an offset_lr_mult, [others, predictors]."""
    return [cfg.learning_rate] if cfg.offset_lr_mult == 1.0 else [cfg.learning_rate, cfg.learning_rate * cfg.offset_lr_mult]


def make_optimizer(model, cfg):
    """AdamW, or SGD with Nesterov momentum 0.9 (weight decay as an L2 term, as He et al.); the offset/mask predictors
    get their own group when offset_lr_mult is not 1 (one group otherwise, so runs and checkpoints from before the key
    existed resume unchanged)."""
    predictors = {id(p) for p in model.predictor_parameters()}
    if cfg.offset_lr_mult == 1.0 or not predictors:
        groups = [{"params": list(model.parameters())}]
    else:
        groups = [{"params": [p for p in model.parameters() if id(p) not in predictors]}, {"params": [p for p in model.parameters() if id(p) in predictors]}]
    for group, lr in zip(groups, group_learning_rates(cfg)):
        group["lr"] = lr
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.learning_rate, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)


class Schedule:
    """The learning rate of every optimizer step from (config, step) alone, so a resumed run continues exactly and
    keeps no scheduler state: a linear warmup over `warmup_epochs` (step s of W at (s + 1) / W of the rate), then
    the rate held ("constant") or decayed by a half cosine to zero at the end of the last epoch ("cosine").
    Hand-written rather than torch.optim.lr_scheduler.LambdaLR: that class keeps a step count of its own, which a
    resume would have to restore beside the optimizer; here the step is the loop's."""

    def __init__(self, cfg, steps_per_epoch):
        self.kind, self.base = cfg.lr_schedule, group_learning_rates(cfg)
        self.warmup, self.total = cfg.warmup_epochs * steps_per_epoch, cfg.num_epoch * steps_per_epoch

    def factor(self, step):
        """The multiple of the configured rate at optimizer step `step` (0-based, counted over the whole run)."""
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.kind == "constant":
            return 1.0
        return 0.5 * (1 + math.cos(math.pi * (step - self.warmup) / max(1, self.total - self.warmup)))

    def apply(self, optimizer, step):
        for group, base in zip(optimizer.param_groups, self.base):
            group["lr"] = base * self.factor(step)


def resume_state(run, cfg):
    """Model/optimizer/history of the latest finished epoch, checked against the config: the same model, every
    result-shaping setting the same (a key the checkpoint's config lacks: its default), and with a learning-rate
    schedule the same num_epoch, whose horizon shaped every step already taken."""
    if not run.last.exists():
        hint = (" (a finished run from another machine keeps only its final weights, not the optimizer state needed to continue it)"
                if run.weights.exists() else "")
        raise UserError(f"--resume: no resumable checkpoint at {run.last}{hint}; start the run without --resume")
    state = load_checkpoint(run.last)
    check_model_args(state, run.last, model_args(cfg), "the config (--resume continues a run with the config it was started with)")
    mismatch = cfg.settings_mismatch(state.get("config") or {})
    if mismatch:
        raise UserError(f"--resume: {run.root} {mismatch}; resume with the run's own settings, or start a new run (another outdir, or --overwrite)")
    planned = (state.get("config") or {}).get("num_epoch", cfg.num_epoch)
    if cfg.lr_schedule != "constant" and planned != cfg.num_epoch:
        raise UserError(f"--resume: {run.root} was trained for a {planned}-epoch {cfg.lr_schedule} schedule, the config says num_epoch "
                        f"{cfg.num_epoch}; the schedule shaped every step taken, so it cannot be extended or cut: resume with num_epoch "
                        f"{planned}, or start a new run")
    if state["epoch"] > cfg.num_epoch or (state["epoch"] == cfg.num_epoch and run_status(run, cfg.num_epoch).state == "done"):
        raise UserError(f"--resume: the run in {run.root} already has {state['epoch']} epochs; raise num_epoch above {state['epoch']} to extend it")
    return state


def start(run, cfg, resume, overwrite):
    """The checkpoint state to continue from (None: a new run), after the rules about what outdir may hold."""
    if run.has_training() and not (resume or overwrite):
        raise UserError(f"{run.train} already holds a training run; add --resume to continue it or --overwrite to replace it (or change outdir)")
    return resume_state(run, cfg) if resume else None


def clear(run):
    """--overwrite: the old run goes only once the new one has its data, model and optimizer (an error before
    leaves it untouched)."""
    for path in (run.train, run.test):
        if path.exists():
            shutil.rmtree(path)
    run.record.unlink(missing_ok=True)


def restore(model, optimizer, state):
    """The model, optimizer and RNG of a checkpoint (resume_state checked that it fits the config)."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])


def finish(run, record, cfg, model_state):
    """The files that keep a finished run: final weights, then the record that says it is done."""
    save_weights(run.weights, model_args(cfg), model_state, cfg.num_epoch, cfg.as_record())
    record.update(cfg.num_epoch, trained=True)


def save_epoch(run, record, cfg, model, optimizer, history):
    """After each epoch: history, loss plot, checkpoints, and the record (the final files after the last)."""
    epoch = history[-1]["epoch"]
    write_json(run.history_json, history)
    write_csv(run.history_csv, history)
    plot_loss(history, run.loss_png, f"{cfg.variant}: loss per epoch")
    if epoch % cfg.save_epoch_freq == 0 or epoch == cfg.num_epoch:
        save_checkpoint(run.checkpoint(epoch), model, optimizer, epoch, history, cfg.as_record())
    save_checkpoint(run.last, model, optimizer, epoch, history, cfg.as_record())  # last: it says `epoch` is done
    if epoch == cfg.num_epoch:
        finish(run, record, cfg, model.state_dict())
    else:
        record.update(epoch, trained=False)


class Stops:
    """Turns what stops a training run into one line that says what is kept and what to do (a context manager
    around the loop; `epoch` is the one in progress)."""

    def __init__(self, run, cfg, resume_command):
        self.run, self.cfg, self.resume_command, self.epoch, self.done = run, cfg, resume_command, 0, 0

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        run, epoch = self.run, self.epoch
        if kind is KeyboardInterrupt:
            raise Interrupted(f"interrupted in epoch {epoch}; {self.done} finished epochs are saved in {run.last}; "
                              f"continue with: {self.resume_command}") from None
        if kind is NonFiniteLoss:
            raise UserError(f"training stopped: the loss became {error.value} in epoch {epoch}, batch {error.batch}; the last good checkpoint "
                            f"({epoch - 1} epochs) is {run.last}; lower learning_rate and start again with --overwrite") from None
        if kind is not None and issubclass(kind, NonFiniteArgument):  # the offset/mask predictors diverged before the loss showed it
            raise UserError(f"training stopped in epoch {epoch}: {error}; the last good checkpoint ({epoch - 1} epochs) is {run.last}; "
                            f"lower learning_rate and start again with --overwrite") from None
        if kind is not None and issubclass(kind, torch.OutOfMemoryError):
            raise UserError(f"out of GPU memory in epoch {epoch} at batch_size {self.cfg.batch_size}; "
                            f"set a smaller batch_size (e.g. {max(1, self.cfg.batch_size // 2)})") from None
        return False


def train(cfg, resume=False, overwrite=False, resume_command="--resume", on_epoch=None):
    """Train the model a TrainConfig describes; returns the per-epoch history. `on_epoch(entry)` is called after
    each finished (and saved) epoch with its history entry (compare.py's progress line)."""
    run = RunLayout(cfg.outdir)
    state = start(run, cfg, resume, overwrite)
    device = resolve_device(cfg.device)
    backend = resolve_backend(cfg.dcn_backend, device, cfg.variant)
    record = RunRecord(run, cfg, state, this_machine(device, torch.get_num_threads()),
                       {"torch": torch.__version__, "torchvision": torchvision.__version__}, backend)
    if state is not None and state["epoch"] == cfg.num_epoch:
        # Training finished but the process stopped before the final files were written (or an older
        # version wrote none): write them from the last checkpoint; nothing is retrained.
        finish(run, record, cfg, state["model"])
        print(f"{cfg.variant}: all {cfg.num_epoch} epochs were trained already; wrote {run.weights} and {run.record}")
        return list(state["history"])

    # Data -> model -> optimizer; the loss is in train_one_epoch.
    seed_everything(cfg.random_seed)
    train_set, val_set = prepare_data(cfg)
    train_batches = data_mod.Batches(train_set, cfg.batch_size, device, shuffle=True, seed=cfg.random_seed, augmentation=cfg.augmentation)
    val_batches = data_mod.Batches(val_set, cfg.batch_size, device)  # validation, like every test, sees the images as they are
    model = build_model(**model_args(cfg), backend=backend, zero_predictors=cfg.predictor_init == "zeros").to(device)
    optimizer, schedule = make_optimizer(model, cfg), Schedule(cfg, len(train_batches))
    history = []
    if state is not None:
        restore(model, optimizer, state)
        history = list(state["history"])
    elif overwrite:
        clear(run)
    first = state["epoch"] + 1 if state is not None else 1
    predictors = f" (offset/mask predictors x{cfg.offset_lr_mult:g})" * (cfg.offset_lr_mult != 1.0 and bool(model.predictor_parameters()))
    recipe = (f"{cfg.optimizer} lr {cfg.learning_rate:g}{predictors}" + f", {cfg.warmup_epochs}-epoch warmup" * (cfg.warmup_epochs > 0)
              + f", {cfg.lr_schedule} schedule" * (cfg.lr_schedule != "constant") + f", {cfg.augmentation} augmentation" * (cfg.augmentation != "none"))
    print(f"training {cfg.variant} in {cfg.network} ({count_parameters(model):,} parameters) on {len(train_set):,} images, validating on "
          f"{len(val_set):,}; batch {cfg.batch_size}, {recipe}; {device}{backend_note(backend)}, epochs {first}..{cfg.num_epoch}, writing {run.root}")
    # Compiled: the same parameters (checkpoints hold `model`'s), run as a compiled graph. The first epoch pays
    # the compilation (tens of seconds; once more for the smaller last batch and for evaluation mode).
    runner = torch.compile(model) if cfg.compile else model
    if state is None:
        save_checkpoint(run.last, model, optimizer, 0, history, cfg.as_record())  # so even a Ctrl-C in epoch 1 can resume
    record.update(first - 1, trained=False)

    with Stops(run, cfg, resume_command) as stops:
        for epoch in range(first, cfg.num_epoch + 1):
            stops.epoch, stops.done = epoch, len(history)
            train_loss, seconds = train_one_epoch(runner, optimizer, schedule, train_batches, epoch, cfg.num_epoch)
            val = evaluate(runner, val_batches, train_mode=cfg.validate_in_train_mode)
            history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val.loss, "val_accuracy": val.accuracy,
                            "train_seconds": seconds, "val_seconds": val.seconds})
            print(f"epoch {epoch}/{cfg.num_epoch}: train loss {train_loss:.4f}, val loss {val.loss:.4f}, "
                  f"val acc {val.accuracy:.4f}, {seconds:.1f}s", flush=True)
            save_epoch(run, record, cfg, model, optimizer, history)
            if on_epoch is not None:
                on_epoch(history[-1])
    print(f"done: {run.loss_png}, {run.history_json}, {run.weights} (final weights), {run.checkpoint(cfg.num_epoch)}")
    return history


class NonFiniteLoss(Exception):
    def __init__(self, value, batch):
        super().__init__(f"loss {value} at batch {batch}")
        self.value, self.batch = value, batch


def train_one_epoch(model, optimizer, schedule, batches, epoch, num_epoch):
    """One pass over the training batches; returns (mean training loss per image, seconds)."""
    model.train()
    batches.epoch = epoch  # the shuffle order and the augmentation depend only on (seed, epoch)
    first_step = (epoch - 1) * len(batches)
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
        schedule.apply(optimizer, first_step + batch - 1)
        optimizer.step()
        loss_sum += value * labels.numel()
        n += labels.numel()
        bar.set_postfix(loss=f"{loss_sum / n:.4f}")
    bar.close()
    return loss_sum / n, time.perf_counter() - start
