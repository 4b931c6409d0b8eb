"""Building LLaVA-1.5 models from parts (tower + LLM + new projector), as the paper trains; loading any
LLaVA family's checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .conversation import SYSTEM
from .tower import feature_strategy, load_tower, tower_shape


def word_tokenizer(corpus_files: list[str]) -> Any:
    """An offline word-level tokenizer over the words of ``corpus_files`` and the
    Vicuna template (the CPU twin: no hub tokenizer needed)."""
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    pre = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    texts = [SYSTEM, "USER: ASSISTANT:", "Yes No yes no"]
    for path in corpus_files:
        texts += Path(path).read_text().splitlines()
    words = sorted({w for text in texts for w, _ in pre.pre_tokenize_str(text)})
    specials = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
    vocab = {token: i for i, token in enumerate(specials + words)}
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", additional_special_tokens=["<image>"])


def build_llava(tower_dir: str | Path, settings: Any, plugins: Any) -> tuple[Any, Any]:
    """A LLaVA-1.5 model (vision tower, fresh 2-layer GELU projector, LLM) and its processor
    (``plugins``: the loaded plugin manager, whose encoder plugins load the tower)."""
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        LlamaConfig,
        LlamaForCausalLM,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    loaded = load_tower(tower_dir, plugins)
    tower, image_processor = loaded.model, loaded.image_processor
    if settings.language_model:
        tokenizer = AutoTokenizer.from_pretrained(settings.language_model, use_fast=True)
        llm = AutoModelForCausalLM.from_pretrained(settings.language_model, torch_dtype=torch.float32)
    else:
        tokenizer = word_tokenizer(settings.tokenizer_corpus)
        config = dict(settings.language_model_config)
        vocab = max(len(tokenizer), int(config.pop("vocab_size", 0)))  # a real model's vocabulary (a rehearsal's) or the twin's words
        llm = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, pad_token_id=tokenizer.pad_token_id,
                                           bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, **config))
    if "<image>" not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    if len(tokenizer) > llm.get_input_embeddings().num_embeddings:
        llm.resize_token_embeddings(len(tokenizer))
    strategy, extra_tokens = feature_strategy(loaded)  # CLIP: drop the class token; SigLIP has none
    config = LlavaConfig(vision_config=tower.config, text_config=llm.config,
                         image_token_index=tokenizer.convert_tokens_to_ids("<image>"), projector_hidden_act="gelu",
                         vision_feature_layer=-2, vision_feature_select_strategy=strategy)
    model = LlavaForConditionalGeneration(config)
    model.model.vision_tower.load_state_dict(tower.state_dict(), strict=True)
    model.model.language_model.load_state_dict(llm.model.state_dict(), strict=True)
    model.lm_head.load_state_dict(llm.lm_head.state_dict(), strict=True)
    shape = tower_shape(tower.config)
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=shape.patch_size,
                               vision_feature_select_strategy=strategy, image_token="<image>", num_additional_image_tokens=extra_tokens)
    return model, processor


def load_llava(directory: str | Path, dtype: Any = None) -> tuple[Any, Any]:
    """A LLaVA-1.5, LLaVA-NeXT or LLaVA-OneVision checkpoint (the class its config names,
    :mod:`.families`) and its processor (``dtype``: a torch dtype; default float32)."""
    from transformers import AutoConfig
    from transformers.utils import logging as hf_logging

    from .families import family_of, load_processor, model_class

    hf_logging.disable_progress_bar()
    family = family_of(AutoConfig.from_pretrained(directory), directory)
    kwargs = {"dtype": dtype} if dtype is not None else {}
    return model_class(family).from_pretrained(directory, **kwargs), load_processor(directory, family)
