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

    from genhancer_plugins import load_plugins
    from genhancer_plugins.training.model import load_trained_model

    trained = load_file(str(tmp_path / "run" / "stage2" / "final" / "model.safetensors"))
    assert not any(k.startswith("denoiser.transformer.") for k in trained)  # not copied: every build loads it from its source
    assert not (tmp_path / "run" / "stage2" / "final" / "denoiser").exists()
    original = load_file(str(tmp_path / "flux" / "diffusion_pytorch_model.safetensors"))
    reloaded = load_trained_model(tmp_path / "run", load_plugins())[0].denoiser.transformer.state_dict()
    assert all(torch.equal(reloaded[k], original[k]) for k in original)  # the pretrained transformer never moved
    projector = [k for k in trained if k.startswith("conditioner.")]
    assert projector  # what trained instead


def to_bfl(state):
    """A diffusers FluxTransformer2DModel state dict in Black Forest Labs' own key names (flux1-dev.safetensors):
    the inverse of the renames diffusers applies when it reads such a file."""
    out, s = {}, dict(state)

    def take(name):
        return s.pop(name)

    for bfl, ours in (("time_in", "time_text_embed.timestep_embedder"), ("vector_in", "time_text_embed.text_embedder"),
                      ("guidance_in", "time_text_embed.guidance_embedder")):
        for kind in ("weight", "bias"):
            out[f"{bfl}.in_layer.{kind}"] = take(f"{ours}.linear_1.{kind}")
            out[f"{bfl}.out_layer.{kind}"] = take(f"{ours}.linear_2.{kind}")
    for bfl, ours in (("txt_in", "context_embedder"), ("img_in", "x_embedder"), ("final_layer.linear", "proj_out")):
        for kind in ("weight", "bias"):
            out[f"{bfl}.{kind}"] = take(f"{ours}.{kind}")
    for kind in ("weight", "bias"):  # diffusers keeps (scale, shift), BFL (shift, scale)
        scale, shift = take(f"norm_out.linear.{kind}").chunk(2, dim=0)
        out[f"final_layer.adaLN_modulation.1.{kind}"] = torch.cat([shift, scale])
    doubles = sorted({int(k.split(".")[1]) for k in s if k.startswith("transformer_blocks.")})
    for i in doubles:
        p, b = f"transformer_blocks.{i}.", f"double_blocks.{i}."
        for kind in ("weight", "bias"):
            out[f"{b}img_mod.lin.{kind}"] = take(f"{p}norm1.linear.{kind}")
            out[f"{b}txt_mod.lin.{kind}"] = take(f"{p}norm1_context.linear.{kind}")
            out[f"{b}img_attn.qkv.{kind}"] = torch.cat([take(f"{p}attn.to_{x}.{kind}") for x in "qkv"])
            out[f"{b}txt_attn.qkv.{kind}"] = torch.cat([take(f"{p}attn.add_{x}_proj.{kind}") for x in "qkv"])
            out[f"{b}img_mlp.0.{kind}"] = take(f"{p}ff.net.0.proj.{kind}")
            out[f"{b}img_mlp.2.{kind}"] = take(f"{p}ff.net.2.{kind}")
            out[f"{b}txt_mlp.0.{kind}"] = take(f"{p}ff_context.net.0.proj.{kind}")
            out[f"{b}txt_mlp.2.{kind}"] = take(f"{p}ff_context.net.2.{kind}")
            out[f"{b}img_attn.proj.{kind}"] = take(f"{p}attn.to_out.0.{kind}")
            out[f"{b}txt_attn.proj.{kind}"] = take(f"{p}attn.to_add_out.{kind}")
        out[f"{b}img_attn.norm.query_norm.scale"] = take(f"{p}attn.norm_q.weight")
        out[f"{b}img_attn.norm.key_norm.scale"] = take(f"{p}attn.norm_k.weight")
        out[f"{b}txt_attn.norm.query_norm.scale"] = take(f"{p}attn.norm_added_q.weight")
        out[f"{b}txt_attn.norm.key_norm.scale"] = take(f"{p}attn.norm_added_k.weight")
    singles = sorted({int(k.split(".")[1]) for k in s if k.startswith("single_transformer_blocks.")})
    for i in singles:
        p, b = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
        for kind in ("weight", "bias"):
            out[f"{b}modulation.lin.{kind}"] = take(f"{p}norm.linear.{kind}")
            out[f"{b}linear1.{kind}"] = torch.cat([take(f"{p}attn.to_{x}.{kind}") for x in "qkv"] + [take(f"{p}proj_mlp.{kind}")])
            out[f"{b}linear2.{kind}"] = take(f"{p}proj_out.{kind}")
        out[f"{b}norm.query_norm.scale"] = take(f"{p}attn.norm_q.weight")
        out[f"{b}norm.key_norm.scale"] = take(f"{p}attn.norm_k.weight")
    assert not s, f"keys left unmapped: {sorted(s)[:5]}"
    return out


@pytest.mark.slow
def test_a_raw_bfl_file_loads_as_the_model_it_was_written_from(tmp_path):
    from safetensors.torch import save_file

    # diffusers reads BFL files at FLUX's own width (3072: 24 heads x 128), whatever the depth: one block of each kind
    wide = {"num_layers": 1, "num_single_layers": 1, "attention_head_dim": 128, "num_attention_heads": 24,
            "axes_dims_rope": [16, 56, 56], "joint_attention_dim": 32, "pooled_projection_dim": 24}
    torch.manual_seed(0)
    saved = denoiser(TargetSpec("continuous", (16, 4, 4)), **wide)
    save_file({k: v.contiguous() for k, v in to_bfl(saved.transformer.state_dict()).items()}, str(tmp_path / "flux1-dev.safetensors"))
    torch.manual_seed(1)
    loaded = denoiser(TargetSpec("continuous", (16, 4, 4)), source=str(tmp_path / "flux1-dev.safetensors"), **wide)
    generator = torch.Generator().manual_seed(2)
    noisy = torch.randn(1, 4, 64, generator=generator)
    given = Condition(pooled=torch.randn(1, 24, generator=generator), tokens=torch.randn(1, 1, 32, generator=generator))
    with torch.no_grad():
        assert torch.allclose(loaded.velocity(noisy, torch.tensor([0.4]), given), saved.velocity(noisy, torch.tensor([0.4]), given),
                              atol=1e-5)
    with pytest.raises(ValueError, match="only .safetensors transformer files are read"):
        (tmp_path / "flux1-dev.ckpt").write_bytes(b"")
        denoiser(TargetSpec("continuous", (16, 4, 4)), source=str(tmp_path / "flux1-dev.ckpt"), **wide)
