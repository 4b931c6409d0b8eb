"""Vicuna v1, the conversation format of LLaVA-1.5, with the loss mask.

    "{system} USER: {q1} ASSISTANT: {a1}</s>USER: {q2} ASSISTANT: {a2}</s>"

Only the assistant replies (and their closing ``</s>``) carry labels; the
system prompt, the user turns and the image tokens are masked with -100.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
          "The assistant gives helpful, detailed, and polite answers to the user's questions.")
IMAGE = "<image>"
IGNORE = -100


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]


def _text_ids(tokenizer: Any, text: str, image_id: int, image_tokens: int) -> list[int]:
    """Token ids of ``text``, each ``<image>`` replaced by ``image_tokens`` image-token ids."""
    ids: list[int] = []
    for i, part in enumerate(text.split(IMAGE)):
        if i:
            ids += [image_id] * image_tokens
        if part:
            ids += tokenizer(part, add_special_tokens=False)["input_ids"]
    return ids


def encode_conversation(tokenizer: Any, turns: list[tuple[str, str]], image_id: int, image_tokens: int) -> Encoded:
    """``turns``: (user, assistant) pairs; an empty assistant text leaves the prompt open
    (``... ASSISTANT:``) for scoring or generation."""
    input_ids = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    labels = [IGNORE] * len(input_ids)
    prefix = SYSTEM + " "
    for user, assistant in turns:
        prompt = _text_ids(tokenizer, f"{prefix}USER: {user} ASSISTANT:", image_id, image_tokens)
        input_ids += prompt
        labels += [IGNORE] * len(prompt)
        prefix = ""
        if assistant:
            reply = tokenizer(" " + assistant, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            input_ids += reply
            labels += reply
    return Encoded(input_ids, labels)


def prompt_ids(tokenizer: Any, question: str, image_id: int, image_tokens: int, with_image: bool = True) -> list[int]:
    user = f"{IMAGE}\n{question}" if with_image else question
    return encode_conversation(tokenizer, [(user, "")], image_id, image_tokens).input_ids
