"""Internal: the run lifecycle, the training context, stages, callbacks, checkpoints, export."""
