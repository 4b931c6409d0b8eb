"""`genhancer llava swap` and `eval` on LLaVA-NeXT and LLaVA-OneVision: tiny checkpoints made here,
in the layout of the llava-hf ones (tiling processors, a SigLIP tower and Qwen2 for OneVision)."""

import json
from pathlib import Path

import pytest
import torch
from helpers import tiny_encoder_config, write_colour_questions
from PIL import Image

from genhancer_plugins import load_plugins
from llava_integration.families import FAMILIES, family_of, processor_class
from llava_integration.tower import TowerMismatch, swap_vision_tower

pytestmark = pytest.mark.needs_llava

VISION = tiny_encoder_config()["vision"]  # 32 px, patch 8: 16 tokens per tile
PINPOINTS = [[32, 32], [32, 64], [64, 32], [64, 64]]
CORPUS = "What colour is it ?\nred blue green\nuser assistant\n"
#: the Qwen2 chat template's shape (llava-hf's OneVision processors carry one like it)
CHAT_TEMPLATE = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
                 "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>\n{% else %}{{ part['text'] }}"
                 "{% endif %}{% endfor %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def save_tower(path: Path, family: str, seed: int, mean=(0.1, 0.2, 0.3), **overrides) -> Path:
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(seed)
    config = {**VISION, **overrides}
    size = config["image_size"]
    if family == "clip":
        CLIPVisionModel(CLIPVisionConfig(**config)).save_pretrained(path)
        CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size}, image_mean=list(mean)).save_pretrained(path)
    else:
        SiglipVisionModel(SiglipVisionConfig(**config)).save_pretrained(path)
        SiglipImageProcessor(size={"height": size, "width": size}, image_mean=list(mean)).save_pretrained(path)
    return path


def tiny_mllm(path: Path, family: str, corpus: Path) -> Path:
    """A random LLaVA-NeXT (CLIP tower, Llama) or LLaVA-OneVision (SigLIP tower, Qwen2) with its processor, saved."""
    import transformers as tf

    from llava_integration.build import word_tokenizer

    torch.manual_seed(0)
    tokenizer = word_tokenizer([str(corpus)])
    if family == "llava_onevision":  # Qwen2's chat markers and OneVision's video token, as its tokenizer has them
        tokenizer.add_special_tokens({"additional_special_tokens": ["<image>", "<video>", "<|im_start|>", "<|im_end|>"]})
    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                num_key_value_heads=2, max_position_embeddings=2048, pad_token_id=tokenizer.pad_token_id)
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    if family == "llava_next":
        config = tf.LlavaNextConfig(vision_config=tf.CLIPVisionConfig(**VISION).to_dict(), text_config=tf.LlamaConfig(**text).to_dict(),
                                    image_token_index=image_id, image_grid_pinpoints=PINPOINTS, vision_feature_layer=-2,
                                    vision_feature_select_strategy="default")
        model = tf.LlavaNextForConditionalGeneration(config)
        images = tf.LlavaNextImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                               image_grid_pinpoints=PINPOINTS)
        processor = tf.LlavaNextProcessor(image_processor=images, tokenizer=tokenizer, patch_size=8,
                                          vision_feature_select_strategy="default", num_additional_image_tokens=1)
    else:
        config = tf.LlavaOnevisionConfig(vision_config=tf.SiglipVisionConfig(**VISION).to_dict(), text_config=tf.Qwen2Config(**text).to_dict(),
                                         image_token_index=image_id, image_grid_pinpoints=PINPOINTS, vision_feature_layer=-1,
                                         vision_feature_select_strategy="full")
        model = tf.LlavaOnevisionForConditionalGeneration(config)
        images = tf.LlavaOnevisionImageProcessorPil(size={"height": 32, "width": 32}, image_grid_pinpoints=PINPOINTS)
        processor = processor_class(FAMILIES[2])(image_processor=images, tokenizer=tokenizer, num_image_tokens=16,
                                               vision_feature_select_strategy="full", chat_template=CHAT_TEMPLATE)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


@pytest.fixture(params=["llava_next", "llava_onevision"])
def mllm(request, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS)
    return request.param, tiny_mllm(tmp_path / request.param, request.param, corpus)


def test_swap_then_eval_on_a_tiling_family(mllm, tmp_path, capsys):
    from genhancer_plugins.cli import main
    from llava_integration.build import load_llava
    from llava_integration.families import load_processor
    from llava_integration.scoring import LikelihoodScorer

    family, source = mllm
    tower_family = "clip" if family == "llava_next" else "siglip"
    tower = save_tower(tmp_path / "enhanced", tower_family, 5, mean=(0.4, 0.5, 0.6))
    swapped = tmp_path / "swapped"
    assert main(["llava", "swap", "--llava", str(source), "--tower", str(tower), "-o", str(swapped)]) == 0
    model, processor = load_llava(swapped)
    assert family_of(model.config).model_type == family and type(model).__name__ == family_of(model.config).model_class
    reference = type(model.model.vision_tower).from_pretrained(tower)
    for key, value in reference.state_dict().items():
        assert torch.equal(model.model.vision_tower.state_dict()[key], value), key
    # the checkpoint's tiling processor stays (AnyRes), with the tower's normalisation
    assert type(processor.image_processor) is type(load_processor(source, family_of(model.config)).image_processor)
    assert processor.image_processor.image_grid_pinpoints == PINPOINTS
    assert list(processor.image_processor.image_mean) == pytest.approx([0.4, 0.5, 0.6])

    # a wide image is tiled: more image tokens than one tile's 16, as the processor counts them
    scorer = LikelihoodScorer(model, processor)
    wide = Image.new("RGB", (60, 28), (200, 30, 30))
    prompt, extras, _ = scorer._prompt(wide, "What colour is it ?")
    assert prompt.count(model.config.image_token_index) > 16 and extras["pixel_values"].dim() == 5
    nll = scorer.option_nll(wide, "What colour is it ?", ["red", "blue green"])
    for option, got in zip(["red", "blue green"], nll):  # the padded batch equals each option alone
        lead = "" if family == "llava_onevision" else " "  # after the chat template's "assistant\n" no space
        answer = processor.tokenizer(lead + option, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([prompt + answer]), **extras).logits[0].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        expected = -sum(float(logprobs[len(prompt) - 1 + k, t]) for k, t in enumerate(answer)) / len(answer)
        assert got == pytest.approx(expected, abs=1e-4), option
    if family == "llava_onevision":  # the checkpoint's chat template frames the question
        assert processor.tokenizer.decode(prompt).rstrip().endswith("assistant")

    questions, _ = write_colour_questions(tmp_path, (40, 20))
    out = tmp_path / "scores"
    code = main(["llava", "eval", "multiple_choice", "-m", str(source), "-m", str(swapped), "--label", "original",
                 "--label", "swapped", "-p", f"file={questions}", "-o", str(out), "--device", "cpu"])
    assert code == 0 and "difference" in capsys.readouterr().out
    assert set(json.loads((out / "summary.json").read_text())["models"]) == {"original", "swapped"}


def test_a_tower_that_does_not_fit_is_refused_with_the_reason(mllm, tmp_path):
    from llava_integration.build import load_llava

    family, source = mllm
    model, processor = load_llava(source)
    other = "siglip" if family == "llava_next" else "clip"
    with pytest.raises(TowerMismatch, match=r"model holds a (CLIP|Siglip)VisionModel; .* \(its projector was trained on"):
        swap_vision_tower(model, save_tower(tmp_path / "other", other, 1), load_plugins(), processor)
    same = "clip" if family == "llava_next" else "siglip"
    with pytest.raises(TowerMismatch, match="hidden size 48 != 32"):
        swap_vision_tower(model, save_tower(tmp_path / "wide", same, 1, hidden_size=48, intermediate_size=96), load_plugins(), processor)
    with pytest.raises(TowerMismatch, match="64 image tokens .* != 16"):  # per tile
        swap_vision_tower(model, save_tower(tmp_path / "fine", same, 1, patch_size=4), load_plugins(), processor)


def test_an_unknown_mllm_family_is_refused_naming_the_known_ones():
    from transformers import LlamaConfig

    with pytest.raises(ValueError, match=r"model type 'llama' is not an MLLM family .* LLaVA-NeXT \(llava_next\)"):
        family_of(LlamaConfig())
