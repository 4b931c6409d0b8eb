
import pytest
from helpers import ROOT, TINY, write_recipe

from genhancer_plugins.commands.plan import make_plan
from genhancer_plugins.recipe.build import resolve_components
from genhancer_plugins.recipe.schema import RecipeError, load_recipe
from genhancer_plugins.registry.manager import load_plugins


@pytest.fixture(scope="module")
def manager():
    return load_plugins()


def test_unknown_key_names_dotted_path_and_file(tmp_path):
    path = write_recipe(tmp_path, {**TINY, "stage1": {"steps": 3, "learnig_rate": 1e-3}})
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert f"{path.resolve()}: stage1.learnig_rate: unknown field" in str(err.value)


def test_bad_type_is_reported(tmp_path):
    path = write_recipe(tmp_path, {**TINY, "data": {**TINY["data"], "batch_size": "many"}})
    with pytest.raises(RecipeError, match=r"data\.batch_size: Input should be a valid integer"):
        load_recipe(path)


def test_missing_file_and_missing_base(tmp_path):
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")
    path = write_recipe(tmp_path, {"extends": "base.yaml", "name": "x"})
    with pytest.raises(RecipeError, match=r"extends: base recipe .*base.yaml not found"):
        load_recipe(path)


def test_extends_merges_and_errors_point_at_the_file_that_set_the_field(tmp_path):
    base = write_recipe(tmp_path, {**TINY, "stage2": {"steps": 4, "mode": "sometimes"}}, "base.yaml")
    child = write_recipe(tmp_path, {"extends": "base.yaml", "name": "child", "stage1": {"steps": 9}}, "child.yaml")
    with pytest.raises(RecipeError) as err:
        load_recipe(child)
    assert f"{base.resolve()}: stage2.mode" in str(err.value)
    loaded = load_recipe(child, ["stage2.mode=only"])
    assert loaded.recipe.name == "child"
    assert loaded.recipe.stage1.steps == 9 and loaded.recipe.stage1.learning_rate == 1e-3  # merged key by key
    assert loaded.recipe.stage2.mode == "only" and loaded.origin("stage2.mode") == "--set"
    assert loaded.files == [child.resolve(), base.resolve()]


def test_set_overrides_parse_yaml_values(tiny_recipe):
    loaded = load_recipe(tiny_recipe, ["stage1.steps=11", "train.report_to=[tensorboard]", "denoiser.params.guidance=2.5"])
    assert loaded.recipe.stage1.steps == 11
    assert loaded.recipe.train.report_to == ["tensorboard"]
    assert loaded.recipe.denoiser.params == {"guidance": 2.5}
    with pytest.raises(RecipeError, match="expected KEY=VALUE"):
        load_recipe(tiny_recipe, ["stage1.steps"])
    with pytest.raises(RecipeError, match="stage1.steps: Input should be greater than 0"):
        load_recipe(tiny_recipe, ["stage1.steps=0"])


def test_naming_another_component_drops_the_old_ones_settings(tmp_path):
    write_recipe(tmp_path, {**TINY, "denoiser": {"name": "rectified_flow", "preset": "tiny", "params": {"guidance": 2.0}}}, "base.yaml")
    child = write_recipe(tmp_path, {"extends": "base.yaml", "denoiser": {"name": "perceiver"}}, "child.yaml")
    assert load_recipe(child).recipe.denoiser.model_dump() == {"name": "perceiver", "preset": None, "params": {}}
    same = write_recipe(tmp_path, {"extends": "base.yaml", "denoiser": {"name": "rectified_flow", "params": {"guidance": 3.0}}}, "same.yaml")
    assert load_recipe(same).recipe.denoiser.preset == "tiny"  # same component: merged key by key
    loaded = load_recipe(tmp_path / "base.yaml", ["denoiser.name=perceiver"])
    assert loaded.recipe.denoiser.params == {} and loaded.recipe.denoiser.preset is None
    kept = load_recipe(tmp_path / "base.yaml", ["data.name=synthetic"])
    assert kept.recipe.data.params == {"num_images": 64}


def test_circular_extends(tmp_path):
    write_recipe(tmp_path, {"extends": "b.yaml"}, "a.yaml")
    write_recipe(tmp_path, {"extends": "a.yaml"}, "b.yaml")
    with pytest.raises(RecipeError, match="circular"):
        load_recipe(tmp_path / "a.yaml")


def test_component_params_are_validated_with_their_own_model(tmp_path, manager):
    path = write_recipe(tmp_path, {**TINY, "denoiser": {"name": "rectified_flow", "preset": "tiny", "params": {"num_layer": 3}}})
    with pytest.raises(RecipeError) as err:
        resolve_components(load_recipe(path), manager)
    assert f"{path.resolve()}: denoiser.params.num_layer: unknown field" in str(err.value)
    path = write_recipe(tmp_path, {**TINY, "denoiser": {"name": "rectified_flow", "params": {"axes_dims_rope": [4, 4, 4]}}})
    with pytest.raises(RecipeError, match="must equal attention_head_dim"):
        resolve_components(load_recipe(path), manager)


def test_unknown_component_and_preset_list_what_exists(tmp_path, manager):
    path = write_recipe(tmp_path, {**TINY, "denoiser": {"name": "diffusion_xl"}})
    with pytest.raises(RecipeError, match=r"denoiser.name: no denoiser named 'diffusion_xl'.*rectified_flow"):
        resolve_components(load_recipe(path), manager)
    path = write_recipe(tmp_path, {**TINY, "encoder": {"name": "clip", "preset": "clip-giant"}})
    with pytest.raises(RecipeError, match=r"encoder.preset: encoder 'clip' has no preset 'clip-giant'.*openai-clip-vit-l14-224"):
        resolve_components(load_recipe(path), manager)


def test_preset_values_are_overridden_field_by_field(tmp_path, manager):
    path = write_recipe(tmp_path, {**TINY, "denoiser": {"name": "rectified_flow", "preset": "flux-n3", "params": {"guidance": 1.0}}})
    params = resolve_components(load_recipe(path), manager)["denoiser"].params
    assert (params.num_layers, params.num_single_layers, params.guidance) == (3, 6, 1.0)


CONTINUOUS = [p for p in sorted((ROOT / "recipes" / "paper").glob("*.yaml")) if "base" not in p.stem and "discrete" not in p.stem]


def test_every_paper_backbone_has_a_continuous_recipe():
    assert [p.stem for p in CONTINUOUS] == ["clip_l14_224", "clip_l14_336", "metaclip_h14", "metaclip_l14", "siglip_so400m_224", "siglip_so400m_384"]


@pytest.mark.parametrize("recipe", CONTINUOUS, ids=lambda p: p.stem)
def test_paper_recipes_validate_offline(recipe, manager):
    plan = make_plan(load_recipe(recipe), manager, None)
    assert plan["parameters"]["denoiser"] == 1_310_154_816
    assert plan["components"]["tokenizer"]["params"]["source"] == "black-forest-labs/FLUX.1-dev"
    assert plan["stages"]["stage1"]["learning_rate"] == 1e-4 and plan["stages"]["stage2"]["learning_rate"] == 1e-5
    assert "LoRA r16/alpha 16" in plan["stages"]["stage2"]["what"]
    expected_size = 336 if "336" in recipe.stem else 384 if "384" in recipe.stem else 224
    assert plan["image_size"] == expected_size


def test_plan_counts_trainable_parameters_per_stage(tiny_recipe, manager):
    plan = make_plan(load_recipe(tiny_recipe), manager, None)
    sizes = plan["parameters"]
    head = sizes["denoiser"] + sizes["projector"]
    assert plan["stages"]["stage1"]["trainable"] == head
    only = make_plan(load_recipe(tiny_recipe, ["stage2.mode=only"]), manager, None)
    lora = only["stages"]["stage2"]["trainable"]
    assert 0 < lora < sizes["encoder_vision"]
    assert plan["stages"]["stage2"]["trainable"] == lora + head


def test_the_readme_recipe_example_is_a_valid_recipe(tmp_path):
    import yaml
    from helpers import ROOT

    block = (ROOT / "README.md").read_text().split("```yaml\n", 1)[1].split("```", 1)[0]
    data = yaml.safe_load(block)
    data.pop("extends")  # the example names its base; every field it shows must exist and validate
    path = tmp_path / "example.yaml"
    path.write_text(yaml.safe_dump(data))
    recipe = load_recipe(path).recipe
    assert recipe.stage2.lora.bias == "lora_only" and recipe.export.dtype == "float32" and not recipe.cache.enabled
