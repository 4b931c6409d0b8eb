"""AIMv2 as an encoder family: the LiT checkpoint (vision + text tower) and a vision-only one
(no pooling head: the global token is the patch tokens' mean), loaded the way a hub id is."""

import pytest
import torch
from helpers import tiny_preset, train_and_score_mmvp


def save_aimv2(directory, vision_only=False):
    from genhancer_hf_encoders.encoders import build_encoder
    from genhancer_hf_encoders.params import HFEncoderParams

    torch.manual_seed(0)
    config = dict(tiny_preset("genhancer_hf_encoders", "aimv2")["config"])
    if vision_only:
        config = {"vision": {**config["vision"], "use_head": False}}
    build_encoder("aimv2", HFEncoderParams(config=config)).save_pretrained(directory)
    return directory


def test_the_lit_checkpoint_loads_with_both_towers_and_a_projected_global_token(tmp_path):
    from genhancer_hf_encoders.encoders import build_encoder
    from genhancer_hf_encoders.params import HFEncoderParams

    source = save_aimv2(tmp_path / "aimv2-lit")
    encoder = build_encoder("aimv2", HFEncoderParams(source=str(source)))  # the hub-id code path, on a directory
    assert type(encoder.model).__name__ == "Aimv2Model" and encoder.tokenizer is not None
    assert encoder.spec.global_dim == 32 and encoder.spec.num_local_tokens == 16  # no class token: every patch is local
    out = encoder(torch.rand(2, 3, 32, 32))
    assert out.global_token.shape == (2, 32) and out.local_tokens.shape == (2, 16, 32)
    assert "model.vision_model.encoder.layers.0.attention.q_proj" in encoder.lora_target_modules()
    assert not any("text_model" in name for name in encoder.lora_target_modules())


def test_a_vision_checkpoint_without_a_pooling_head_uses_the_mean_of_its_tokens(tmp_path):
    from genhancer_hf_encoders.encoders import build_encoder
    from genhancer_hf_encoders.params import HFEncoderParams

    source = save_aimv2(tmp_path / "aimv2", vision_only=True)
    encoder = build_encoder("aimv2", HFEncoderParams(source=str(source)))
    assert type(encoder.model).__name__ == "Aimv2VisionModel" and encoder.tokenizer is None
    images = torch.rand(2, 3, 32, 32)
    out = encoder(images)
    assert torch.allclose(out.global_token, out.local_tokens.mean(dim=1))


def test_the_aimv2_presets_plan_offline_at_the_checkpoints_sizes():
    from genhancer_hf_encoders.encoders import build_encoder
    from genhancer_hf_encoders.params import HFEncoderParams

    from genhancer_plugins import load_presets

    presets = load_presets("genhancer_hf_encoders")["aimv2"]
    lit = build_encoder("aimv2", HFEncoderParams(**presets["aimv2-large-patch14-224-lit"]), meta=True)
    assert lit.spec.global_dim == 768 and lit.spec.local_dim == 1024 and lit.spec.num_local_tokens == 256
    huge = build_encoder("aimv2", HFEncoderParams(**presets["aimv2-huge-patch14-224"]), meta=True)
    assert huge.spec.global_dim == 1536 and sum(p.numel() for p in huge.vision_parameters()) > 600e6


@pytest.mark.slow
def test_an_aimv2_recipe_trains_both_stages_exports_reloads_and_scores_mmvp(tmp_path):
    source = save_aimv2(tmp_path / "aimv2-lit")
    train_and_score_mmvp(tmp_path, {"name": "aimv2", "preset": "tiny", "params": {"source": str(source)}})
    from genhancer_hf_encoders.image_text import load_image_text_model

    exported = load_image_text_model(str(tmp_path / "out" / "export"))  # both towers and the tokenizer travel with it
    assert exported.has_text and type(exported.model).__name__ == "Aimv2Model"
