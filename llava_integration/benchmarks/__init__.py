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

from .common import Item, accuracy, ask_all, pair_accuracy
from .cv_bench import CVBenchEvaluator, read_cv_bench
from .hallusion import HallusionEvaluator, read_hallusion
from .mmvp_mllm import MMVPMLLMEvaluator, read_mmvp_mllm
from .multiple_choice import MultipleChoiceEvaluator, read_multiple_choice
from .naturalbench import NaturalBenchEvaluator, read_naturalbench
from .params import (CVBenchParams, HallusionParams, MMVPMLLMParams, MultipleChoiceParams, NaturalBenchParams, POPEParams,
                     ScienceQAParams)
from .pope import POPEEvaluator, read_pope
from .science_qa import ScienceQAEvaluator, read_science_qa

__all__ = [
    "Item", "accuracy", "ask_all", "pair_accuracy",
    "CVBenchEvaluator", "HallusionEvaluator", "MMVPMLLMEvaluator", "MultipleChoiceEvaluator", "NaturalBenchEvaluator",
    "POPEEvaluator", "ScienceQAEvaluator",
    "CVBenchParams", "HallusionParams", "MMVPMLLMParams", "MultipleChoiceParams", "NaturalBenchParams", "POPEParams", "ScienceQAParams",
    "read_cv_bench", "read_hallusion", "read_mmvp_mllm", "read_multiple_choice", "read_naturalbench", "read_pope", "read_science_qa",
]
