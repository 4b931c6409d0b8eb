"""Built-in evaluators: ``mmvp_vlm``, ``zeroshot``, ``retrieval``."""

from __future__ import annotations

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


@hookimpl
def genhancer_components() -> list[ComponentSpec]:
    return [
        ComponentSpec(kind="evaluator", name="mmvp_vlm", factory=_mmvp, params=MMVPParams,
                      description="MMVP-VLM: 9 visual patterns, pair accuracy, published layout and protocol"),
        ComponentSpec(kind="evaluator", name="zeroshot", factory=_zeroshot, params=ZeroShotParams,
                      description="zero-shot classification of an ImageFolder directory; top-1/top-5"),
        ComponentSpec(kind="evaluator", name="retrieval", factory=_retrieval, params=RetrievalParams,
                      description="image-text retrieval, recall@1/5/10 in both directions"),
    ]
