"""NaturalBench for LLaVA models, scored by likelihood (see the package docstring for the layout)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genhancer_plugins import EvalResult, Evaluator, MultipleChoiceModel

from .common import Item, accuracy, ask_all
from .params import NaturalBenchParams

#: NaturalBench's own instruction after each question, by question type
NATURALBENCH_SUFFIX = {"yes_no": "Please answer Yes or No.",
                       "multiple_choice": "Please output the letter corresponding to the correct option."}
NATURALBENCH_OPTIONS = {"yes_no": ("Yes", "No"), "multiple_choice": ("A", "B")}


def _parquet_rows(path: Path, columns: list[str]):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError("naturalbench reads parquet files with pyarrow: pip install 'genhancer[benchmarks]'") from None
    handle = pq.ParquetFile(path)
    names = set(handle.schema_arrow.names)
    # the release renamed "Question Type" to "Question_Type" at one point; both are read
    type_column = next((c for c in ("Question_Type", "Question Type") if c in names), None)
    missing = [c for c in columns if c not in names] + ([] if type_column else ["Question_Type"])
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; found {sorted(names)}")
    for batch in handle.iter_batches(batch_size=64, columns=[*columns, type_column]):
        for row in batch.to_pylist():
            row["Question_Type"] = row.pop(type_column)
            yield row


def _image_bytes(value: Any, base: Path, where: str) -> bytes:
    """An image cell as the datasets library writes it: {bytes, path}, or plain bytes."""
    if isinstance(value, dict):
        if value.get("bytes"):
            return value["bytes"]
        if value.get("path") and (base / value["path"]).is_file():
            return (base / value["path"]).read_bytes()
    elif isinstance(value, bytes) and value:
        return value
    raise ValueError(f"{where}: no image bytes (and no readable image path)")


def read_naturalbench(root: Path) -> list[Item]:
    files = [root] if root.is_file() else sorted(root.rglob("*.parquet"))
    if not files:
        raise ValueError(f"naturalbench: no parquet file at {root}")
    columns = ["Index", "Image_0", "Image_1", "Question_0", "Question_1",
               *(f"Image_{i}_Question_{q}" for q in (0, 1) for i in (0, 1))]
    items = []
    for path in files:
        for number, row in enumerate(_parquet_rows(path, columns)):
            where = f"{path}: row {number} (Index {row['Index']})"
            kind = str(row["Question_Type"]).strip().lower()
            if kind not in NATURALBENCH_OPTIONS:
                raise ValueError(f"{where}: question type {row['Question_Type']!r} is not yes_no or multiple_choice")
            options = NATURALBENCH_OPTIONS[kind]
            images = [_image_bytes(row[f"Image_{i}"], path.parent, f"{where}: Image_{i}") for i in (0, 1)]
            for q in (0, 1):
                for i in (0, 1):
                    answer = str(row[f"Image_{i}_Question_{q}"]).strip().rstrip(".")
                    matches = [k for k, option in enumerate(options) if option.lower() == answer.lower()]
                    if not matches:
                        raise ValueError(f"{where}: Image_{i}_Question_{q} is {answer!r}, expected one of {list(options)}")
                    items.append(Item(f"{row['Index']}/q{q}/i{i}", images[i], f"{row[f'Question_{q}']} {NATURALBENCH_SUFFIX[kind]}",
                                      options, matches[0], group=kind, pair=str(row["Index"])))
    return items


class NaturalBenchEvaluator(Evaluator):
    """Each row asks two questions of two images. Q-Acc: a question counts when right on both images;
    I-Acc: an image counts when both its questions are right; G-Acc: a row counts when all four are right;
    accuracy: the four answers one by one (NaturalBench's binary score)."""

    name = "naturalbench"

    def __init__(self, params: NaturalBenchParams):
        self.items = read_naturalbench(Path(params.root))

    def evaluate(self, model: MultipleChoiceModel) -> EvalResult:
        rows = ask_all(model, self.items)
        groups: dict[str, dict[tuple[str, str], int]] = {}
        for row in rows:
            index, q, i = row["key"].rsplit("/", 2)
            groups.setdefault(index, {})[(q, i)] = row["correct"]
        questions = [all(g[(q, i)] for i in ("i0", "i1")) for g in groups.values() for q in ("q0", "q1")]
        images = [all(g[(q, i)] for q in ("q0", "q1")) for g in groups.values() for i in ("i0", "i1")]
        metrics = {
            "g_acc": 100.0 * sum(all(g.values()) for g in groups.values()) / max(len(groups), 1),
            "q_acc": 100.0 * sum(questions) / max(len(questions), 1),
            "i_acc": 100.0 * sum(images) / max(len(images), 1),
            "accuracy": accuracy(rows),
        }
        return EvalResult(metrics, "g_acc", rows, {"questions": len(rows), "groups": len(groups)})
