"""The `llava:` phase takes every vision tower family: LLaVA-1.5 built from a tiny DINOv2, DINOv3
(class token and registers), AIMv2 (no class token) or SigLIP tower trains a step on an image
conversation and scores options, with as many image tokens as the tower gives features."""

import json

import pytest
import torch
from helpers import tiny_preset
from PIL import Image

from genhancer_plugins import load_plugins

pytestmark = pytest.mark.needs_llava


def save_tower(directory, family):
    """A tiny random checkpoint of ``family``, saved with the family's own processor by the encoder plugin."""
    from genhancer_hf_encoders.encoders import build_encoder
    from genhancer_hf_encoders.params import HFEncoderParams

    torch.manual_seed(0)
    config = dict(tiny_preset("genhancer_hf_encoders", family)["config"])
    config.pop("text", None)
    config.pop("projection_dim", None)
    build_encoder(family, HFEncoderParams(config=config)).save_pretrained(directory)
    return directory


@pytest.mark.parametrize("family,strategy,extra", [("dinov2", "default", 0), ("dinov3", "default", 4), ("aimv2", "full", 0),
                                                   ("siglip", "full", 0)])
def test_the_llava_phase_takes_the_tower(tmp_path, family, strategy, extra):
    from llava_integration.build import build_llava
    from llava_integration.data import Collator, LlavaDataset
    from llava_integration.params import LlavaSettings
    from llava_integration.scoring import LikelihoodScorer
    from llava_integration.tower import image_tokens

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("What colour is it ?\nred blue\n")
    settings = LlavaSettings(language_model_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                                    "num_attention_heads": 2, "num_key_value_heads": 2,
                                                    "max_position_embeddings": 512},
                             tokenizer_corpus=[str(corpus)])
    torch.manual_seed(0)
    model, processor = build_llava(save_tower(tmp_path / family, family), settings, load_plugins())
    assert model.config.vision_feature_select_strategy == strategy
    pixels = processor.image_processor(images=[Image.new("RGB", (50, 40))], return_tensors="pt")["pixel_values"]
    patches = (pixels.shape[-1] // processor.patch_size) * (pixels.shape[-2] // processor.patch_size)
    count = image_tokens(processor, model.config.vision_config)
    assert count == patches + extra  # DINOv3's registers reach the projector as image tokens; a class token does not
    with torch.no_grad():
        features = model.model.get_image_features(pixel_values=pixels)
    features = getattr(features, "pooler_output", features)
    assert sum(f.shape[0] for f in features) == count if isinstance(features, (list, tuple)) else features.shape[1] == count

    Image.new("RGB", (50, 40), (200, 30, 30)).save(tmp_path / "red.png")
    record = {"id": "0", "image": "red.png", "conversations": [{"from": "human", "value": "<image>\nWhat colour is it ?"},
                                                                {"from": "gpt", "value": "red"}]}
    (tmp_path / "data.json").write_text(json.dumps([record]))
    dataset = LlavaDataset(tmp_path / "data.json", tmp_path, processor, model.config.image_token_index, count)
    batch = Collator(processor.tokenizer.pad_token_id)([dataset[0]])
    loss = model(**batch).loss  # the model checks image tokens against features: a wrong count raises here
    loss.backward()
    assert torch.isfinite(loss) and model.model.multi_modal_projector.linear_1.weight.grad.abs().sum() > 0
    nll = LikelihoodScorer(model, processor).option_nll(Image.open(tmp_path / "red.png"), "What colour is it ?", ["red", "blue"])
    assert len(nll) == 2 and all(value > 0 for value in nll)
