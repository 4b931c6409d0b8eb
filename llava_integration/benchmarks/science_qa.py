"""ScienceQA-IMG for LLaVA models, scored by likelihood (see the package docstring for the layout)."""

from __future__ import annotations

from pathlib import Path

from genhancer_plugins import EvalResult, Evaluator, MultipleChoiceModel

from .common import Item, accuracy, ask_all, read_json
from .params import ScienceQAParams

#: LLaVA's --single-pred-prompt instruction
SCIENCE_QA_INSTRUCTION = "Answer with the option's letter from the given choices directly."
LETTERS = "ABCDE"


def read_science_qa(params: ScienceQAParams) -> list[Item]:
    root = Path(params.root)
    questions_path, problems_path = root / params.question_file, root / "problems.json"
    questions, problems = (read_json(path, "science_qa") for path in (questions_path, problems_path))
    items = []
    for number, record in enumerate(questions):
        where = f"{questions_path}: record {number}"
        try:
            pid = str(record["id"])
            prompt = record["conversations"][0]["value"]
        except (KeyError, IndexError, TypeError):
            raise ValueError(f"{where}: expected id and conversations[0].value") from None
        if pid not in problems:
            raise ValueError(f"{where}: id {pid!r} is not in {problems_path}")
        has_image = bool(record.get("image"))
        if params.image_only and not has_image:
            continue
        problem = problems[pid]
        try:
            count, answer = len(problem["choices"]), int(problem["answer"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{problems_path}: problem {pid}: expected choices and an integer answer") from None
        if not 2 <= count <= len(LETTERS) or not 0 <= answer < count:
            raise ValueError(f"{problems_path}: problem {pid}: answer {answer} with {count} choices")
        image = None
        if has_image:
            image = root / params.image_folder / record["image"]
            if not image.is_file():
                raise ValueError(f"{where}: image {image} not found")
        question = prompt.replace("<image>", "").strip() + "\n" + SCIENCE_QA_INSTRUCTION
        items.append(Item(pid, image, question, tuple(LETTERS[:count]), answer, group="image" if has_image else "text"))
    if not items:
        raise ValueError(f"science_qa: {questions_path} has no question to ask" + (" with an image" if params.image_only else ""))
    return items


class ScienceQAEvaluator(Evaluator):
    """IMG accuracy: questions with an image context, as LLaVA reports ScienceQA-IMG."""

    name = "science_qa"

    def __init__(self, params: ScienceQAParams):
        self.items = read_science_qa(params)

    def evaluate(self, model: MultipleChoiceModel) -> EvalResult:
        rows = ask_all(model, self.items)
        metrics = {"img_accuracy": accuracy([r for r in rows if r["group"] == "image"])}
        if any(r["group"] == "text" for r in rows):
            metrics["accuracy"] = accuracy(rows)
        return EvalResult(metrics, "img_accuracy", rows, {"questions": len(rows)})
