"""Image processors pinned to one backend, and tokenizers with clear errors.

transformers 5 picks a torchvision implementation of an image processor when
torchvision is importable and a PIL one otherwise; their bicubic resizes
differ slightly, which is enough to flip MMVP pairs. Every processor here is
the PIL one (what the paper's evaluation used), whatever else is installed.
"""

from __future__ import annotations

import string
from typing import Any


def _pil_class(name: str) -> Any:
    """``<name>Pil`` where this transformers has it (5.x), else ``<name>`` (4.x: PIL only)."""
    import transformers

    return getattr(transformers, name + "Pil", None) or getattr(transformers, name)


def new_image_processor(class_name: str, **kwargs: Any) -> Any:
    """A fresh PIL-backed processor, e.g. ``new_image_processor("CLIPImageProcessor", size=...)``."""
    return _pil_class(class_name)(**kwargs)


def load_image_processor(source: str, **kwargs: Any) -> Any:
    """``AutoImageProcessor.from_pretrained`` with the PIL backend."""
    from transformers import AutoImageProcessor
    from transformers.models.auto import image_processing_auto

    if hasattr(image_processing_auto, "_resolve_backend"):  # transformers 5: backends by name
        return AutoImageProcessor.from_pretrained(source, backend="pil", **kwargs)
    return AutoImageProcessor.from_pretrained(source, use_fast=False, **kwargs)  # 4.x: the slow processors are PIL


def backend_of(processor: Any) -> str:
    """``pil`` or ``torchvision``: which implementation a processor runs."""
    names = [cls.__name__ for cls in type(processor).__mro__]
    return "torchvision" if any(n.endswith("Fast") or "Torchvision" in n for n in names) else "pil"


def load_tokenizer(source: str, **kwargs: Any) -> Any:
    """``AutoTokenizer.from_pretrained``; a missing tokenizer library is one clear error, not an ImportError."""
    from transformers import AutoTokenizer

    from genhancer_plugins import RunError

    try:
        return AutoTokenizer.from_pretrained(source, **kwargs)
    except ImportError as exc:  # SigLIP's tokenizer is SentencePiece
        raise RunError(f"{source}: its tokenizer needs a library that is not installed ({exc}); "
                       "`pip install sentencepiece protobuf` installs what SigLIP and T5-style tokenizers use") from None


def quiet_loading() -> None:
    """No per-tensor "Loading weights" bar: runs already show their own progress."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def character_tokenizer(max_length: int) -> Any:
    """An offline tokenizer for random-weight test towers: one token per lower-case
    character. ``[BOS]`` = 0, ``[EOS]`` = 1 (also padding: CLIP pools at the first
    EOS), ``[UNK]`` = 2; 64 ids in all."""
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    chars = string.ascii_lowercase + string.digits + " .,'-!?:;()/&%+"
    vocab = {"[BOS]": 0, "[EOS]": 1, "[UNK]": 2, **{c: i + 3 for i, c in enumerate(chars)}}
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.post_processor = processors.TemplateProcessing(single="[BOS] $A [EOS]", special_tokens=[("[BOS]", 0), ("[EOS]", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="[BOS]", eos_token="[EOS]", pad_token="[EOS]", unk_token="[UNK]",
        model_max_length=max_length,
    )
