"""Models loaded through the plugins' loader hooks (one plugin asked at a time): an
image-text model for the encoder evaluators, a vision tower for downstream models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genhancer_plugins.util.errors import RunError, first_line


def _not_loadable(source: str, exc: OSError) -> RunError:
    reason = first_line(exc)
    where = "a directory that does not exist and " if not Path(source).exists() else ""
    return RunError(f"cannot load {source}: {where}not loadable ({reason}); offline, only local directories load "
                    "(HF_HUB_OFFLINE=1 is set by `make`)")


def load_image_text_model(manager: Any, source: str, text_from: str | None = None, device: str = "cpu") -> Any:
    """``source`` (a directory or hub id) as an :class:`~genhancer_plugins.interfaces.ImageTextModel`."""
    try:
        # a plugin's RunError is its one-line answer for a model it knows but cannot serve (a vision-only family asked for text)
        model = manager.first_result("genhancer_load_image_text_model", passing=(OSError, RunError), source=str(source),
                                     text_from=text_from, device=device)
    except OSError as exc:  # transformers: no such directory, no such hub id, or the hub is unreachable
        raise _not_loadable(str(source), exc) from None
    if model is None:
        raise RunError(f"no plugin can load {source} as an image-text model (CLIP, SigLIP and DINOv2 are built in)")
    return model


def load_vision_tower(manager: Any, source: str | Path) -> Any:
    """``source`` as a :class:`~genhancer_plugins.interfaces.VisionTower` (a downstream model's vision tower)."""
    try:
        tower = manager.first_result("genhancer_load_vision_tower", passing=(OSError,), source=str(source))
    except OSError as exc:
        raise _not_loadable(str(source), exc) from None
    if tower is None:
        raise RunError(f"no plugin can load {source} as a vision tower (CLIP, SigLIP and DINOv2 are built in)")
    return tower
