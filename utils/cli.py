"""What the six top-level scripts run: argument parsing, config loading, and turning errors into one line."""
import argparse
import importlib
import sys

from utils.config import TestConfig, TrainConfig, load_config
from utils.errors import UserError


def run_cli(main):
    """Run main(); a UserError becomes 'error: ...' on stderr and a non-zero exit, never a traceback."""
    try:
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("error: interrupted before training started; nothing was written", file=sys.stderr)
        sys.exit(130)


def train_main(model_type, script, argv=None):
    parser = argparse.ArgumentParser(prog=script, description="Train one model on CIFAR-10 (see README).")
    parser.add_argument("--config", required=True, help="train config JSON, e.g. config/train_Conv2d.json")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue the run in outdir from its latest checkpoint")
    group.add_argument("--overwrite", action="store_true", help="replace the run already in outdir")
    args = parser.parse_args(argv)

    def main():
        from utils.train import train  # imported late: argument errors answer before torch loads

        cfg = load_config(args.config, TrainConfig, expected_model_type=model_type, script=script)
        train(cfg, resume=args.resume, overwrite=args.overwrite, resume_command=f"python {script} --config {args.config} --resume")

    run_cli(main)


def test_main(model_type, script, argv=None):
    parser = argparse.ArgumentParser(prog=script, description="Test a trained checkpoint on the CIFAR-10 test set (see README).")
    parser.add_argument("--config", required=True, help="test config JSON, e.g. config/test_Conv2d.json")
    args = parser.parse_args(argv)

    def main():
        from utils.evaluate import run_test

        run_test(load_config(args.config, TestConfig, expected_model_type=model_type, script=script))

    run_cli(main)


def config_main(config_cls, runner, description, example, argv=None):
    """Entry point of a script whose only argument is --config; `runner` ("module:function") receives the
    parsed config and is imported only after the config is valid, so bad input answers fast."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, help=f"config JSON, e.g. {example}")
    args = parser.parse_args(argv)

    def main():
        cfg = load_config(args.config, config_cls)
        module, function = runner.split(":")
        getattr(importlib.import_module(module), function)(cfg)

    run_cli(main)
