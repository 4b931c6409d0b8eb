"""Internal: the commands beside `run` (validate plan, bench, report, reconstruct)."""
