"""DINOv3 as an encoder family: vision only, the CLS as the global token, its register tokens
neither global nor local, and a PIL image processor (transformers implements DINOv3's for
torchvision only), through the hub-id code path on a tiny random model."""

import torch
from helpers import TINY, run_recipe, tiny_preset, write_recipe


def save_dinov3(directory):
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    torch.manual_seed(0)
    DINOv3ViTModel(DINOv3ViTConfig(**tiny_preset("genhancer_hf_encoders", "dinov3")["config"]["vision"])).save_pretrained(directory)
    return directory


def test_a_dinov3_checkpoint_loads_with_its_registers_dropped_and_a_pil_processor(tmp_path):
    from genhancer_hf_encoders.encoders import build_encoder
    from genhancer_hf_encoders.params import HFEncoderParams
    from genhancer_hf_encoders.processors import backend_of
    from transformers import DINOv3ViTModel

    source = save_dinov3(tmp_path / "dinov3")  # no preprocessor file: the family's own PIL processor serves
    encoder = build_encoder("dinov3", HFEncoderParams(source=str(source))).eval()
    assert backend_of(encoder.processor) == "pil" and list(encoder.processor.image_mean) == [0.485, 0.456, 0.406]
    assert encoder.prefix_tokens == 5 and encoder.spec.num_local_tokens == 16
    images = torch.rand(2, 3, 32, 32)
    out = encoder(images)
    assert out.global_token.shape == (2, 32) and out.local_tokens.shape == (2, 16, 32)  # 1 CLS + 4 registers dropped
    plain = DINOv3ViTModel.from_pretrained(source).eval()
    hidden = plain(pixel_values=(images - encoder.pixel_mean) / encoder.pixel_std)
    assert torch.allclose(hidden.pooler_output, out.global_token, atol=1e-6)
    assert torch.allclose(hidden.last_hidden_state[:, 5:], out.local_tokens, atol=1e-6)


def test_the_dinov3_presets_plan_offline():
    from genhancer_hf_encoders.encoders import build_encoder
    from genhancer_hf_encoders.params import HFEncoderParams

    from genhancer_plugins import load_presets

    large = build_encoder("dinov3", HFEncoderParams(**load_presets("genhancer_hf_encoders")["dinov3"]["dinov3-vitl16"]), meta=True)
    assert large.spec.image_size == 224 and large.spec.num_local_tokens == 196 and large.spec.global_dim == 1024
    assert 290e6 < sum(p.numel() for p in large.vision_parameters()) < 320e6


def test_a_dinov3_recipe_trains_both_stages_exports_and_reloads(tmp_path):
    source = save_dinov3(tmp_path / "dinov3")
    recipe = write_recipe(tmp_path, {**TINY, "encoder": {"name": "dinov3", "preset": "tiny", "params": {"source": str(source)}},
                                     "stage1": {"steps": 1}, "stage2": {"steps": 1}, "preview": {"images": 0}})
    summary = run_recipe(recipe, tmp_path / "run")
    assert summary["completed"] and summary["export"]["max_abs_diff"] < 1e-4
    from genhancer_plugins import load_image_text_model, load_plugins

    exported = load_image_text_model(load_plugins(), str(tmp_path / "run" / "export"))
    assert exported.image_embeddings([__import__("PIL.Image").Image.new("RGB", (40, 40))]).shape == (1, 32)
