"""A pretrained FLUX transformer as the denoiser (the paper's Table 7): loaded from a
diffusers directory, checked against the params, and kept frozen when the recipe says so."""

import pytest
import torch
from helpers import TINY, run_recipe, tiny_preset, write_recipe

from genhancer_plugins import Condition, TargetSpec

TARGET = TargetSpec("continuous", (4, 8, 8))


def denoiser(target=TARGET, **params):
    from genhancer_flux.params import RectifiedFlowParams
    from genhancer_flux.rectified_flow import RectifiedFlowDenoiser

    return RectifiedFlowDenoiser(RectifiedFlowParams(**{**tiny_preset("genhancer_flux", "rectified_flow"), **params}), target)


def condition(batch=2):
    generator = torch.Generator().manual_seed(1)
    spec = denoiser().condition_spec
    return Condition(pooled=torch.randn(batch, spec.pooled_dim, generator=generator),
                     tokens=torch.randn(batch, 1, spec.token_dim, generator=generator))


def velocity(model):
    generator = torch.Generator().manual_seed(2)
    noisy = torch.randn(2, 16, 16, generator=generator)
    return model.velocity(noisy, torch.tensor([0.3, 0.8]), condition())


@pytest.mark.parametrize("layout", ["directory", "subfolder"])
def test_a_saved_transformer_loads_and_predicts_as_the_saved_one(tmp_path, layout):
    torch.manual_seed(0)
    saved = denoiser()
    where = tmp_path / "flux" if layout == "directory" else tmp_path / "flux" / "transformer"
    saved.save_pretrained(where)  # diffusers' layout: FluxTransformer2DModel.from_pretrained opens it
    torch.manual_seed(123)  # another initialisation: what loads must be the saved weights
    loaded = denoiser(source=str(tmp_path / "flux"))
    assert torch.equal(velocity(loaded), velocity(saved))


def test_a_checkpoint_that_is_not_the_params_architecture_is_refused_naming_the_fields(tmp_path):
    denoiser().save_pretrained(tmp_path / "flux")
    with pytest.raises(ValueError, match=r"is not the architecture the params describe: num_single_layers 2 \(params: 3\)"):
        denoiser(source=str(tmp_path / "flux"), num_single_layers=3)


def test_a_frozen_transformer_gets_no_gradient_and_only_the_projector_trains(tmp_path):
    from genhancer_plugins.training.stage import train_denoiser

    model = denoiser(train_network=False)
    train_denoiser(model)
    assert not any(p.requires_grad for p in model.transformer.parameters())
    given = condition()
    given.pooled.requires_grad_(True)  # as the projector's output: the gradient flows back through the frozen network
    model.loss(torch.randn(2, *TARGET.shape), given).backward()
    assert all(p.grad is None for p in model.transformer.parameters()) and given.pooled.grad.abs().sum() > 0

    torch.manual_seed(0)
    denoiser(TargetSpec("continuous", (16, 4, 4))).save_pretrained(tmp_path / "flux")  # the tiny VAE's 16 latent channels
    recipe = write_recipe(tmp_path, {**TINY, "denoiser": {"name": "rectified_flow", "preset": "tiny",
                                                          "params": {"source": str(tmp_path / "flux"), "train_network": False}},
                                     "stage1": {"steps": 3, "learning_rate": 1e-2}, "stage2": {"steps": 2, "learning_rate": 1e-3},
                                     "preview": {"images": 0}})
    run_recipe(recipe, tmp_path / "run")
    from safetensors.torch import load_file

    trained = load_file(str(tmp_path / "run" / "stage2" / "final" / "model.safetensors"))
    original = load_file(str(tmp_path / "flux" / "diffusion_pytorch_model.safetensors"))
    kept = {k.removeprefix("denoiser.transformer."): v for k, v in trained.items() if k.startswith("denoiser.transformer.")}
    assert kept and all(torch.equal(kept[k], original[k]) for k in original)  # the pretrained transformer never moved
    projector = [k for k in trained if k.startswith("conditioner.")]
    assert projector  # what trained instead
