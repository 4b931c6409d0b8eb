"""Evaluator ``retrieval``: image->text and text->image recall@1/5/10.

Input: JSONL with ``image`` and ``caption`` (or a ``captions`` list) per line,
or CSV with ``image`` and ``caption`` columns (an image may appear on several
rows). Paths are relative to the file. An image retrieves correctly if any of
its captions ranks within k; a caption if its own image does.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch

from genhancer_plugins import EvalResult, Evaluator, ImageTextModel

from .common import embed_in_batches, open_rgb
from .params import RetrievalParams

KS = (1, 5, 10)


def read_pairs(path: Path) -> dict[Path, list[str]]:
    if not path.is_file():
        raise ValueError(f"retrieval: {path} not found")
    captions: dict[Path, list[str]] = {}

    def add(image: str, texts: list[str], where: str) -> None:
        if not image or not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            raise ValueError(f"{where}: needs an image and at least one non-empty caption")
        full = Path(image) if Path(image).is_absolute() else path.parent / image
        if not full.is_file():
            raise ValueError(f"{where}: image {full} not found")
        captions.setdefault(full, []).extend(t.strip() for t in texts)

    if path.suffix.lower() == ".jsonl":
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    raise ValueError(f"{path}:{number}: not valid JSON") from None
                texts = record.get("captions") or ([record["caption"]] if "caption" in record else [])
                add(record.get("image", ""), list(texts), f"{path}:{number}")
    elif path.suffix.lower() == ".csv":
        with path.open(newline="") as f:
            for number, row in enumerate(csv.DictReader(f), 2):
                add(row.get("image", ""), [row.get("caption", "")], f"{path}:{number}")
    else:
        raise ValueError(f"retrieval: {path}: expected a .jsonl or .csv file")
    return captions


class RetrievalEvaluator(Evaluator):
    name = "retrieval"
    needs_text = True

    def __init__(self, params: RetrievalParams):
        self.params = params
        self.pairs = read_pairs(Path(params.file))

    def evaluate(self, model: ImageTextModel) -> EvalResult:
        images = list(self.pairs)
        texts, owner = [], []
        for index, image in enumerate(images):
            for caption in self.pairs[image]:
                texts.append(caption)
                owner.append(index)
        owner_t = torch.tensor(owner)
        image_emb = embed_in_batches(images, model.image_embeddings, self.params.batch_size, open_rgb)
        text_emb = embed_in_batches(texts, model.text_embeddings, self.params.batch_size)
        scores = model.logits(image_emb, text_emb)  # [texts, images]
        # text -> image: rank of the caption's own image
        t2i_rank = (scores > scores.gather(1, owner_t[:, None])).sum(dim=1)
        # image -> text: best rank among the image's captions
        i2t = scores.T  # [images, texts]
        i2t_rank = torch.stack([
            (i2t[i] > i2t[i, owner_t == i].max()).sum() for i in range(len(images))
        ])
        metrics = {}
        for k in KS:
            metrics[f"image_to_text_R@{k}"] = 100.0 * float((i2t_rank < k).float().mean())
        for k in KS:
            metrics[f"text_to_image_R@{k}"] = 100.0 * float((t2i_rank < k).float().mean())
        rows = [{"image": str(image), "best_caption_rank": int(i2t_rank[i]) + 1} for i, image in enumerate(images)]
        return EvalResult(metrics=metrics, primary="image_to_text_R@1", rows=rows, info={"images": len(images), "captions": len(texts)})
