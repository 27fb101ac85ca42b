"""The one exception type for problems with the user's input.

The CLI prints a `RetainError` as a single line and exits with status 2; anything else is a bug and keeps
its traceback.
"""


class RetainError(Exception):
    """Bad input: a config key, a file, a model path, a checkpoint. The message says what and how to fix it."""
