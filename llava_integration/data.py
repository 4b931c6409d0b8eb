"""LLaVA's training data: ``[{"id", "image", "conversations": [{"from", "value"}]}]``.

Images live under an image folder; an image record's first human turn holds
one ``<image>`` token. Bad records (missing image, no ``<image>`` where one is
needed, malformed turns, longer than ``max_length``) are skipped and counted,
never fatal. Images are padded to a square with the processor's mean colour,
as LLaVA-1.5 does, before the image processor resizes them.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from genhancer_plugins import to_rgb

from .conversation import IGNORE, IMAGE, encode_conversation


def pad_to_square(image: Image.Image, mean: tuple[float, ...]) -> Image.Image:
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new("RGB", (side, side), tuple(int(round(255 * m)) for m in mean))
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def _turns(record: dict[str, Any]) -> list[tuple[str, str]] | None:
    conv = record.get("conversations")
    if not isinstance(conv, list) or len(conv) < 2 or len(conv) % 2:
        return None
    turns = []
    for human, gpt in zip(conv[::2], conv[1::2]):
        if not isinstance(human, dict) or not isinstance(gpt, dict):
            return None
        if human.get("from") != "human" or gpt.get("from") != "gpt":
            return None
        turns.append((str(human.get("value", "")), str(gpt.get("value", ""))))
    return turns


class LlavaDataset(torch.utils.data.Dataset):
    def __init__(self, data_path: str | Path, image_folder: str | Path | None, processor: Any, image_token_id: int,
                 image_tokens: int, max_length: int = 2048):
        path = Path(data_path)
        if not path.is_file():
            raise FileNotFoundError(f"LLaVA data file {path} not found")
        try:
            records = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(records, list):
            raise ValueError(f"{path}: expected a JSON list of records")
        self.folder = Path(image_folder) if image_folder else path.parent
        self.processor, self.image_token_id, self.image_tokens, self.max_length = processor, image_token_id, image_tokens, max_length
        self.skipped: Counter[str] = Counter()
        self.items: list[tuple[dict[str, Any], list[tuple[str, str]]]] = []
        for record in records:
            reason = self._problem(record)
            if reason:
                self.skipped[reason] += 1
                continue
            self.items.append((record, _turns(record)))
        self._check_lengths()
        if not self.items:
            raise ValueError(f"{path}: no usable record (skipped: {dict(self.skipped)})")

    def _problem(self, record: Any) -> str | None:
        if not isinstance(record, dict):
            return "not an object"
        turns = _turns(record)
        if turns is None:
            return "malformed conversations"
        images_in_text = sum(u.count(IMAGE) + a.count(IMAGE) for u, a in turns)
        if record.get("image"):
            if not (self.folder / record["image"]).is_file():
                return "missing image"
            if images_in_text != 1 or IMAGE not in turns[0][0]:
                return "no <image> token" if images_in_text == 0 else "misplaced <image> tokens"
        elif images_in_text:
            return "<image> token without an image"
        return None

    def _encode(self, record: dict[str, Any], turns: list[tuple[str, str]]):
        tokens = self.image_tokens if record.get("image") else 0
        return encode_conversation(self.processor.tokenizer, turns, self.image_token_id, tokens)

    def _check_lengths(self) -> None:
        kept = []
        for record, turns in self.items:
            if len(self._encode(record, turns).input_ids) > self.max_length:
                self.skipped["longer than max_length"] += 1
            else:
                kept.append((record, turns))
        self.items = kept

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record, turns = self.items[index]
        encoded = self._encode(record, turns)
        item: dict[str, Any] = {"input_ids": encoded.input_ids, "labels": encoded.labels}
        if record.get("image"):
            with Image.open(self.folder / record["image"]) as image:
                image = pad_to_square(to_rgb(image), tuple(self.processor.image_processor.image_mean))
            item["pixel_values"] = self.processor.image_processor(images=[image], return_tensors="pt")["pixel_values"][0]
        return item


class Collator:
    """Right-pads ids (pad id), labels (-100) and builds the attention mask; stacks images."""

    def __init__(self, pad_token_id: int):
        self.pad = pad_token_id

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        length = max(len(item["input_ids"]) for item in items)
        ids = torch.full((len(items), length), self.pad, dtype=torch.long)
        labels = torch.full((len(items), length), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(items), length), dtype=torch.long)
        for row, item in enumerate(items):
            n = len(item["input_ids"])
            ids[row, :n] = torch.tensor(item["input_ids"])
            labels[row, :n] = torch.tensor(item["labels"])
            mask[row, :n] = 1
        batch = {"input_ids": ids, "labels": labels, "attention_mask": mask}
        images = [item["pixel_values"] for item in items if "pixel_values" in item]
        if images:
            batch["pixel_values"] = torch.stack(images)
        return batch
