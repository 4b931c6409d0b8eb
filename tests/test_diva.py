"""The DIVA baseline's generator (plugin genhancer_diva): a Stable Diffusion UNet with its DDPM
schedule, loaded from a checkpoint laid out as SD 2.1's (unet/, scheduler/, text_encoder/,
tokenizer/), kept frozen while the whole encoder trains with SGD; and the resolution each part
reads, a property of the components (the VAE at twice the encoder's size here, 512 vs 224 in DIVA)."""


import pytest
import torch
from helpers import TINY, genhancer, interrupted_then_resumed, run_recipe, tiny_preset, write_recipe

from genhancer_plugins import Condition, TargetSpec, load_plugins
from genhancer_plugins.testing import check_denoiser

TARGET = TargetSpec("continuous", (16, 8, 8))
DIVA_TINY = {
    **TINY,
    "name": "test-diva",
    "schedule": "end_to_end",
    "tokenizer": {"name": "vae", "preset": "tiny", "params": {"image_size": 64, "latent": "mean"}},
    "denoiser": {"name": "ddpm_unet", "preset": "tiny"},
    "conditioner": {"name": "diva", "params": {"local_tokens": 5}},
    "stage1": {"enabled": False},
    "stage2": {"steps": 6, "learning_rate": 1e-2, "optimizer": "sgd", "momentum": 0.9, "weight_decay": 0.0,
               "lr_decay": "cosine", "warmup_steps": 1, "encoder_tuning": "full", "mode": "all"},
}


def unet_params(**params):
    from genhancer_diva.params import DDPMUNetParams

    return DDPMUNetParams(**{**tiny_preset("genhancer_diva", "ddpm_unet"), **params})


def clip_tokenizer(directory):
    """A real CLIPTokenizer with a vocabulary of printable characters and no merges, saved as SD 2.1's tokenizer/ is."""
    from transformers import CLIPTokenizer

    chars = [chr(c) for c in range(33, 127)]
    vocab = {token: index for index, token in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=6)
    tokenizer.save_pretrained(directory)
    return tokenizer


@pytest.fixture(scope="module")
def stable_diffusion(tmp_path_factory):
    """A tiny random Stable Diffusion checkpoint: v-prediction PNDM scheduler config (SD's own class), CLIP text encoder."""
    from diffusers import PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    root = tmp_path_factory.mktemp("sd")
    torch.manual_seed(0)
    UNet2DConditionModel.from_config(unet_params().config).save_pretrained(root / "unet")
    PNDMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, prediction_type="v_prediction",
                  skip_prk_steps=True).save_pretrained(root / "scheduler")
    tokenizer = clip_tokenizer(root / "tokenizer")
    CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                 num_attention_heads=2, max_position_embeddings=8, bos_token_id=188, eos_token_id=189,
                                 pad_token_id=189)).save_pretrained(root / "text_encoder")
    return root


def build(**params):
    from genhancer_diva.unet import DDPMUNetDenoiser

    return DDPMUNetDenoiser(unet_params(**params), TARGET)


def test_the_unet_keeps_the_denoiser_contract():
    spec = load_plugins().get("denoiser", "ddpm_unet").spec
    assert "the loss's gradient reaches every condition input (what trains the encoder in stage 2)" in \
        check_denoiser(spec, preset="tiny", target=TARGET)


def test_a_saved_checkpoint_loads_with_its_schedule_prompt_and_outputs(stable_diffusion):
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    loaded = build(source=str(stable_diffusion), prompt="a photo of a .", noise_draws=1)
    assert loaded.pretrained_source() == str(stable_diffusion)
    assert loaded.prediction_type == "v_prediction"  # the checkpoint's scheduler decides, not the preset's epsilon
    saved = UNet2DConditionModel.from_pretrained(stable_diffusion / "unet")
    latents, t, context = torch.randn(2, *TARGET.shape), torch.tensor([10, 900]), torch.randn(2, 6, 32)
    assert torch.equal(loaded.unet(latents, t, encoder_hidden_states=context).sample, saved(latents, t, encoder_hidden_states=context).sample)
    tokenizer = CLIPTokenizer.from_pretrained(stable_diffusion / "tokenizer")
    ids = tokenizer(["a photo of a ."], padding="max_length", max_length=6, truncation=True, return_tensors="pt").input_ids
    expected = CLIPTextModel.from_pretrained(stable_diffusion / "text_encoder")(ids).last_hidden_state[0]
    assert torch.allclose(loaded.prompt, expected) and loaded.prompt.abs().sum() > 0

    # The loss regresses the velocity the schedule defines, on the condition tokens plus the prompt's embedding.
    tokens = torch.randn(2, 6, 32)
    torch.manual_seed(5)
    loss = loaded.loss(latents, Condition(tokens=tokens))
    torch.manual_seed(5)
    steps = torch.randint(0, 1000, (2,))
    noise = torch.randn_like(latents)
    noisy = loaded.schedule.add_noise(latents, noise, steps)
    prediction = saved(noisy, steps, encoder_hidden_states=tokens + expected).sample
    assert torch.allclose(loss, torch.nn.functional.mse_loss(prediction, loaded.schedule.get_velocity(latents, noise, steps)), atol=1e-6)
    with pytest.raises(ValueError, match="5 condition tokens cannot be added to the prompt's 6 .*local_tokens 5"):
        loaded.loss(latents, Condition(tokens=torch.randn(2, 5, 32)))


def test_a_checkpoint_of_another_architecture_is_refused_naming_the_field(stable_diffusion):
    config = {**unet_params().config, "cross_attention_dim": 48}
    with pytest.raises(ValueError, match=r"is not the architecture `config` describes: cross_attention_dim 32 \(params: 48\)"):
        build(source=str(stable_diffusion), config=config, prompt=None)


def test_the_encoder_and_the_vae_read_the_same_crop_each_at_its_own_size(tmp_path):
    from genhancer_plugins.recipe.schema import load_recipe
    from genhancer_plugins.training.model import build_model

    manager = load_plugins()
    model = build_model(load_recipe(write_recipe(tmp_path, DIVA_TINY), manager=manager), manager)
    assert model.image_sizes == {"encoder": 32, "tokenizer": 64, "data": 64}
    seen = {}

    def record(name):
        def hook(module, args):
            seen.setdefault(name, tuple(args[0].shape))
        return hook

    model.encoder.register_forward_pre_hook(record("encoder"))
    model.tokenizer.vae.encoder.register_forward_pre_hook(record("vae"))
    images = torch.rand(2, 3, 64, 64)
    model.targets(images)
    model(images)
    assert seen == {"encoder": (2, 3, 32, 32), "vae": (2, 3, 64, 64)}
    assert model.targets(images).shape == (2, *TARGET.shape)


@pytest.mark.slow
def test_diva_trains_the_whole_encoder_through_a_frozen_unet_with_sgd_and_resumes(tmp_path, stable_diffusion):
    from safetensors.torch import load_file

    recipe = write_recipe(tmp_path, {**DIVA_TINY, "denoiser": {"name": "ddpm_unet", "preset": "tiny",
                                                             "params": {"source": str(stable_diffusion), "prompt": "a photo of a ."}}})
    summary = interrupted_then_resumed(recipe, tmp_path / "run", stage="stage2", step=3)
    assert summary["completed"] and summary["stages"]["stage2"]["steps"] == 6
    saved = load_file(tmp_path / "run" / "stage2" / "final" / "model.safetensors")
    assert not any(key.startswith("denoiser.") for key in saved)  # frozen: the checkpoint holds what trained
    assert any(key.startswith("encoder.") and "lora" not in key for key in saved)  # the whole encoder, no adapters
    assert any(key.startswith("conditioner.") for key in saved)
    optimizer = load_file(tmp_path / "run" / "stage2" / "checkpoints" / "checkpoint-6" / "optimizer.safetensors")
    assert optimizer and all(key.endswith("/momentum_buffer") for key in optimizer)  # SGD's state, resumed exactly

    uninterrupted = run_recipe(recipe, tmp_path / "straight")
    straight = load_file(tmp_path / "straight" / "stage2" / "final" / "model.safetensors")
    assert all(torch.equal(saved[key], straight[key]) for key in saved)
    assert uninterrupted["completed"]


def test_validate_shows_what_the_diva_baseline_loads_trains_and_needs():
    result = genhancer("validate", "recipes/baselines/diva_clip_l14_224.yaml", "--recipe-only")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "ddpm_unet preset sd2-1-base  (genhancer 0.1.0; weights: stabilityai/stable-diffusion-2-1-base)" in out
    assert "denoiser        865.91 M" in out
    assert "image size 224 (tokenizer 512), denoiser target continuous [4, 64, 64]" in out
    assert "encoder vision tower (full fine-tuning) + projector (denoiser frozen); 4600 steps" in out
    assert "SGD momentum 0.9 weight decay 0" in out and "cosine to 0" in out
    assert "stage2 memory per GPU" in out


def test_learning_rate_warms_up_then_follows_a_cosine_to_zero():
    from genhancer_plugins.training.stage import learning_rate

    rates = [learning_rate(1.0, 2, step, total=6, decay="cosine") for step in range(6)]
    assert rates[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert rates[3:] == pytest.approx([0.5 * (1 + torch.cos(torch.tensor(torch.pi * k / 4)).item()) for k in (1, 2, 3)])
