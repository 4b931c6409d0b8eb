"""HallusionBench for LLaVA models, scored by likelihood (see the package docstring for the layout)."""

from __future__ import annotations

from pathlib import Path

from genhancer_plugins import EvalResult, Evaluator, MultipleChoiceModel

from .common import Item, accuracy, ask_all, pair_accuracy, read_json
from .params import HallusionParams


def read_hallusion(path: Path, image_root: Path) -> list[Item]:
    records = read_json(path, "hallusion_bench")
    items = []
    for number, record in enumerate(records):
        where = f"{path}: record {number}"
        try:
            keys = [str(record[k]) for k in ("category", "subcategory", "set_id", "figure_id", "question_id")]
            answer = str(record["gt_answer"]).strip()
            visual = str(record["visual_input"]).strip() != "0"
            question = record["question"]
        except (KeyError, TypeError):
            raise ValueError(f"{where}: expected category, subcategory, set_id, figure_id, question_id, visual_input, question, gt_answer") from None
        if answer not in ("0", "1"):
            raise ValueError(f"{where}: gt_answer {answer!r} must be 1 (yes) or 0 (no)")
        image = None
        if visual:
            image = image_root / str(record.get("filename", "")).lstrip("./")
            if not image.is_file():
                raise ValueError(f"{where}: image {image} not found")
        category, subcategory, set_id, figure_id, question_id = keys
        items.append(Item(
            key=f"{category}/{subcategory}/{set_id}/{figure_id}/{question_id}", image=image, question=question,
            options=("Yes", "No"), answer=0 if answer == "1" else 1, group="figure" if visual else "no_figure",
            # pair = the question across its figures (qAcc); figure grouping is rebuilt from the key (fAcc)
            pair=f"{category}/{subcategory}/{set_id}/q{question_id}",
        ))
    return items


class HallusionEvaluator(Evaluator):
    """aAcc: every question; qAcc: a question counts when it is right for every figure it is asked
    about; fAcc: a figure counts when every question about it is right."""

    name = "hallusion_bench"

    def __init__(self, params: HallusionParams):
        path = Path(params.file)
        self.items = read_hallusion(path, Path(params.image_root) if params.image_root else path.parent)

    def evaluate(self, model: MultipleChoiceModel) -> EvalResult:
        rows = ask_all(model, self.items)
        figures: dict[str, list[int]] = {}
        for row in rows:
            if row["group"] == "figure":
                category, subcategory, set_id, figure_id, _ = row["key"].split("/")
                figures.setdefault(f"{category}/{subcategory}/{set_id}/{figure_id}", []).append(row["correct"])
        metrics = {
            "all_accuracy": accuracy(rows),
            "question_accuracy": pair_accuracy(rows),
            "figure_accuracy": 100.0 * sum(all(v) for v in figures.values()) / max(len(figures), 1),
        }
        return EvalResult(metrics, "question_accuracy", rows, {"questions": len(rows), "figures": len(figures)})
