"""From a validated recipe to live components, and to an offline plan."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .components import OfflineUnknown, Params
from .manager import ComponentNotFound, PluginManager, RegisteredComponent
from .recipe import ComponentRef, LoadedRecipe

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
    from .recipe import resolve_params

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
    from .recipe import resolve_params

    ref = loaded.recipe.pretrain
    if ref is None:
        return None
    try:
        registered = manager.get("pretrainer", ref.name)
    except ComponentNotFound as exc:
        raise loaded.error("pretrain.name", str(exc)) from None
    return ResolvedComponent("pretrain", "pretrainer", ref, registered, resolve_params(loaded, "pretrain", ref, registered.spec))


def apply_pretrainer(components: dict[str, ResolvedComponent], overrides: dict[str, Any]) -> None:
    """Merge a pretrainer's answer into the encoder's parameters (validated again)."""
    encoder = components["encoder"]
    values = encoder.params.model_dump()
    values.update(overrides)
    encoder.params = encoder.registered.spec.params.model_validate(values)


def resolve_evaluators(loaded: LoadedRecipe, manager: PluginManager, prefix: str = "eval") -> list[ResolvedComponent]:
    """The recipe's ``eval:`` (or ``llava.eval:``) entries, looked up and validated."""
    from .recipe import resolve_params

    refs = loaded.recipe.eval if prefix == "eval" else (loaded.recipe.llava.eval if loaded.recipe.llava else [])
    resolved = []
    for index, ref in enumerate(refs):
        section = f"{prefix}.{index}"
        try:
            registered = manager.get("evaluator", ref.name)
        except ComponentNotFound as exc:
            raise loaded.error(f"{section}.name", str(exc)) from None
        wanted = "encoder" if prefix == "eval" else "mllm"
        if registered.spec.scores != wanted:
            place = "llava.eval" if registered.spec.scores == "mllm" else "eval"
            raise loaded.error(f"{section}.name", f"{ref.name} scores {'LLaVA models' if place == 'llava.eval' else 'encoders'}: list it under `{place}:`")
        resolved.append(ResolvedComponent(section, "evaluator", ref, registered, resolve_params(loaded, section, ref, registered.spec)))
    return resolved


def build_models(components: dict[str, ResolvedComponent], meta: bool = False) -> dict[str, Any]:
    """Encoder, tokenizer, denoiser and conditioner, wired by their specs."""
    encoder = components["encoder"].build(meta=meta)
    tokenizer = components["tokenizer"].build(meta=meta)
    target = tokenizer.target_spec(encoder.spec.image_size)
    denoiser = components["denoiser"].build(target=target, meta=meta)
    conditioner = components["conditioner"].build(encoder=encoder.spec, condition=denoiser.condition_spec, meta=meta)
    return {"encoder": encoder, "tokenizer": tokenizer, "denoiser": denoiser, "conditioner": conditioner, "target": target}


def lr_schedule_name(warmup_steps: int) -> str:
    return "constant" if warmup_steps == 0 else f"linear warm-up over {warmup_steps} steps, then constant"


def lora_parameter_count(encoder: Any, rank: int) -> int:
    """Parameters LoRA adds: rank * (in + out) per adapted linear layer."""
    total = 0
    for name in encoder.lora_target_modules():
        layer = encoder.get_submodule(name)
        total += rank * (layer.in_features + layer.out_features)
    return total


def make_plan(loaded: LoadedRecipe, manager: PluginManager, output_dir: str | None) -> dict[str, Any]:
    """The resolved plan that ``genhancer validate`` prints: nothing trains or downloads."""
    from .interfaces import count_parameters

    recipe = loaded.recipe
    components = resolve_components(loaded, manager)
    plan: dict[str, Any] = {
        "recipe": str(loaded.files[0]),
        "extends": [str(p) for p in loaded.files[1:]],
        "name": recipe.name,
        "schedule": recipe.schedule,
        "output_dir": output_dir or recipe.output_dir,
        "components": {},
    }
    for section, comp in components.items():
        plan["components"][section] = {
            "kind": comp.kind,
            "name": comp.ref.name,
            "preset": comp.preset,
            "provided_by": f"{comp.registered.source.distribution} {comp.registered.source.version}",
            "params": comp.params.model_dump(mode="json"),
        }
    pretrainer = resolve_pretrainer(loaded, manager)
    if pretrainer is not None:
        phase = pretrainer.build(seed=recipe.train.seed)
        apply_pretrainer(components, phase.planned_encoder_params())
        plan["pretrain"] = {"name": pretrainer.ref.name, "params": pretrainer.params.model_dump(mode="json"),
                            "cache": str(cache_root())}
    try:
        models = build_models(components, meta=True)
    except OfflineUnknown as exc:
        plan["parameters"] = f"unknown offline: {exc}"
        models = None
    stages: dict[str, Any] = {}
    if models is not None:
        encoder, denoiser, conditioner = models["encoder"], models["denoiser"], models["conditioner"]
        head = count_parameters(denoiser) + count_parameters(conditioner)
        sizes = {
            "encoder": count_parameters(encoder),
            "encoder_vision": sum(p.numel() for p in encoder.vision_parameters()),
            "tokenizer": count_parameters(models["tokenizer"]),
            "denoiser": count_parameters(denoiser),
            "projector": count_parameters(conditioner),
        }
        plan["parameters"] = sizes
        plan["image_size"] = encoder.spec.image_size
        plan["target"] = {"kind": models["target"].kind, "shape": list(models["target"].shape)}
        if "stage1" in recipe.active_stages():
            stages["stage1"] = {"trainable": head, "what": "projector + denoiser (encoder frozen)"}
        if recipe.stage2.enabled:
            s2 = recipe.stage2
            if s2.encoder_tuning == "lora":
                from .lora import lora_bias_count

                adapters = lora_parameter_count(encoder, s2.lora.rank)
                biases = lora_bias_count(encoder, s2.lora.bias)
                enc = adapters + biases
                what = (f"encoder LoRA r{s2.lora.rank}/alpha {s2.lora.alpha:g}/dropout {s2.lora.dropout:g} on "
                        f"{len(encoder.lora_target_modules())} linear layers ({adapters:,}) + bias {s2.lora.bias} ({biases:,})")
            else:
                enc = sizes["encoder_vision"]
                what = "encoder vision tower (full fine-tuning)"
            trainable = enc + (head if s2.mode == "all" else 0)
            what += " + projector + denoiser" if s2.mode == "all" else " (denoiser and projector frozen)"
            stages["stage2"] = {"trainable": trainable, "what": what}
    for name in recipe.active_stages():
        settings = getattr(recipe, name)
        entry = stages.setdefault(name, {})
        entry.update(
            learning_rate=settings.learning_rate,
            length=f"{settings.steps} steps" if settings.steps else f"{settings.epochs:g} epoch(s)",
            steps=settings.steps,
            epochs=None if settings.steps else settings.epochs,
            warmup_steps=settings.warmup_steps,
            lr_schedule=lr_schedule_name(settings.warmup_steps),
            weight_decay=settings.weight_decay,
            betas=list(settings.betas),
            max_grad_norm=settings.max_grad_norm,
        )
        if name == "stage2":
            s2 = recipe.stage2
            entry.update(mode=s2.mode, encoder_tuning=s2.encoder_tuning)
            if s2.encoder_tuning == "lora":
                entry["lora"] = s2.lora.model_dump(mode="json")
    plan["stages"] = stages
    train = recipe.train
    plan["train"] = {
        "mixed_precision": train.mixed_precision,
        "master_weights": "float32",
        "tokenizer_encode": "float32",
        "gradient_accumulation_steps": train.gradient_accumulation_steps,
        "seed": train.seed,
    }
    plan["export"] = recipe.export.model_dump(mode="json")
    plan["eval"] = [
        {"name": e.ref.name, "provided_by": f"{e.registered.source.distribution} {e.registered.source.version}",
         "params": e.params.model_dump(mode="json")}
        for e in resolve_evaluators(loaded, manager)
    ]
    if recipe.llava:
        llava = recipe.llava
        plan["llava"] = {
            "towers": llava.towers,
            "enhanced_tower": llava.tower or "this run's export",
            "language_model": llava.language_model or "random Llama (language_model_config)",
            "phases": {
                name: {"data": phase.data, "learning_rate": phase.learning_rate,
                       "batch_size_per_device": phase.batch_size, "gradient_accumulation_steps": phase.gradient_accumulation_steps,
                       "epochs": phase.epochs, "deepspeed": phase.deepspeed or llava.deepspeed,
                       "trains": "projector" if name == "pretrain" else "projector + language model"}
                for name, phase in (("pretrain", llava.pretrain), ("finetune", llava.finetune)) if phase
            },
            "eval": [e.ref.name for e in resolve_evaluators(loaded, manager, "llava.eval")],
        }
    data = recipe.data
    plan["data"] = {
        "dataset": data.name,
        "batch_size_per_device": data.batch_size,
        "gradient_accumulation_steps": recipe.train.gradient_accumulation_steps,
        "params": components["data"].params.model_dump(mode="json"),
    }
    return plan
