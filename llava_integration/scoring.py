"""Likelihood-based multiple choice, as the paper evaluates its MLLMs.

For each option, the mean negative log-likelihood of the option's tokens given
the image and question under the Vicuna v1 template (LLaVA-NeXT and OneVision:
the checkpoint's chat template when its processor has one); the lowest wins. Yes/no
questions compare "Yes" and "No". Deterministic (no sampling), batched over a
question's options.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from PIL import Image
from torch import Tensor

from genhancer_plugins import to_rgb

from .conversation import IMAGE, SYSTEM, prompt_ids
from .data import pad_to_square
from .tower import image_tokens


class LikelihoodScorer:
    """A :class:`MultipleChoiceModel` over a LLaVA model (any family of :mod:`.families`) and its processor."""

    def __init__(self, model: Any, processor: Any, name: str = "llava", device: str | torch.device = "cpu"):
        from .families import family_of

        self.model = model.eval().to(device)
        self.processor = processor
        self.name = name
        self.device = torch.device(device)
        self.family = family_of(model.config)
        self.image_id = model.config.image_token_index
        if not self.family.tiles_images:
            self.image_tokens = image_tokens(processor, model.config.vision_config)  # LLaVA-1.5's fixed count per image

    def _prompt(self, image: Image.Image | None, question: str) -> tuple[list[int], dict[str, Tensor], str]:
        """The prompt's token ids with every image token in place, the image inputs for one
        sample, and what precedes an answer's first word."""
        if not self.family.tiles_images:
            prompt = prompt_ids(self.processor.tokenizer, question, self.image_id, self.image_tokens, with_image=image is not None)
            if image is None:
                return prompt, {}, " "
            square = pad_to_square(to_rgb(image), tuple(self.processor.image_processor.image_mean))
            return prompt, {"pixel_values": self.processor.image_processor(images=[square], return_tensors="pt")["pixel_values"]}, " "
        # AnyRes families: the processor tiles the image and inserts as many image tokens as its tiles give
        text = self._template(question, with_image=image is not None)
        inputs = self.processor(images=[to_rgb(image)] if image is not None else None, text=[text], return_tensors="pt")
        extras = {key: inputs[key] for key in ("pixel_values", "image_sizes", "batch_num_images") if key in inputs}
        return inputs["input_ids"][0].tolist(), extras, " " if text.endswith(":") else ""

    def _template(self, question: str, with_image: bool) -> str:
        """The checkpoint's chat template where its processor has one (llava-hf checkpoints do), else Vicuna v1."""
        if getattr(self.processor, "chat_template", None):
            content = ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": question}]
            return self.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
        user = f"{IMAGE}\n{question}" if with_image else question
        return f"{SYSTEM} USER: {user} ASSISTANT:"

    @torch.no_grad()
    def option_nll(self, image: Image.Image | None, question: str, options: Sequence[str]) -> list[float]:
        tokenizer = self.processor.tokenizer
        prompt, image_inputs, lead = self._prompt(image, question)
        answers = [tokenizer(lead + option, add_special_tokens=False)["input_ids"] for option in options]
        length = len(prompt) + max(len(a) for a in answers)
        ids = torch.full((len(options), length), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, answer in enumerate(answers):
            seq = prompt + answer
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        inputs: dict[str, Any] = {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}
        for key, value in image_inputs.items():  # the same image for every option
            value = value.repeat(len(options), *[1] * (value.dim() - 1)).to(self.device)
            inputs[key] = value.to(self.model.dtype) if value.is_floating_point() else value
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
