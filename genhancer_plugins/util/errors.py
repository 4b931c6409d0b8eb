"""Errors that reach the user as one clear message (no traceback)."""


class RecipeError(ValueError):
    """A recipe that cannot be used; the message names file and field."""


class RunError(RuntimeError):
    """A run that cannot start or continue; the message says why and what to do."""
