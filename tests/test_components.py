"""Encoders, conditioner, LoRA and the per-stage trainable sets, on tiny models."""

import copy

import pytest
import torch
from genhancer_conditioners.cls import ClsConditioner
from genhancer_conditioners.params import ClsParams
from genhancer_hf_encoders.encoders import build_encoder
from genhancer_hf_encoders.params import HFEncoderParams
from helpers import TINY, tiny_encoder_config, write_recipe

from genhancer_plugins.interfaces import ConditionSpec, EncoderOutput, EncoderSpec
from genhancer_plugins.recipe.schema import LoraSettings, load_recipe
from genhancer_plugins.registry.manager import load_plugins
from genhancer_plugins.training.engine import Run
from genhancer_plugins.training.lora import apply_lora, has_lora, merge_lora
from genhancer_plugins.training.stage import configure_trainable

VISION = tiny_encoder_config()["vision"]
TEXT = tiny_encoder_config()["text"]


def clip(**config):
    torch.manual_seed(0)
    return build_encoder("clip", HFEncoderParams(config={"vision": VISION, **config}))


def test_clip_global_token_is_projected_pooler_output_and_locals_drop_cls():
    enc = clip(text=TEXT, projection_dim=24).eval()
    images = torch.rand(2, 3, 32, 32)
    out = enc(images)
    assert out.global_token.shape == (2, 24) and out.local_tokens.shape == (2, 16, 32)
    pixel = (images - enc.pixel_mean) / enc.pixel_std
    ref = enc.model.vision_model(pixel_values=pixel)
    assert torch.allclose(out.global_token, enc.model.visual_projection(ref.pooler_output))
    assert torch.allclose(out.local_tokens, ref.last_hidden_state[:, 1:])
    assert enc.spec == EncoderSpec(global_dim=24, local_dim=32, num_local_tokens=16, image_size=32)


def test_normalisation_comes_from_the_processor_config():
    enc = clip()
    assert torch.allclose(enc.pixel_mean.flatten(), torch.tensor(enc.processor.image_mean, dtype=torch.float32))
    siglip = build_encoder("siglip", HFEncoderParams(config={"vision": VISION}))
    assert siglip.pixel_mean.flatten().tolist() == pytest.approx([0.5, 0.5, 0.5])


def test_siglip_global_token_is_pooler_output_and_keeps_every_patch():
    torch.manual_seed(0)
    enc = build_encoder("siglip", HFEncoderParams(config={"vision": VISION, "text": TEXT})).eval()
    out = enc(torch.rand(2, 3, 32, 32))
    assert out.global_token.shape == (2, 32) and out.local_tokens.shape == (2, 16, 32)
    names = enc.lora_target_modules()
    assert names and all(n.startswith("model.vision_model.") for n in names)
    assert not any(".head.attention." in n for n in names)  # nn.MultiheadAttention is left alone


def test_lora_targets_every_vision_linear_and_nothing_of_the_text_tower():
    enc = clip(text=TEXT, projection_dim=24)
    names = enc.lora_target_modules()
    per_layer = {"q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"}
    assert {n.rsplit(".", 1)[1] for n in names} == per_layer | {"visual_projection"}
    assert len(names) == 2 * 6 + 1 and not any("text_model" in n for n in names)


def test_lora_merge_matches_unmerged_outputs():
    enc = clip(projection_dim=24)
    apply_lora(enc, LoraSettings(rank=4, alpha=8, dropout=0.0))
    assert has_lora(enc)
    with torch.no_grad():  # non-zero adapters, so merging has something to fold in
        for name, p in enc.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    enc.eval()
    images = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        before = enc(images)
    plain = clip(projection_dim=24).eval()
    with torch.no_grad():
        assert (plain(images).global_token - before.global_token).abs().max() > 1e-3
    merge_lora(enc)
    assert not has_lora(enc)
    assert not any("lora_" in n for n, _ in enc.named_parameters())
    with torch.no_grad():
        after = enc(images)
    assert torch.allclose(before.global_token, after.global_token, atol=1e-5)
    assert torch.allclose(before.local_tokens, after.local_tokens, atol=1e-5)


def test_cls_conditioner_projects_global_token_to_pooled_and_one_token():
    cond = ClsConditioner(ClsParams(hidden_dim=40), EncoderSpec(24, 32, 16, 32), ConditionSpec(pooled_dim=12, token_dim=20))
    assert [type(m).__name__ for m in cond.to_pooled] == ["LayerNorm", "Linear", "GELU", "Linear"]
    assert cond.to_pooled[1].out_features == 40
    out = cond(EncoderOutput(torch.randn(5, 24), torch.randn(5, 16, 32)))
    assert out.pooled.shape == (5, 12) and out.tokens.shape == (5, 1, 20)
    local_changed = cond(EncoderOutput(torch.zeros(5, 24), torch.randn(5, 16, 32)))
    same_global = cond(EncoderOutput(torch.zeros(5, 24), torch.randn(5, 16, 32)))
    assert torch.equal(local_changed.tokens, same_global.tokens)  # only the global token matters


def _run(tmp_path, overrides=()):
    tmp_path.mkdir(parents=True, exist_ok=True)
    recipe = write_recipe(tmp_path, TINY)
    run = Run(load_recipe(recipe, list(overrides)), load_plugins(), tmp_path / "out", show_progress=False)
    run.setup_accelerator()
    run.setup_models()
    return run


def _trainable(run):
    return {n for n, p in run.model.named_parameters() if p.requires_grad}


def test_stage1_trains_projector_and_denoiser_only(tmp_path):
    run = _run(tmp_path)
    configure_trainable(run.model, "stage1", run.recipe, run.accelerator.device)
    names = _trainable(run)
    heads = {n for n, _ in run.model.named_parameters() if n.startswith(("conditioner.", "denoiser."))}
    assert names == heads


def test_stage2_all_and_only(tmp_path):
    run = _run(tmp_path)
    configure_trainable(run.model, "stage2", run.recipe, run.accelerator.device)
    names = _trainable(run)
    enc = {n for n in names if n.startswith("encoder.")}
    assert enc and all("lora_" in n for n in enc)
    assert any(n.startswith("denoiser.") for n in names) and any(n.startswith("conditioner.") for n in names)
    assert not any(n.startswith("tokenizer.") for n in names)

    only = _run(tmp_path / "only", ["stage2.mode=only"])
    configure_trainable(only.model, "stage2", only.recipe, only.accelerator.device)
    assert all("lora_" in n for n in _trainable(only))


def test_stage2_full_fine_tuning_trains_the_vision_tower_without_lora(tmp_path):
    run = _run(tmp_path, ["stage2.encoder_tuning=full"])
    configure_trainable(run.model, "stage2", run.recipe, run.accelerator.device)
    names = _trainable(run)
    assert not has_lora(run.model.encoder)
    # exactly the encoder's vision parameters train (by identity: the text tower and the logit scale stay frozen)
    trained = {id(p) for p in run.model.encoder.parameters() if p.requires_grad}
    assert trained == {id(p) for p in run.model.encoder.vision_parameters()}
    assert len(trained) < sum(1 for _ in run.model.encoder.parameters())
    assert not any("text_model" in n for n in names)
    assert any(n.startswith("encoder.model.vision_model.encoder.layers.0") for n in names)


@pytest.mark.parametrize("warmup,expected", [(0, [1.0, 1.0, 1.0, 1.0]), (3, [0.25, 0.5, 0.75, 1.0, 1.0])])
def test_the_learning_rate_is_constant_or_warms_up_linearly(warmup, expected):
    from genhancer_plugins.training.stage import learning_rate

    assert [learning_rate(1.0, warmup, step) for step in range(len(expected))] == pytest.approx(expected)


def test_tokenizer_is_frozen_and_stays_in_eval_mode(tmp_path):
    run = _run(tmp_path)
    configure_trainable(run.model, "stage2", run.recipe, run.accelerator.device)
    run.model.train()
    assert not run.model.tokenizer.training
    assert not any(p.requires_grad for p in run.model.tokenizer.parameters())
    images = torch.rand(2, 3, 32, 32)
    a = copy.deepcopy(run.model.tokenizer).encode(images)
    assert a.shape == (2, 16, 4, 4)
