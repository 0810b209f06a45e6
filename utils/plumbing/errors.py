"""The exceptions the scripts turn into a one-line message and an exit status instead of a traceback."""


class UserError(Exception):
    """Something the user can fix (config, paths, checkpoints, data). The message says what and how."""

    exit_code = 2


class Interrupted(UserError):
    """Ctrl-C: the run was stopped on request, its finished epochs are saved."""

    exit_code = 130
