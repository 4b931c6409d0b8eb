"""The LLaVA-1.5 plugin: the ``llava`` downstream phase (a recipe's ``llava:``
section), its benchmarks as evaluators of ``mllm`` models, and the
``genhancer llava ...`` commands. It registers like every plugin."""

from __future__ import annotations

from typing import Any

from genhancer_plugins import ComponentSpec, hookimpl


def _lazy(name: str):
    def build(params: Any) -> Any:
        from . import benchmarks

        return getattr(benchmarks, name)(params)

    return build


def _sample(name: str):
    def rehearsal(params: Any, directory: Any) -> Any:
        from .benchmarks.samples import SAMPLES

        return type(params).model_validate(SAMPLES[name](params.model_dump(), directory))

    return rehearsal


def _rehearse_phase(settings: Any, directory: Any, depth: Any) -> Any:
    from .rehearsal import rehearsal_settings

    return rehearsal_settings(settings, directory, depth)


def _phase(settings: Any) -> Any:
    from .phase import LlavaPhase

    return LlavaPhase(settings)


@hookimpl
def genhancer_add_commands(subparsers: Any) -> None:
    from .commands import add_commands

    add_commands(subparsers)


@hookimpl
def genhancer_components() -> list[ComponentSpec]:
    from .benchmarks.params import (
        CVBenchParams,
        HallusionParams,
        MMVPMLLMParams,
        MultipleChoiceParams,
        NaturalBenchParams,
        POPEParams,
        ScienceQAParams,
    )
    from .params import LlavaSettings

    return [
        ComponentSpec(kind="phase", name="llava", factory=_phase, params=LlavaSettings, rehearsal=_rehearse_phase,
                      description="LLaVA-1.5 trained and benchmarked with the original and the enhanced tower (Table 2)"),
        ComponentSpec(kind="evaluator", scores="mllm", name="mmvp_mllm", factory=_lazy("MMVPMLLMEvaluator"), params=MMVPMLLMParams, rehearsal=_sample("mmvp_mllm"),
                      description="MMVP (MLLM): 150 question pairs, likelihood-scored; pair and question accuracy"),
        ComponentSpec(kind="evaluator", scores="mllm", name="pope", factory=_lazy("POPEEvaluator"), params=POPEParams, rehearsal=_sample("pope"),
                      description="POPE random/popular/adversarial: yes/no by likelihood; accuracy, F1, yes-ratio"),
        ComponentSpec(kind="evaluator", scores="mllm", name="cv_bench", factory=_lazy("CVBenchEvaluator"), params=CVBenchParams, rehearsal=_sample("cv_bench"),
                      description="CV-Bench 2D (ADE20K, COCO) and 3D (Omni3D), likelihood-scored; CV-Bench's combined accuracy"),
        ComponentSpec(kind="evaluator", scores="mllm", name="hallusion_bench", factory=_lazy("HallusionEvaluator"), params=HallusionParams, rehearsal=_sample("hallusion_bench"),
                      description="HallusionBench yes/no by likelihood; all-, question- and figure-accuracy"),
        ComponentSpec(kind="evaluator", scores="mllm", name="naturalbench", factory=_lazy("NaturalBenchEvaluator"), params=NaturalBenchParams, rehearsal=_sample("naturalbench"),
                      description="NaturalBench (parquet release): two questions x two images per row; Q-Acc, I-Acc, G-Acc"),
        ComponentSpec(kind="evaluator", scores="mllm", name="science_qa", factory=_lazy("ScienceQAEvaluator"), params=ScienceQAParams, rehearsal=_sample("science_qa"),
                      description="ScienceQA-IMG in LLaVA's layout: option letters by likelihood; IMG accuracy"),
        ComponentSpec(kind="evaluator", scores="mllm", name="multiple_choice", factory=_lazy("MultipleChoiceEvaluator"), params=MultipleChoiceParams, rehearsal=_sample("multiple_choice"),
                      description="any JSONL of image, question, options, answer; likelihood-scored"),
    ]
