"""The one exception type for mistakes a user can cause; the CLI prints it as a single line."""


class BertkitError(Exception):
    """A user-facing error: its message says what went wrong and what to do instead."""
