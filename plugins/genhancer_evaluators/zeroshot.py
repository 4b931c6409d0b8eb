"""Evaluator ``zeroshot``: zero-shot classification of an ImageFolder-style directory.

Class = sub-directory (or the names in ``class_names``); each class's text
embedding is the normalised mean over the prompt templates; top-1 and top-5.
"""

from __future__ import annotations

from pathlib import Path

import torch

from genhancer_plugins import EvalResult, Evaluator, ImageTextModel

from .common import embed_in_batches, open_rgb
from .params import ZeroShotParams

TEMPLATES = {
    "simple": ["a photo of a {}."],
    "ensemble": ["a photo of a {}.", "a bad photo of a {}.", "a photo of the large {}.", "a photo of the small {}.",
                 "a cropped photo of a {}.", "a close-up photo of a {}.", "a bright photo of a {}.", "itap of a {}."],
}
SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


class ZeroShotEvaluator(Evaluator):
    name = "zeroshot"
    needs_text = True

    def __init__(self, params: ZeroShotParams):
        self.params = params
        root = Path(params.root)
        if not root.is_dir():
            raise ValueError(f"zeroshot: {root} is not a directory")
        folders = sorted(d for d in root.iterdir() if d.is_dir())
        if len(folders) < 2:
            raise ValueError(f"zeroshot: {root} needs at least two class folders")
        names = [d.name.replace("_", " ") for d in folders]
        if params.class_names:
            names = [line.strip() for line in Path(params.class_names).read_text().splitlines() if line.strip()]
            if len(names) != len(folders):
                raise ValueError(f"zeroshot: {params.class_names} has {len(names)} names for {len(folders)} class folders")
        self.class_names = names
        self.samples = [(path, label) for label, d in enumerate(folders) for path in sorted(d.iterdir()) if path.suffix.lower() in SUFFIXES]
        if not self.samples:
            raise ValueError(f"zeroshot: no images under {root}")
        templates = params.templates
        if isinstance(templates, str):
            if templates not in TEMPLATES:
                raise ValueError(f"zeroshot: unknown template set {templates!r}; choose {', '.join(TEMPLATES)} or give a list")
            templates = TEMPLATES[templates]
        self.templates = list(templates)

    def evaluate(self, model: ImageTextModel) -> EvalResult:
        p = self.params
        prompts = [t.format(name) for name in self.class_names for t in self.templates]
        text = embed_in_batches(prompts, model.text_embeddings, p.batch_size).view(len(self.class_names), len(self.templates), -1)
        classes = torch.nn.functional.normalize(text.mean(dim=1), dim=-1)
        images = embed_in_batches([s[0] for s in self.samples], model.image_embeddings, p.batch_size, open_rgb)
        scores = model.logits(images, classes).T  # [images, classes]
        k = min(5, len(self.class_names))
        top = scores.topk(k, dim=-1).indices
        labels = torch.tensor([s[1] for s in self.samples])
        top1 = (top[:, 0] == labels).float()
        topk = (top == labels[:, None]).any(dim=-1).float()
        rows = [{"image": str(path), "label": self.class_names[label], "prediction": self.class_names[int(top[i, 0])],
                 "correct": int(top1[i])} for i, (path, label) in enumerate(self.samples)]
        metrics = {"top1": 100.0 * float(top1.mean()), f"top{k}": 100.0 * float(topk.mean())}
        return EvalResult(metrics=metrics, primary="top1", rows=rows, info={"images": len(self.samples), "classes": len(self.class_names)})
