"""The resolved plan of a recipe (what ``genhancer validate`` prints): components,
parameter counts built on the meta device, trainable parameters per stage,
schedule, precision, data and downstream phases. Nothing trains or downloads."""

from __future__ import annotations

import json
from typing import Any

from genhancer_plugins.recipe.build import build_models, cache_root, plan_pretrainer, resolve_components, resolve_evaluators
from genhancer_plugins.recipe.schema import STAGE1, STAGE2, LoadedRecipe
from genhancer_plugins.registry.components import OfflineUnknown
from genhancer_plugins.registry.manager import PluginManager
from genhancer_plugins.util.memory import memory_estimates


def lora_parameter_count(encoder: Any, rank: int) -> int:
    """Parameters LoRA adds: rank * (in + out) per adapted linear layer."""
    total = 0
    for name in encoder.lora_target_modules():
        layer = encoder.get_submodule(name)
        total += rank * (layer.in_features + layer.out_features)
    return total


def make_plan(loaded: LoadedRecipe, manager: PluginManager, output_dir: str | None, check_inputs: bool = True) -> dict[str, Any]:
    """The resolved plan that ``genhancer validate`` prints: nothing trains or downloads. With
    ``check_inputs``, ``plan["input_problems"]`` lists what would stop ``genhancer run`` from starting."""
    from genhancer_plugins.interfaces import count_parameters

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
    if check_inputs:
        from genhancer_plugins.recipe.preflight import check_inputs as problems_of

        plan["input_problems"] = problems_of(loaded, manager, output_dir or recipe.output_dir)
    for section, comp in components.items():
        plan["components"][section] = {
            "kind": comp.kind,
            "name": comp.ref.name,
            "preset": comp.preset,
            "provided_by": f"{comp.registered.source.distribution} {comp.registered.source.version}",
            "params": comp.params.model_dump(mode="json"),
        }
    pretrainer = plan_pretrainer(loaded, manager, components)
    if pretrainer is not None:
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
        for section in ("encoder", "tokenizer", "denoiser"):
            plan["components"][section]["weights"] = models[section].pretrained_source() or "random initialisation"
        frozen = sum(p.numel() for p in denoiser.frozen_parameters())  # a pretrained network the recipe keeps frozen
        head = count_parameters(denoiser) - frozen + count_parameters(conditioner)
        trains = "projector (denoiser frozen)" if frozen else "projector + denoiser"
        sizes = {
            "encoder": count_parameters(encoder),
            "encoder_vision": sum(p.numel() for p in encoder.vision_parameters()),
            "tokenizer": count_parameters(models["tokenizer"]),
            "denoiser": count_parameters(denoiser),
            "projector": count_parameters(conditioner),
        }
        plan["parameters"] = sizes
        plan["image_size"] = encoder.spec.image_size
        if models["image_sizes"]["tokenizer"] != encoder.spec.image_size:
            plan["tokenizer_image_size"] = models["image_sizes"]["tokenizer"]
        plan["target"] = {"kind": models["target"].kind, "shape": list(models["target"].shape)}
        if STAGE1 in recipe.active_stages():
            stages[STAGE1] = {"trainable": head, "what": "projector (denoiser and encoder frozen)" if frozen
                              else "projector + denoiser (encoder frozen)"}
        if recipe.stage2.enabled:
            s2 = recipe.stage2
            if s2.encoder_tuning == "lora":
                from genhancer_plugins.training.lora import lora_bias_count

                adapters = lora_parameter_count(encoder, s2.lora.rank)
                biases = lora_bias_count(encoder, s2.lora.bias)
                enc = adapters + biases
                what = (f"encoder LoRA r{s2.lora.rank}/alpha {s2.lora.alpha:g}/dropout {s2.lora.dropout:g} on "
                        f"{len(encoder.lora_target_modules())} linear layers ({adapters:,}) + bias {s2.lora.bias} ({biases:,})")
            else:
                enc = sizes["encoder_vision"]
                what = "encoder vision tower (full fine-tuning)"
            trainable = enc + (head if s2.mode == "all" else 0)
            what += f" + {trains}" if s2.mode == "all" else " (denoiser and projector frozen)"
            stages[STAGE2] = {"trainable": trainable, "what": what}
    for name in recipe.active_stages():
        settings = getattr(recipe, name)
        entry = stages.setdefault(name, {})
        entry.update(
            learning_rate=settings.learning_rate,
            length=f"{settings.steps} steps" if settings.steps else f"{settings.epochs:g} epoch(s)",
            steps=settings.steps,
            epochs=None if settings.steps else settings.epochs,
            warmup_steps=settings.warmup_steps,
            lr_schedule=settings.lr_schedule,
            weight_decay=settings.weight_decay,
            optimizer=settings.optimizer,
            betas=list(settings.betas),
            momentum=settings.momentum,
            max_grad_norm=settings.max_grad_norm,
        )
        if name == STAGE2:
            s2 = recipe.stage2
            entry.update(mode=s2.mode, encoder_tuning=s2.encoder_tuning)
            if s2.encoder_tuning == "lora":
                entry["lora"] = s2.lora.model_dump(mode="json")
    plan["stages"] = stages
    if models is not None:
        plan["memory_per_gpu_gb"] = memory_estimates(sum(plan["parameters"][k] for k in ("encoder", "tokenizer", "denoiser", "projector")),
                                                     {name: s["trainable"] for name, s in stages.items() if "trainable" in s},
                                                     state_bytes={name: optimizer_state_bytes(getattr(recipe, name)) for name in stages})
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
    plan["phases"] = {}
    for name, params in recipe.phases().items():
        phase = manager.get("phase", name)
        plan["phases"][name] = {"provided_by": f"{phase.source.distribution} {phase.source.version}",
                                **phase.spec.factory(params).plan()}
    data = recipe.data
    plan["data"] = {
        "dataset": data.name,
        "batch_size_per_device": data.batch_size,
        "gradient_accumulation_steps": recipe.train.gradient_accumulation_steps,
        "params": components["data"].params.model_dump(mode="json"),
    }
    return plan


def _human(n: Any) -> str:
    if not isinstance(n, int):
        return str(n)
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3f} {unit}" if unit == "B" else f"{n / size:.2f} {unit}"
    return str(n)


def render_plan(plan: dict[str, Any]) -> str:
    """The plan as the text ``genhancer validate`` prints."""
    lines: list[str] = []
    lines.append(f"recipe   {plan['recipe']}" + (f" (extends {', '.join(plan['extends'])})" if plan["extends"] else ""))
    lines.append(f"name     {plan['name']}")
    lines.append(f"output   {plan['output_dir'] or '(set --output-dir)'}")
    lines.append("components:")
    for section, comp in plan["components"].items():
        preset = f" preset {comp['preset']}" if comp["preset"] else ""
        weights = f"; weights: {comp['weights']}" if "weights" in comp else ""
        lines.append(f"  {section:<12} {comp['name']}{preset}  ({comp['provided_by']}{weights})")
        if comp["params"].get("trust_remote_code"):
            lines.append(f"  {'':<12} trust_remote_code: true (runs Python code shipped with the checkpoint)")
    sizes = plan["parameters"]
    if isinstance(sizes, dict):
        lines.append("parameters:")
        for key, value in sizes.items():
            lines.append(f"  {key:<15} {_human(value)} ({value:,})")
        sizes = f"image size {plan['image_size']}" + (f" (tokenizer {plan['tokenizer_image_size']})" if "tokenizer_image_size" in plan else "")
        lines.append(f"{sizes}, denoiser target {plan['target']['kind']} {plan['target']['shape']}")
    else:
        lines.append(f"parameters: {sizes}")
    lines.append("stages:")
    for name, stage in plan["stages"].items():
        trainable = f"{_human(stage['trainable'])} trainable ({stage['trainable']:,}): {stage['what']}; " if "trainable" in stage else ""
        lines.append(f"  {name}: {trainable}{stage['length']}, lr {stage['learning_rate']:g} {stage['lr_schedule']}, "
              f"{_optimizer_words(stage)} weight decay {stage['weight_decay']:g}, grad-norm clip {stage['max_grad_norm']}")
    memory = plan.get("memory_per_gpu_gb")
    if memory:
        for stage in (s for s in memory if s.startswith("stage")):
            m = memory[stage]
            lines.append(f"  {stage} memory per GPU (weights + grads + optimiser states, before activations): DDP {m['ddp']} GB, "
                         f"sharded over {memory['gpus']}: ZeRO-2 {m['zero2']} GB, ZeRO-3/FSDP {m['zero3']} GB")
    train = plan["train"]
    lines.append(f"precision {train['mixed_precision']} (master weights {train['master_weights']}, tokenizer encodes in "
          f"{train['tokenizer_encode']}); export {plan['export']['dtype']}")
    if plan.get("pretrain"):
        lines.append(f"pretrain {plan['pretrain']['name']} (cached in {plan['pretrain']['cache']})")
    if plan.get("eval"):
        lines.append(f"eval     {', '.join(e['name'] for e in plan['eval'])} (original encoder before training, export after)")
    for name, phase in plan.get("phases", {}).items():
        lines.append(f"phase    {name} ({phase['provided_by']})")
        for key, value in phase.items():
            if key == "provided_by":
                continue
            if isinstance(value, dict):  # e.g. one line per LLaVA training phase
                lines.append(f"  {key}:")
                lines += [f"    {name}: {item if isinstance(item, str) else json.dumps(item)}" for name, item in value.items()]
            else:
                lines.append(f"  {key}: {value if isinstance(value, str) else json.dumps(value)}")
    data = plan["data"]
    lines.append(
        f"data     {data['dataset']} {json.dumps(data['params'])}, {data['batch_size_per_device']} per device "
        f"x {data['gradient_accumulation_steps']} accumulation"
    )
    problems = plan.get("input_problems")
    if problems:
        lines.append(f"recipe is valid, but {len(problems)} input{'s are' if len(problems) > 1 else ' is'} not ready "
                     "(`genhancer run` would refuse to start):")
        lines += [f"  {problem}" for problem in problems]
    else:
        lines.append("recipe is valid" + (", and its inputs are ready" if problems is not None else " (inputs not checked)"))
    return "\n".join(lines)


def optimizer_state_bytes(settings: Any) -> int:
    """fp32 optimiser state per trained parameter: AdamW's two moments, SGD's momentum buffer (none at momentum 0)."""
    if settings.optimizer == "sgd":
        return 4 if settings.momentum else 0
    return 8


def _optimizer_words(stage: dict[str, Any]) -> str:
    if stage.get("optimizer") == "sgd":
        return f"SGD momentum {stage['momentum']:g}"
    return f"AdamW betas {tuple(stage['betas'])}"
