"""CV-Bench for LLaVA models, scored by likelihood (see the package docstring for the layout)."""

from __future__ import annotations

from pathlib import Path

from genhancer_plugins import EvalResult, Evaluator, MultipleChoiceModel

from .common import Item, accuracy, ask_all, read_jsonl
from .params import CVBenchParams


def read_cv_bench(root: Path) -> list[Item]:
    items = []
    for name in ("test_2d.jsonl", "test_3d.jsonl"):
        for where, record in read_jsonl(root / name, "cv_bench"):
            try:
                choices = [str(c) for c in record["choices"]]
                letter = record["answer"].strip().strip("()").upper()
                source = record["source"]
                image = root / record["filename"]
                question = record["question"]
            except (KeyError, AttributeError, TypeError):
                raise ValueError(f"{where}: expected idx, question, choices, answer like (A), filename and source") from None
            index = ord(letter) - ord("A") if len(letter) == 1 else -1
            if not 0 <= index < len(choices):
                raise ValueError(f"{where}: answer {record['answer']!r} is not one of {len(choices)} choices")
            if not image.is_file():
                raise ValueError(f"{where}: image {image} not found")
            items.append(Item(str(record.get("idx", where.rsplit(":", 1)[1])), image, question, tuple(choices), index, group=source))
    return items


class CVBenchEvaluator(Evaluator):
    """Accuracy per source; 2D = mean(ADE20K, COCO), 3D = Omni3D, overall = mean(2D, 3D), as CV-Bench defines it."""

    name = "cv_bench"

    def __init__(self, params: CVBenchParams):
        self.items = read_cv_bench(Path(params.root))

    def evaluate(self, model: MultipleChoiceModel) -> EvalResult:
        rows = ask_all(model, self.items)
        by_source = {}
        for source in ("ADE20K", "COCO", "Omni3D"):
            part = [r for r in rows if r["group"] == source]
            if not part:
                raise ValueError(f"cv_bench: no question from source {source}")
            by_source[source] = accuracy(part)
        two_d = (by_source["ADE20K"] + by_source["COCO"]) / 2
        metrics = {"overall": (two_d + by_source["Omni3D"]) / 2, "2D": two_d, "3D": by_source["Omni3D"],
                   **{f"{k}_accuracy": v for k, v in by_source.items()}}
        return EvalResult(metrics, "overall", rows, {"questions": len(rows)})
