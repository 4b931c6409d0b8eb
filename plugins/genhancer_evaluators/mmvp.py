"""Evaluator ``mmvp_vlm``: MMVP-VLM exactly as published.

Layout: ``Questions.csv`` (columns ``Question ID``, ``Type``, ``Statement``)
and one folder of images per visual pattern, ``MLLM_VLM Images/<Type>/<Question
ID>.jpg`` (``MLLM_VLM_Images/`` is accepted too). Consecutive rows form a pair.
For each pair, each statement (prefixed "a photo of ") is scored against both
images, softmax over the two images; the pair counts only if both statements
pick their own image. Patterns come from each row's ``Type``, never from row
order.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch

from genhancer_plugins import EvalResult, Evaluator, ImageTextModel

from .common import embed_in_batches, open_rgb
from .params import MMVPParams

# The nine patterns, with the folder / Type names seen in the published copies.
PATTERNS: dict[str, tuple[str, ...]] = {
    "Orientation and Direction": ("Orientation",),
    "Presence of Specific Features": ("Presence",),
    "State and Condition": ("State",),
    "Quantity and Count": ("Quantity",),
    "Positional and Relational Context": ("Spatial", "Positional"),
    "Color and Appearance": ("Color",),
    "Structural Characteristics": ("Structural Character", "Structural"),
    "Texts": ("Text",),
    "Viewpoint and Perspective": ("Camera Perspective", "Viewpoint"),
}
_BY_TYPE = {alias.lower(): name for name, aliases in PATTERNS.items() for alias in (name, *aliases)}
IMAGE_DIRS = ("MLLM_VLM Images", "MLLM_VLM_Images")


class BenchmarkError(ValueError):
    pass


@dataclass(frozen=True)
class Pair:
    pattern: str
    question_ids: tuple[int, int]
    statements: tuple[str, str]
    images: tuple[Path, Path]


def load_benchmark(root: Path) -> list[Pair]:
    root = Path(root)
    questions = root / "Questions.csv"
    if not questions.is_file():
        raise BenchmarkError(f"mmvp_vlm: {questions} not found")
    image_dir = next((root / d for d in IMAGE_DIRS if (root / d).is_dir()), None)
    if image_dir is None:
        raise BenchmarkError(f"mmvp_vlm: no image folder in {root} (expected one of: {', '.join(IMAGE_DIRS)})")
    with questions.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        needed = {"Question ID", "Type", "Statement"}
        if not needed <= set(reader.fieldnames or []):
            raise BenchmarkError(f"{questions}: expected columns {sorted(needed)}, found {reader.fieldnames}")
        rows, lines = [], []
        for row in reader:  # blank lines are skipped; errors name the file's own line numbers
            missing = [key for key in sorted(needed) if not (row.get(key) or "").strip()]
            if missing:
                raise BenchmarkError(f"{questions}: line {reader.line_num}: no {', '.join(missing)}")
            rows.append(row)
            lines.append(reader.line_num)
    if len(rows) % 2:
        raise BenchmarkError(f"{questions}: line {lines[-1]} has no partner: pairs are consecutive rows, so the count must be even "
                             f"({len(rows)} rows)")
    pairs = []
    for i in range(0, len(rows), 2):
        first, second = rows[i], rows[i + 1]
        line, next_line = lines[i], lines[i + 1]
        if first["Type"] != second["Type"]:
            raise BenchmarkError(f"{questions}: rows {line} and {next_line} form a pair but have types {first['Type']!r} and {second['Type']!r}")
        pattern = _BY_TYPE.get(first["Type"].strip().lower())
        if pattern is None:
            raise BenchmarkError(f"{questions}: row {line}: unknown pattern type {first['Type']!r}")
        ids = []
        for where, row in ((line, first), (next_line, second)):
            try:
                ids.append(int(row["Question ID"]))
            except ValueError:
                raise BenchmarkError(f"{questions}: row {where}: Question ID {row['Question ID']!r} is not a number") from None
        images = tuple(image_dir / first["Type"] / f"{qid}.jpg" for qid in ids)
        for where, path in zip((line, next_line), images):
            if not path.is_file():
                raise BenchmarkError(f"{questions}: row {where}: image {path} not found")
        pairs.append(Pair(pattern, (ids[0], ids[1]), (first["Statement"].strip(), second["Statement"].strip()), images))
    return pairs


class MMVPEvaluator(Evaluator):
    name = "mmvp_vlm"
    needs_text = True

    def __init__(self, params: MMVPParams):
        self.params = params
        self.pairs = load_benchmark(Path(params.root))

    def evaluate(self, model: ImageTextModel) -> EvalResult:
        p = self.params
        images = embed_in_batches([path for pair in self.pairs for path in pair.images], model.image_embeddings, p.batch_size, open_rgb)
        texts = embed_in_batches([p.prefix + s for pair in self.pairs for s in pair.statements], model.text_embeddings, p.batch_size)
        rows, correct, total = [], {name: 0 for name in PATTERNS}, {name: 0 for name in PATTERNS}
        for index, pair in enumerate(self.pairs):
            logits = model.logits(images[2 * index : 2 * index + 2], texts[2 * index : 2 * index + 2])
            probs = torch.softmax(logits.float(), dim=-1)  # per statement, over the pair's two images
            picks = probs.argmax(dim=-1).tolist()
            right = [picks[0] == 0, picks[1] == 1]
            both = all(right)
            total[pair.pattern] += 1
            correct[pair.pattern] += int(both)
            rows.append({
                "pattern": pair.pattern,
                "qid1": pair.question_ids[0], "qid2": pair.question_ids[1],
                "statement1": pair.statements[0], "statement2": pair.statements[1],
                "pred1": pair.question_ids[picks[0]], "pred2": pair.question_ids[picks[1]],
                "prob1": round(float(probs[0, 0]), 6), "prob2": round(float(probs[1, 1]), 6),
                "correct1": int(right[0]), "correct2": int(right[1]), "pair_correct": int(both),
            })
        present = [name for name in PATTERNS if total[name]]
        metrics = {name: 100.0 * correct[name] / total[name] for name in present}
        metrics["average"] = sum(metrics.values()) / len(present)
        info = {"pairs": len(self.pairs), "pairs_per_pattern": {n: total[n] for n in present}}
        return EvalResult(metrics=metrics, primary="average", rows=rows, info=info)

    def plot(self, results: Mapping[str, EvalResult], path: Path) -> Path:
        """Pair accuracy per pattern, each bar's value written on it (so a 0 is seen), labels wrapped, chance at 25 %."""
        import textwrap

        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        patterns = [name for name in PATTERNS if any(name in r.metrics for r in results.values())]
        width = 0.8 / max(len(results), 1)
        fig, ax = plt.subplots(figsize=(max(12, 0.75 * len(patterns) * max(len(results), 1)), 5))
        for i, (label, result) in enumerate(results.items()):
            xs = [k + i * width for k in range(len(patterns))]
            values = [result.metrics.get(p, 0.0) for p in patterns]
            bars = ax.bar(xs, values, width, label=f"{label} (avg {result.metrics['average']:.1f})")
            ax.bar_label(bars, labels=[f"{v:.0f}" for v in values], fontsize=7, padding=1)
        # a pair is right when both images pick their own text: 1/2 x 1/2 by chance
        ax.axhline(25, color="black", linestyle="dotted", linewidth=1, label="chance (25 %)")
        ax.set_xticks([k + width * (len(results) - 1) / 2 for k in range(len(patterns))])
        ax.set_xticklabels([textwrap.fill(p, 14, break_long_words=False) for p in patterns], fontsize=8)
        ax.set_ylabel("pair accuracy (%)")
        ax.set_ylim(0, 105)
        ax.set_title("MMVP-VLM by visual pattern")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path
