"""What every LLaVA benchmark shares: the question item, asking a model, accuracies."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from PIL import Image

from genhancer_plugins import MultipleChoiceModel, to_rgb


@dataclass(frozen=True)
class Item:
    key: str
    image: Path | bytes | None  #: a file, or encoded image bytes (benchmarks shipped as parquet)
    question: str
    options: tuple[str, ...]
    answer: int
    group: str = ""  #: split or category
    pair: str | None = None  #: items sharing a pair id count together


def open_image(source: Path | bytes | None) -> Image.Image | None:
    if source is None:
        return None
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
        return to_rgb(image)


def ask_all(model: MultipleChoiceModel, items: list[Item]) -> list[dict[str, Any]]:
    from tqdm.auto import tqdm

    rows = []
    for item in tqdm(items, desc="questions", leave=False, disable=None):
        choice, nll = model.choose(open_image(item.image), item.question, item.options)
        rows.append({"key": item.key, "group": item.group, "pair": item.pair or "", "question": item.question,
                     "options": " | ".join(item.options), "answer": item.options[item.answer],
                     "prediction": item.options[choice], "correct": int(choice == item.answer),
                     "nll": " | ".join(f"{v:.4f}" for v in nll)})
    return rows


def accuracy(rows: list[dict[str, Any]]) -> float:
    """Share of rows answered right, in %."""
    return 100.0 * sum(r["correct"] for r in rows) / max(len(rows), 1)


def pair_accuracy(rows: list[dict[str, Any]]) -> float:
    pairs: dict[str, list[int]] = {}
    for row in rows:
        if row["pair"]:
            pairs.setdefault(row["pair"], []).append(row["correct"])
    return 100.0 * sum(all(v) for v in pairs.values()) / max(len(pairs), 1)


def read_json(path: Path, benchmark: str) -> Any:
    if not path.is_file():
        raise ValueError(f"{benchmark}: {path} not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


def read_jsonl(path: Path, benchmark: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(``file:line``, record) for every non-blank line; a missing file or a line that is
    not a JSON object is an error naming the file and line."""
    if not path.is_file():
        raise ValueError(f"{benchmark}: {path} not found")
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise ValueError(f"{where}: not valid JSON") from None
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a JSON object")
        yield where, record
