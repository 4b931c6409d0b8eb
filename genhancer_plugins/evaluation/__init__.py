"""Internal: applying evaluators to models and writing their results."""
