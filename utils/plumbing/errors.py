"""The exceptions the scripts turn into a one-line message and an exit status instead of a traceback, and the
wrapper that does it."""
import importlib
import os
import sys


class UserError(Exception):
    """Something the user can fix (config, paths, checkpoints, data). The message says what and how."""

    exit_code = 2


class Interrupted(UserError):
    """Ctrl-C: the run was stopped on request, its finished epochs are saved."""

    exit_code = 130


def require(package, who):
    """An optional package (ONNX export, cluster launchers), or a one-line error naming it and `who` needs it."""
    try:
        return importlib.import_module(package)
    except ImportError:
        raise UserError(f"{who} needs the Python package {package!r}, which is not installed here; run: pip install -r requirements.txt") from None


def run_cli(main):
    """Run main(); a UserError becomes 'error: ...' on stderr and a non-zero exit, never a traceback. A Ctrl-C
    that reaches here came before any work was saved (training turns its own into an Interrupted); output piped
    into a reader that stopped early ends quietly."""
    try:
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("error: interrupted before training started; nothing was written", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        # The reader went away (`compare.py --status | head -1`): nothing to say. Python's documented recipe: point
        # stdout at devnull, or the flush at exit raises again and prints "Exception ignored".
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
