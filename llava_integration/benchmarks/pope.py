"""POPE for LLaVA models, scored by likelihood (see the package docstring for the layout)."""

from __future__ import annotations

from pathlib import Path

from genhancer_plugins import EvalResult, Evaluator, MultipleChoiceModel

from .common import Item, accuracy, ask_all, read_jsonl
from .params import POPEParams


def read_pope(root: Path, image_folder: Path, splits: list[str]) -> list[Item]:
    items = []
    for split in splits:
        for where, record in read_jsonl(root / f"coco_pope_{split}.json", "pope"):
            try:
                label = record["label"].strip().lower()
                if label not in ("yes", "no"):
                    raise KeyError
                image = image_folder / record["image"]
            except (KeyError, AttributeError):
                raise ValueError(f"{where}: expected question_id, image, text and label yes/no") from None
            if not image.is_file():
                raise ValueError(f"{where}: image {image} not found")
            items.append(Item(f"{split}-{record.get('question_id', where.rsplit(':', 1)[1])}", image, record["text"], ("Yes", "No"),
                              0 if label == "yes" else 1, group=split))
    return items


class POPEEvaluator(Evaluator):
    name = "pope"

    def __init__(self, params: POPEParams):
        self.splits = params.splits
        self.items = read_pope(Path(params.root), Path(params.image_folder), params.splits)

    def evaluate(self, model: MultipleChoiceModel) -> EvalResult:
        rows = ask_all(model, self.items)
        metrics: dict[str, float] = {}
        for split in self.splits:
            part = [r for r in rows if r["group"] == split]
            tp = sum(r["prediction"] == "Yes" and r["answer"] == "Yes" for r in part)
            fp = sum(r["prediction"] == "Yes" and r["answer"] == "No" for r in part)
            fn = sum(r["prediction"] == "No" and r["answer"] == "Yes" for r in part)
            precision = tp / (tp + fp) if tp + fp else 0.0
            recall = tp / (tp + fn) if tp + fn else 0.0
            metrics[f"{split}_accuracy"] = accuracy(part)
            metrics[f"{split}_precision"] = 100.0 * precision
            metrics[f"{split}_recall"] = 100.0 * recall
            metrics[f"{split}_f1"] = 100.0 * (2 * precision * recall / (precision + recall) if precision + recall else 0.0)
            metrics[f"{split}_yes_ratio"] = 100.0 * sum(r["prediction"] == "Yes" for r in part) / len(part)
        metrics["f1"] = sum(metrics[f"{s}_f1"] for s in self.splits) / len(self.splits)
        return EvalResult(metrics, "f1", rows, {"questions": len(rows)})
