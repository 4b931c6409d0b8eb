"""The project's own multiple-choice JSONL for LLaVA models, scored by likelihood (see the package docstring for the layout)."""

from __future__ import annotations

from pathlib import Path

from genhancer_plugins import EvalResult, Evaluator, MultipleChoiceModel

from .common import Item, accuracy, ask_all, pair_accuracy, read_jsonl
from .params import MultipleChoiceParams


def read_multiple_choice(path: Path) -> list[Item]:
    items = []
    for where, record in read_jsonl(path, "multiple_choice"):
        options = record.get("options")
        if not isinstance(options, list) or len(options) < 2:
            raise ValueError(f"{where}: needs a list of at least two options")
        answer = record.get("answer")
        index = options.index(answer) if isinstance(answer, str) and answer in options else answer
        if not isinstance(index, int) or not 0 <= index < len(options):
            raise ValueError(f"{where}: answer {answer!r} is not an option or an option index")
        image = path.parent / record["image"] if record.get("image") else None
        if image is not None and not image.is_file():
            raise ValueError(f"{where}: image {image} not found")
        items.append(Item(str(record.get("id", where.rsplit(":", 1)[1])), image, str(record["question"]), tuple(map(str, options)), index,
                          group=str(record.get("group", "")), pair=str(record["pair"]) if record.get("pair") is not None else None))
    return items


class MultipleChoiceEvaluator(Evaluator):
    name = "multiple_choice"

    def __init__(self, params: MultipleChoiceParams):
        self.items = read_multiple_choice(Path(params.file))[: params.limit]

    def evaluate(self, model: MultipleChoiceModel) -> EvalResult:
        rows = ask_all(model, self.items)
        metrics = {"accuracy": accuracy(rows)}
        for group in sorted({r["group"] for r in rows if r["group"]}):
            part = [r for r in rows if r["group"] == group]
            metrics[f"{group}_accuracy"] = accuracy(part)
        if any(r["pair"] for r in rows):
            metrics["pair_accuracy"] = pair_accuracy(rows)
        return EvalResult(metrics, "accuracy", rows, {"questions": len(rows)})
