"""DINOv2 as an encoder family (data in families.py): vision only, its CLS as the global
token, its own hub layout, the processor's resolution, and image-text evaluators refusing it."""

import torch
from helpers import TINY, run_recipe, tiny_preset, write_recipe

from genhancer_plugins.cli import main


def tiny(**vision):
    from genhancer_hf_encoders.encoders import build_encoder
    from genhancer_hf_encoders.params import HFEncoderParams

    config = tiny_preset("genhancer_hf_encoders", "dinov2")["config"]
    return build_encoder("dinov2", HFEncoderParams(config={"vision": {**config["vision"], **vision}}))


def test_a_saved_dinov2_loads_through_the_hub_code_path_and_in_plain_transformers(tmp_path):
    from genhancer_hf_encoders.encoders import build_encoder
    from genhancer_hf_encoders.params import HFEncoderParams
    from safetensors import safe_open
    from transformers import Dinov2Model

    torch.manual_seed(0)
    encoder = tiny().eval()
    encoder.save_pretrained(tmp_path / "dino")
    with safe_open(str(tmp_path / "dino" / "model.safetensors"), "pt") as f:
        assert all(not key.startswith("vision_model.") for key in f.keys())  # DINOv2's own layout
    images = torch.rand(2, 3, 32, 32)
    out = encoder(images)
    assert out.global_token.shape == (2, 32) and out.local_tokens.shape == (2, 16, 32)  # CLS dropped from the patches
    reloaded = build_encoder("dinov2", HFEncoderParams(source=str(tmp_path / "dino"))).eval()
    assert torch.equal(reloaded(images).global_token, out.global_token)
    plain = Dinov2Model.from_pretrained(tmp_path / "dino").eval()
    pixels = (images - encoder.pixel_mean) / encoder.pixel_std
    assert torch.allclose(plain(pixel_values=pixels).pooler_output, out.global_token, atol=1e-6)  # the layer-normed CLS


def test_the_resolution_is_the_processors_crop_not_the_position_table(tmp_path):
    from genhancer_hf_encoders.encoders import build_encoder
    from genhancer_hf_encoders.params import HFEncoderParams

    encoder = tiny(image_size=64)  # a position table for 64 px, as the hub configs name 518
    encoder.processor.crop_size = {"height": 32, "width": 32}
    encoder.save_pretrained(tmp_path / "dino")
    reloaded = build_encoder("dinov2", HFEncoderParams(source=str(tmp_path / "dino")))
    assert reloaded.spec.image_size == 32 and reloaded.spec.num_local_tokens == 16
    assert reloaded(torch.rand(1, 3, 32, 32)).local_tokens.shape == (1, 16, 32)  # positions interpolated


def test_a_dinov2_recipe_trains_and_exports_and_text_evaluators_refuse_it(tmp_path, capsys):
    from genhancer_evaluators.synthetic_mmvp import write_synthetic_mmvp

    recipe = write_recipe(tmp_path, {**TINY, "encoder": {"name": "dinov2", "preset": "tiny"},
                                     "stage1": {"steps": 2, "learning_rate": 1e-3}, "stage2": {"steps": 2, "learning_rate": 1e-3},
                                     "preview": {"images": 0}})
    summary = run_recipe(recipe, tmp_path / "run")
    assert summary["completed"] and summary["export"]["max_abs_diff"] < 1e-4
    bench = write_synthetic_mmvp(tmp_path / "bench", pairs_per_pattern=1)
    code = main(["eval", "mmvp_vlm", "-p", f"root={bench}", "-m", str(tmp_path / "run" / "export"), "-o", str(tmp_path / "e")])
    err = capsys.readouterr().err
    assert code == 2 and "no text tower" in err
    code = main(["eval", "mmvp_vlm", "-p", f"root={bench}", "-m", str(tmp_path / "run" / "export"), "-o", str(tmp_path / "e2"),
                 "--text-from", str(tmp_path / "run" / "export")])
    assert code == 2 and "vision only: --text-from cannot give it a text tower" in capsys.readouterr().err
