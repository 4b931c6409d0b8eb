"""From a validated recipe to live components, and to an offline plan."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genhancer_plugins.recipe.schema import ComponentRef, LoadedRecipe
from genhancer_plugins.registry.components import Params
from genhancer_plugins.registry.manager import ComponentNotFound, PluginManager, RegisteredComponent
from genhancer_plugins.util.errors import RecipeError, RunError, first_line

SECTIONS = {"encoder": "encoder", "conditioner": "conditioner", "tokenizer": "tokenizer", "denoiser": "denoiser", "data": "dataset"}


@dataclass
class ResolvedComponent:
    section: str  #: recipe section (``data`` for the dataset)
    kind: str
    ref: ComponentRef
    registered: RegisteredComponent
    params: Params

    @property
    def preset(self) -> str | None:
        return self.ref.preset or self.registered.spec.default_preset

    def build(self, **context: Any) -> Any:
        return self.registered.spec.factory(self.params, **context)


def resolve_components(loaded: LoadedRecipe, manager: PluginManager) -> dict[str, ResolvedComponent]:
    """Look up every component the recipe names and validate its parameters."""
    from genhancer_plugins.recipe.schema import resolve_params

    resolved = {}
    for section, kind in SECTIONS.items():
        ref: ComponentRef = getattr(loaded.recipe, section)
        try:
            registered = manager.get(kind, ref.name)
        except ComponentNotFound as exc:
            raise loaded.error(f"{section}.name", str(exc)) from None
        params = resolve_params(loaded, section, ref, registered.spec)
        resolved[section] = ResolvedComponent(section, kind, ref, registered, params)
    return resolved


def cache_root() -> Path:
    """Where phases cache their results: $GENHANCER_CACHE or ~/.cache/genhancer."""
    return Path(os.environ.get("GENHANCER_CACHE", Path.home() / ".cache" / "genhancer"))


def resolve_pretrainer(loaded: LoadedRecipe, manager: PluginManager) -> ResolvedComponent | None:
    from genhancer_plugins.recipe.schema import resolve_params

    ref = loaded.recipe.pretrain
    if ref is None:
        return None
    try:
        registered = manager.get("pretrainer", ref.name)
    except ComponentNotFound as exc:
        raise loaded.error("pretrain.name", str(exc)) from None
    return ResolvedComponent("pretrain", "pretrainer", ref, registered, resolve_params(loaded, "pretrain", ref, registered.spec))


def plan_pretrainer(loaded: LoadedRecipe, manager: PluginManager, components: dict[str, ResolvedComponent]) -> ResolvedComponent | None:
    """Give the encoder the architecture the recipe's pretrainer will produce, without
    training it (plans, and benches with random weights); returns the pretrainer, if any."""
    pretrainer = resolve_pretrainer(loaded, manager)
    if pretrainer is not None:
        apply_pretrainer(components, pretrainer.build(seed=loaded.recipe.train.seed).planned_encoder_params())
    return pretrainer


def apply_pretrainer(components: dict[str, ResolvedComponent], overrides: dict[str, Any]) -> None:
    """Merge a pretrainer's answer into the encoder's parameters (validated again)."""
    encoder = components["encoder"]
    values = encoder.params.model_dump()
    values.update(overrides)
    encoder.params = encoder.registered.spec.params.model_validate(values)


def resolve_evaluators(loaded: LoadedRecipe, manager: PluginManager, section: str = "eval", refs: list[ComponentRef] | None = None,
                       scores: str = "encoder") -> list[ResolvedComponent]:
    """Evaluator entries of a recipe list (``eval:``, or a phase's own, e.g. ``llava.eval``),
    looked up and validated; each must score ``scores`` models."""
    from genhancer_plugins.recipe.schema import resolve_params

    refs = loaded.recipe.eval if refs is None else refs
    resolved = []
    for index, ref in enumerate(refs):
        path = f"{section}.{index}"
        try:
            registered = manager.get("evaluator", ref.name)
        except ComponentNotFound as exc:
            raise loaded.error(f"{path}.name", str(exc)) from None
        if registered.spec.scores != scores:
            raise loaded.error(f"{path}.name", f"{ref.name} scores {registered.spec.scores} models; `{section}` lists evaluators of "
                                               f"{scores} models (encoder evaluators go under `eval:`, the others under their phase's `eval:`)")
        resolved.append(ResolvedComponent(path, "evaluator", ref, registered, resolve_params(loaded, path, ref, registered.spec)))
    return resolved


def image_sizes(encoder: Any, tokenizer: Any) -> dict[str, int]:
    """Pixels per side each part reads: the encoder's, the tokenizer's (its ``input_size``, default
    the encoder's) and the data's, the larger of the two: one crop, resized for the other part."""
    sizes = {"encoder": int(encoder.spec.image_size), "tokenizer": int(tokenizer.input_size or encoder.spec.image_size)}
    return sizes | {"data": max(sizes.values())}


def build_models(components: dict[str, ResolvedComponent], meta: bool = False) -> dict[str, Any]:
    """Encoder, tokenizer, denoiser and conditioner, wired by their specs. Components that
    do not fit together (a denoiser that needs other targets than the tokenizer makes, say)
    are a :class:`RecipeError` naming both, not a traceback."""
    encoder = _build(components, "encoder", meta=meta)
    tokenizer = _build(components, "tokenizer", meta=meta)
    try:
        target = tokenizer.target_spec(image_sizes(encoder, tokenizer)["tokenizer"])
    except ValueError as exc:
        raise _mismatch(components, "tokenizer", "encoder", exc) from None
    denoiser = _build(components, "denoiser", "tokenizer", target=target, meta=meta)
    conditioner = _build(components, "conditioner", "denoiser", encoder=encoder.spec, condition=denoiser.condition_spec, meta=meta)
    return {"encoder": encoder, "tokenizer": tokenizer, "denoiser": denoiser, "conditioner": conditioner, "target": target,
            "image_sizes": image_sizes(encoder, tokenizer)}


def _build(components: dict[str, ResolvedComponent], section: str, depends_on: str | None = None, **context: Any) -> Any:
    try:
        return components[section].build(**context)
    except RunError as exc:  # e.g. a model that did not load (``loading_from``): which component
        raise RunError(f"{section} ({components[section].ref.name}): {exc}") from None
    except OSError as exc:  # a model that will not load (no network, a hub id not in the cache): which component, and why
        raise RunError(f"{section} ({components[section].ref.name}) did not load: {first_line(exc)}") from None
    except (ValueError, TypeError) as exc:
        if depends_on is None:
            raise RecipeError(f"{section} ({components[section].ref.name}): {exc}") from None
        raise _mismatch(components, section, depends_on, exc) from None


def _mismatch(components: dict[str, ResolvedComponent], section: str, other: str, exc: Exception) -> RecipeError:
    return RecipeError(f"{section} {components[section].ref.name!r} does not fit {other} {components[other].ref.name!r}: {exc} "
                       f"(set both sections to components made for each other)")
