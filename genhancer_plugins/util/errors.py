"""Errors that reach the user as one clear message (no traceback)."""


class RecipeError(ValueError):
    """A recipe that cannot be used; the message names file and field."""


class RunError(RuntimeError):
    """A run that cannot start or continue; the message says why and what to do."""


def first_line(exc: BaseException) -> str:
    """An exception's message, first line only (libraries' messages run to paragraphs), or its type."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
