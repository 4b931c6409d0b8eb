"""Built-in datasets: ``synthetic``."""

from __future__ import annotations

from typing import Any

from genhancer_plugins import ComponentSpec, hookimpl

from .params import SyntheticParams


def _build_synthetic(params: SyntheticParams, image_size: int, seed: int = 0) -> Any:
    from .synthetic import SyntheticImages

    return SyntheticImages(params, image_size, seed)


@hookimpl
def genhancer_components() -> list[ComponentSpec]:
    return [
        ComponentSpec(
            kind="dataset",
            name="synthetic",
            factory=_build_synthetic,
            params=SyntheticParams,
            description="procedurally drawn shapes at any resolution; deterministic, no download",
        )
    ]
