"""What the top-level scripts run: argument parsing, config loading, and turning errors into one line.

torch is imported only after the arguments and the config have been checked, so bad input answers at once.
"""
import argparse

from models.registry import VARIANTS
from utils.plumbing.config import TestConfig, TrainConfig, load_config
from utils.plumbing.errors import UserError, run_cli


def _parser(prog, description, example, several=False):
    parser = argparse.ArgumentParser(prog=prog, description=description)
    if several:
        parser.add_argument("--config", nargs="+", required=True, help=f"config JSON(s), run in turn, e.g. {example}")
    else:
        parser.add_argument("--config", required=True, help=f"config JSON, e.g. {example}")
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override config keys, e.g. --set num_epoch=5 conv_ch=[32,64] (values are JSON; checked like the file)")
    return parser


def check_script(variant, script_variant, kind, source):
    """train_<X>.py / test_<X>.py run the variants whose `script` is X (models/registry.py)."""
    runs_here = VARIANTS[variant].family
    if runs_here != script_variant:
        raise UserError(f'{source}: variant {variant} is {kind}ed by {kind}_{runs_here}.py, not {kind}_{script_variant}.py; '
                        f'use {kind}_{runs_here}.py or set "variant": "{script_variant}"')


def train_main(variant, script, argv=None):
    """train_<variant>.py: `variant` unless the config names another variant of the same script."""
    parser = _parser(script, "Train one model on CIFAR-10 (see README).", f"config/train_{variant}.json")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue the run in outdir from its latest checkpoint")
    group.add_argument("--overwrite", action="store_true", help="replace the run already in outdir")
    args = parser.parse_args(argv)

    def main():
        cfg = load_config(args.config, TrainConfig, args.set, defaults={"variant": variant})
        check_script(cfg.variant, variant, "train", args.config)
        from utils.engine.train import train  # imported late: argument errors answer before torch loads

        resume_command = " ".join(["python", script, "--config", args.config, *(["--set", *args.set] if args.set else []), "--resume"])
        train(cfg, resume=args.resume, overwrite=args.overwrite, resume_command=resume_command)

    run_cli(main)


def test_main(variant, script, argv=None):
    parser = _parser(script, "Test a trained checkpoint on the CIFAR-10 test set (see README).", f"config/test_{variant}.json")
    args = parser.parse_args(argv)

    def main():
        cfg = load_config(args.config, TestConfig, args.set)
        if cfg.variant is not None:
            check_script(cfg.variant, variant, "test", args.config)
        from utils.engine.testing import run_test

        run_test(cfg, script_variant=variant)

    run_cli(main)


def config_main(config_cls, runner, description, example, argv=None, several=False, flags=None):
    """Entry point of a script that takes a config (compare.py, benchmark.py): `runner(cfg, **flags)` is called only
    once the config is valid, and should import the heavy code itself, so bad input answers fast. `several`:
    --config takes a queue of configs, all checked before the runner gets them (one argument each). `flags`:
    {name: help} of the script's on/off switches (--name), passed to the runner by name."""
    parser = _parser(None, description, example, several)
    for name, help_text in (flags or {}).items():
        parser.add_argument(f"--{name}", action="store_true", help=help_text)
    args = parser.parse_args(argv)

    def main():
        configs = [load_config(path, config_cls, args.set) for path in (args.config if several else [args.config])]
        runner(*configs, **{name: getattr(args, name) for name in flags or {}})

    run_cli(main)
