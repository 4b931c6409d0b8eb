"""MMVP (MLLM) for LLaVA models, scored by likelihood (see the package docstring for the layout)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from genhancer_plugins import EvalResult, Evaluator, MultipleChoiceModel

from .common import Item, accuracy, ask_all, pair_accuracy
from .params import MMVPMLLMParams

OPTION = re.compile(r"\(([a-z])\)\s*([^()]+)", re.IGNORECASE)


def read_mmvp_mllm(root: Path) -> list[Item]:
    questions = root / "Questions.csv"
    if not questions.is_file():
        raise ValueError(f"mmvp_mllm: {questions} not found")
    with questions.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        needed = {"Index", "Question", "Options", "Correct Answer"}
        if not needed <= set(reader.fieldnames or []):
            raise ValueError(f"{questions}: expected columns {sorted(needed)}, found {reader.fieldnames}")
        rows = list(reader)
    if len(rows) % 2:
        raise ValueError(f"{questions}: {len(rows)} questions: pairs are consecutive rows, so the count must be even")
    items = []
    for number, row in enumerate(rows, 2):
        options = OPTION.findall(row["Options"])
        if len(options) < 2:
            raise ValueError(f"{questions}: row {number}: cannot read options from {row['Options']!r}")
        letters = [letter.lower() for letter, _ in options]
        answer = row["Correct Answer"].strip().strip("()").lower()
        if answer not in letters:
            raise ValueError(f"{questions}: row {number}: answer {row['Correct Answer']!r} is not one of the options")
        image = root / "MMVP Images" / f"{int(row['Index'])}.jpg"
        if not image.is_file():
            raise ValueError(f"{questions}: row {number}: image {image} not found")
        pair = str((number - 2) // 2)
        items.append(Item(row["Index"], image, row["Question"].strip(), tuple(t.strip() for _, t in options), letters.index(answer), pair=pair))
    return items


class MMVPMLLMEvaluator(Evaluator):
    name = "mmvp_mllm"

    def __init__(self, params: MMVPMLLMParams):
        self.items = read_mmvp_mllm(Path(params.root))

    def evaluate(self, model: MultipleChoiceModel) -> EvalResult:
        rows = ask_all(model, self.items)
        return EvalResult({"pair_accuracy": pair_accuracy(rows), "question_accuracy": accuracy(rows)}, "pair_accuracy", rows,
                          {"questions": len(rows)})
