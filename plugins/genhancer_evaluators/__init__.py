"""Built-in evaluators: ``mmvp_vlm``, ``zeroshot``, ``retrieval``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genhancer_plugins import ComponentSpec, hookimpl

from .params import MMVPParams, RetrievalParams, ZeroShotParams


def _mmvp(params: MMVPParams) -> Any:
    from .mmvp import MMVPEvaluator

    return MMVPEvaluator(params)


def _zeroshot(params: ZeroShotParams) -> Any:
    from .zeroshot import ZeroShotEvaluator

    return ZeroShotEvaluator(params)


def _retrieval(params: RetrievalParams) -> Any:
    from .retrieval import RetrievalEvaluator

    return RetrievalEvaluator(params)


def _rehearse_mmvp(params: MMVPParams, directory: Path) -> MMVPParams:
    from .synthetic_mmvp import write_synthetic_mmvp

    return params.model_copy(update={"root": str(write_synthetic_mmvp(directory / "MMVP_VLM", pairs_per_pattern=1))})


def _rehearse_zeroshot(params: ZeroShotParams, directory: Path) -> ZeroShotParams:
    from .synthetic_mmvp import write_sample_classes

    return params.model_copy(update={"root": str(write_sample_classes(directory / "classes")), "class_names": None})


def _rehearse_retrieval(params: RetrievalParams, directory: Path) -> RetrievalParams:
    from .synthetic_mmvp import write_sample_pairs

    return params.model_copy(update={"file": str(write_sample_pairs(directory / "pairs"))})


@hookimpl
def genhancer_components() -> list[ComponentSpec]:
    return [
        ComponentSpec(kind="evaluator", name="mmvp_vlm", factory=_mmvp, params=MMVPParams, rehearsal=_rehearse_mmvp,
                      description="MMVP-VLM: 9 visual patterns, pair accuracy, published layout and protocol"),
        ComponentSpec(kind="evaluator", name="zeroshot", factory=_zeroshot, params=ZeroShotParams, rehearsal=_rehearse_zeroshot,
                      description="zero-shot classification of an ImageFolder directory; top-1/top-5"),
        ComponentSpec(kind="evaluator", name="retrieval", factory=_retrieval, params=RetrievalParams, rehearsal=_rehearse_retrieval,
                      description="image-text retrieval, recall@1/5/10 in both directions"),
    ]
