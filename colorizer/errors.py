"""The one exception type that reaches users as a one-line message instead of a traceback."""


class UserError(Exception):
    """Bad input or a bad request: the CLI prints `error: <message>` and exits with status 1."""
