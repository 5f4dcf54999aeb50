"""The exception types for mistakes a user can cause; the CLI prints them as a single line."""
from __future__ import annotations


class BertkitError(Exception):
    """A user-facing error: its message says what went wrong and what to do instead."""


class OptionError(BertkitError):
    """A bad value for one named option. The message names the option as its caller spells it:
    the API's parameter name for Python (`lr must be positive`), the flag on the command line
    (`--lr must be positive`), the field in a server request."""

    def __init__(self, param: str, problem: str) -> None:
        self.param = param
        self.problem = problem  # may say "{name}" where the option is named again
        super().__init__(self.named(param))

    def named(self, name: str) -> str:
        """The message with the option called `name` (a flag, a JSON field)."""
        return f"{name} {self.problem.replace('{name}', name)}"


class OverBudget(BertkitError):
    """A request would run more tokens than it may (found while it is prepared, before the work is built)."""

    def __init__(self, tokens: int, budget: int) -> None:
        self.tokens, self.budget = tokens, budget
        super().__init__(f"this request would run over {budget:,} tokens (at least {tokens:,}); send fewer or shorter "
                         "texts, fewer multi-piece targets, or a larger chunk stride")
