"""The one exception type for bad user input.

The CLI turns a ``UserError`` into a one-line message and exit code 2; anything else is a bug
and keeps its traceback.
"""


class UserError(ValueError):
    """Bad input from the user: the message names the problem and the fix."""


class Interrupted(Exception):
    """Ctrl-C: the message says what was kept and how to go on; the CLI prints it as one line, exit 130."""
