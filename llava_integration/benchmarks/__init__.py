"""Multiple-choice benchmarks for LLaVA models, scored by likelihood.

Each evaluator reads its benchmark's published on-disk layout and asks a
:class:`MultipleChoiceModel` (``choose(image, question, options)``, e.g.
:class:`~llava_integration.scoring.LikelihoodScorer`) for every item.

- ``mmvp_mllm``: ``Questions.csv`` (``Index, Question, Options, Correct Answer``,
  options like ``(a) Open (b) Closed``, answer ``(a)``) and ``MMVP Images/<Index>.jpg``;
  300 questions in 150 consecutive pairs; question and pair accuracy.
- ``pope``: ``coco_pope_{random,popular,adversarial}.json`` (one JSON object per
  line: ``question_id, image, text, label`` with label yes/no) and an image
  folder (COCO val2014); accuracy, precision, recall, F1 and yes-ratio per split.
- ``cv_bench``: ``test_2d.jsonl`` / ``test_3d.jsonl`` (``idx, type, task, question,
  choices, answer`` like ``(A)``, ``filename`` under the root, ``source``); accuracy per
  source, 2D = mean(ADE20K, COCO), 3D = Omni3D, overall = mean(2D, 3D).
- ``hallusion_bench``: ``HallusionBench.json`` (``category, subcategory, visual_input,
  set_id, figure_id, question_id, question, gt_answer`` 1/0, ``filename``); yes/no by
  likelihood; all-, question- and figure-accuracy.
- ``naturalbench``: the Hugging Face release (``BaiqiL/NaturalBench``, ``data/train-*.parquet``;
  per row ``Index, Image_0, Image_1, Question_0, Question_1, Image_{i}_Question_{q}``
  answers Yes/No or A/B, ``Question Type`` yes_no / multiple_choice); four answers per
  row; Q-Acc, I-Acc, G-Acc and per-answer accuracy as NaturalBench defines them.
- ``science_qa``: LLaVA's ScienceQA files (``llava_test_CQM-A.json``, ``problems.json``,
  ``images/test/``); letters scored by likelihood; IMG accuracy (questions with an
  image), as LLaVA reports it, and all-question accuracy when text-only ones are asked.
- ``multiple_choice``: the project's own JSONL (``image, question, options,
  answer`` index or text, optional ``pair``), used by the CPU twin.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

#: name -> submodule. Loaded on first use (PEP 562): registering the plugin reads only
#: ``benchmarks.params``, so `genhancer --help` and `plugins` import no torch.
_WHERE = {
    "Item": "common", "accuracy": "common", "ask_all": "common", "pair_accuracy": "common",
    "CVBenchEvaluator": "cv_bench", "read_cv_bench": "cv_bench",
    "HallusionEvaluator": "hallusion", "read_hallusion": "hallusion",
    "MMVPMLLMEvaluator": "mmvp_mllm", "read_mmvp_mllm": "mmvp_mllm",
    "MultipleChoiceEvaluator": "multiple_choice", "read_multiple_choice": "multiple_choice",
    "NaturalBenchEvaluator": "naturalbench", "read_naturalbench": "naturalbench",
    "POPEEvaluator": "pope", "read_pope": "pope",
    "ScienceQAEvaluator": "science_qa", "read_science_qa": "science_qa",
    **{name: "params" for name in ("CVBenchParams", "HallusionParams", "MMVPMLLMParams", "MultipleChoiceParams",
                                   "NaturalBenchParams", "POPEParams", "ScienceQAParams")},
}
__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_WHERE[name]}", __name__), name)
