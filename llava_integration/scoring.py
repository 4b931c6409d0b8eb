"""Likelihood-based multiple choice, as the paper evaluates its MLLMs.

For each option, the mean negative log-likelihood of the option's tokens given
the image and question under the Vicuna v1 template; the lowest wins. Yes/no
questions compare "Yes" and "No". Deterministic (no sampling), batched over a
question's options.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from PIL import Image

from genhancer_plugins import to_rgb

from .conversation import prompt_ids
from .data import pad_to_square


class LikelihoodScorer:
    """A :class:`MultipleChoiceModel` over a LLaVA model and its processor."""

    def __init__(self, model: Any, processor: Any, name: str = "llava", device: str | torch.device = "cpu"):
        self.model = model.eval().to(device)
        self.processor = processor
        self.name = name
        self.device = torch.device(device)
        self.image_id = model.config.image_token_index
        vision = model.config.vision_config
        self.image_tokens = (vision.image_size // vision.patch_size) ** 2

    @torch.no_grad()
    def option_nll(self, image: Image.Image | None, question: str, options: Sequence[str]) -> list[float]:
        tokenizer = self.processor.tokenizer
        prompt = prompt_ids(tokenizer, question, self.image_id, self.image_tokens, with_image=image is not None)
        answers = [tokenizer(" " + option, add_special_tokens=False)["input_ids"] for option in options]
        length = len(prompt) + max(len(a) for a in answers)
        ids = torch.full((len(options), length), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, answer in enumerate(answers):
            seq = prompt + answer
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        inputs: dict[str, Any] = {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}
        if image is not None:
            square = pad_to_square(to_rgb(image), tuple(self.processor.image_processor.image_mean))
            pixels = self.processor.image_processor(images=[square], return_tensors="pt")["pixel_values"]
            inputs["pixel_values"] = pixels.repeat(len(options), 1, 1, 1).to(self.device, self.model.dtype)
        logits = self.model(**inputs).logits.float()
        logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
        nll = []
        for row, answer in enumerate(answers):
            positions = torch.arange(len(prompt) - 1, len(prompt) - 1 + len(answer), device=self.device)
            targets = torch.tensor(answer, device=self.device)
            nll.append(float(-logprobs[row, positions, targets].mean()))
        return nll

    def choose(self, image: Image.Image | None, question: str, options: Sequence[str]) -> tuple[int, list[float]]:
        nll = self.option_nll(image, question, options)
        return min(range(len(options)), key=nll.__getitem__), nll
