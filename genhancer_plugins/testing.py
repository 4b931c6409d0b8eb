"""The plugin author's test kit (public): a tiny recipe, a helper that runs it in-process,
and contract checks a third party calls from its own test suite.

    from genhancer_plugins.testing import check_denoiser, run_recipe, tiny_recipe

    def test_my_denoiser_keeps_the_contract():
        check_denoiser(my_plugin.SPEC, preset="small")

    def test_a_recipe_trains_and_exports_with_it(tmp_path):
        recipe = tiny_recipe(tmp_path, denoiser={"name": "my_denoiser", "preset": "small"})
        summary = run_recipe(recipe, tmp_path / "run")
        assert summary["completed"]

Everything runs on a CPU in seconds, offline: the tiny recipe uses the built-in
components' ``tiny`` presets (random weights, synthetic images).
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

#: A recipe that trains both stages and exports in about ten seconds on one CPU core.
TINY_RECIPE: dict[str, Any] = {
    "name": "test-tiny",
    "encoder": {"name": "clip", "preset": "tiny"},
    "tokenizer": {"name": "vae", "preset": "tiny"},
    "denoiser": {"name": "rectified_flow", "preset": "tiny"},
    "conditioner": {"name": "cls"},
    "data": {"name": "synthetic", "params": {"num_images": 64}, "batch_size": 8},
    "train": {"seed": 0, "mixed_precision": "no"},
    "stage1": {"steps": 6, "learning_rate": 1e-3},
    "stage2": {"steps": 4, "learning_rate": 1e-3},
}


def write_recipe(directory: str | Path, data: Mapping[str, Any], name: str = "recipe.yaml") -> Path:
    """Write ``data`` as a recipe file in ``directory``; returns its path."""
    import yaml

    path = Path(directory) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(data), sort_keys=False))
    return path


def tiny_recipe(directory: str | Path, name: str = "recipe.yaml", **sections: Any) -> Path:
    """:data:`TINY_RECIPE` with whole sections replaced (``denoiser={"name": "mine"}``), written to ``directory``."""
    return write_recipe(directory, {**copy.deepcopy(TINY_RECIPE), **sections}, name)


def run_recipe(recipe: str | Path, output_dir: str | Path, overrides: Iterable[str] = (), plugins: Iterable[tuple[Any, str]] = (),
               **options: Any) -> dict[str, Any]:
    """Run a recipe in this process as ``genhancer run`` would (installed plugins, plus the
    in-process ``plugins`` as ``(object, name)``); returns what run.json holds. ``options``:
    ``resume``, ``overwrite``."""
    from genhancer_plugins.recipe.schema import load_recipe
    from genhancer_plugins.registry.manager import load_plugins
    from genhancer_plugins.training.engine import Run

    manager = load_plugins(extra=plugins)
    loaded = load_recipe(recipe, list(overrides), manager)
    return Run(loaded, manager, output_dir, show_progress=False, **options).execute()


def random_condition(spec: Any, batch: int = 2, tokens: int = 3, requires_grad: bool = False) -> Any:
    """A :class:`~genhancer_plugins.Condition` of random tensors in the shapes ``spec`` (a
    :class:`~genhancer_plugins.ConditionSpec`) accepts."""
    import torch

    from genhancer_plugins.interfaces import Condition

    pooled = torch.randn(batch, spec.pooled_dim, requires_grad=requires_grad) if spec.pooled_dim else None
    token_tensor = torch.randn(batch, tokens, spec.token_dim, requires_grad=requires_grad) if spec.token_dim else None
    return Condition(pooled=pooled, tokens=token_tensor)


def random_targets(target: Any, batch: int = 2) -> Any:
    """Targets of ``target`` (a :class:`~genhancer_plugins.TargetSpec`): latents, or code indices."""
    import torch

    if target.kind == "discrete":
        return torch.randint(0, target.vocab_size, (batch, *target.shape))
    return torch.randn(batch, *target.shape)


def _params(spec: Any, preset: str | None, params: Mapping[str, Any] | None) -> Any:
    """The validated params of ``preset`` (default: the spec's default preset) with ``params`` over them."""
    if preset is not None and preset not in spec.presets:
        raise AssertionError(f"{spec.name}: no preset {preset!r}; presets: {', '.join(spec.presets) or 'none'}")
    values = dict(spec.presets.get(preset or spec.default_preset or "", {}))
    values.update(params or {})
    return spec.params.model_validate(values)


def check_denoiser(spec: Any, preset: str | None = None, params: Mapping[str, Any] | None = None, target: Any = None,
                   batch: int = 2, sampling_steps: int = 2) -> list[str]:
    """Check a denoiser component against the contract the engine relies on; returns the checks
    that passed, and raises ``AssertionError`` naming the first that did not.

    ``spec``: the :class:`~genhancer_plugins.ComponentSpec` the plugin registers; ``target``: the
    :class:`~genhancer_plugins.TargetSpec` to build it for (default: continuous latents [4, 4, 4]).
    Checked: construction on the meta device (no memory, no download), the condition spec, a finite
    scalar loss whose gradient reaches every condition input and the parameters, determinism of
    loss and sample under a seed, the sample's shape, and the save/load round trip of its own layout."""
    import torch

    from genhancer_plugins.interfaces import ConditionSpec, Denoiser, TargetSpec
    from genhancer_plugins.registry.components import OfflineUnknown

    target = target or TargetSpec(kind="continuous", shape=(4, 4, 4))
    values = _params(spec, preset, params)
    passed = []

    def check(condition: bool, what: str) -> None:
        if not condition:
            raise AssertionError(f"denoiser {spec.name!r}: {what}")
        passed.append(what)

    check(spec.kind == "denoiser", "is registered as kind 'denoiser'")
    try:
        shapes = spec.factory(values, target=target, meta=True)
        check(all(p.device.type == "meta" for p in shapes.parameters()), "meta=True builds on the meta device (construction_device)")
    except OfflineUnknown:
        passed.append("meta=True: architecture unknown offline (OfflineUnknown)")
    torch.manual_seed(0)
    denoiser = spec.factory(values, target=target, meta=False)
    check(isinstance(denoiser, Denoiser), "the factory returns a genhancer_plugins.Denoiser")
    condition_spec = denoiser.condition_spec
    check(isinstance(condition_spec, ConditionSpec) and bool(condition_spec.pooled_dim or condition_spec.token_dim),
          "condition_spec accepts a pooled vector, condition tokens, or both")
    targets = random_targets(target, batch)
    condition = random_condition(condition_spec, batch, requires_grad=True)
    denoiser.train()
    torch.manual_seed(1)
    loss = denoiser.loss(targets, condition)
    check(loss.dim() == 0 and bool(torch.isfinite(loss)), "loss(targets, condition) is a finite scalar")
    loss.backward()
    inputs = [t for t in (condition.pooled, condition.tokens) if t is not None]
    check(all(t.grad is not None and bool(t.grad.abs().sum() > 0) for t in inputs),
          "the loss's gradient reaches every condition input (what trains the encoder in stage 2)")
    check(any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in denoiser.parameters()),
          "the loss's gradient reaches the denoiser's parameters")
    fixed = random_condition(condition_spec, batch)
    torch.manual_seed(1)
    again = denoiser.loss(targets, fixed)
    torch.manual_seed(1)
    check(bool(torch.equal(again, denoiser.loss(targets, fixed))), "the loss is deterministic under a seed (exact resume needs it)")
    denoiser.eval()
    with torch.no_grad():
        torch.manual_seed(2)
        sample = denoiser.sample(fixed, steps=sampling_steps)
        torch.manual_seed(2)
        repeat = denoiser.sample(fixed, steps=sampling_steps)
    check(tuple(sample.shape) == (batch, *target.shape), f"sample(condition) has the target shape [B, {', '.join(map(str, target.shape))}]")
    check(bool(torch.equal(sample, repeat)), "sample is deterministic under a seed")
    with tempfile.TemporaryDirectory() as folder:
        denoiser.save_pretrained(Path(folder) / "denoiser")
        written = sorted(p.name for p in (Path(folder) / "denoiser").rglob("*") if p.is_file())
        check(bool(written), "save_pretrained writes its own layout")
        check(not any(name.endswith((".bin", ".pt", ".pth", ".pkl")) for name in written), "nothing it saves is a pickle")
        reload = getattr(type(denoiser), "from_pretrained", None)
        if reload is not None:
            reread = reload(Path(folder) / "denoiser")
            same = all(torch.equal(a, b) for a, b in zip(denoiser.state_dict().values(), reread.state_dict().values()))
            check(same, "from_pretrained reads back what save_pretrained wrote")
    return passed


def check_components(plugin: Any) -> list[Any]:
    """Check what a plugin module (or object) registers: every entry is a ComponentSpec of a
    known kind, with a unique name per kind, and every preset validates against its params.
    Returns the specs."""
    from genhancer_plugins.registry.components import COMPONENT_KINDS, ComponentSpec

    specs = list(plugin.genhancer_components() or [])
    seen = set()
    for spec in specs:
        if not isinstance(spec, ComponentSpec):
            raise AssertionError(f"genhancer_components returned {spec!r}, not a ComponentSpec")
        if spec.kind not in COMPONENT_KINDS:
            raise AssertionError(f"{spec.name}: kind {spec.kind!r} is none of {', '.join(COMPONENT_KINDS)}")
        if (spec.kind, spec.name) in seen:
            raise AssertionError(f"{spec.kind} {spec.name!r} is registered twice")
        seen.add((spec.kind, spec.name))
        for preset, values in spec.presets.items():
            try:
                spec.params.model_validate(dict(values))
            except Exception as exc:
                raise AssertionError(f"{spec.kind} {spec.name!r}: preset {preset!r} does not validate: {exc}") from None
        if spec.default_preset is not None and spec.default_preset not in spec.presets:
            raise AssertionError(f"{spec.kind} {spec.name!r}: default_preset {spec.default_preset!r} is not a preset")
    return specs
