"""The ``llava`` phase in a ``genhancer rehearse``: the LLM at its real widths with random
weights (the stack of decoder layers shortened to the rehearsal's depth), an offline word
tokenizer, and small synthetic copies of LCS-558K and the 665K mix in LLaVA's JSON layout;
each phase trains a step or two, and every benchmark reads its synthetic copy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image

from genhancer_plugins import RecipeError

#: The published architectures of the LLMs the LLaVA-1.5 recipes name (their config.json), so a
#: rehearsal builds them offline with random weights.
KNOWN_LANGUAGE_MODELS = {
    "lmsys/vicuna-7b-v1.5": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
                             "num_key_value_heads": 32, "vocab_size": 32000, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5},
    "lmsys/vicuna-13b-v1.5": {"hidden_size": 5120, "intermediate_size": 13824, "num_hidden_layers": 40, "num_attention_heads": 40,
                              "num_key_value_heads": 40, "vocab_size": 32000, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5},
}
CONVERSATIONS = {
    "pretrain": [{"from": "human", "value": "<image>\nRender a clear and concise summary of the photo."},
                 {"from": "gpt", "value": "a red square on a grey background"}],
    "finetune": [{"from": "human", "value": "<image>\nWhat colour is the square?"}, {"from": "gpt", "value": "The square is red."},
                 {"from": "human", "value": "Is it large?"}, {"from": "gpt", "value": "Yes, it fills the middle of the image."}],
}


def language_model_config(settings: Any) -> dict[str, Any]:
    if settings.language_model_config is not None:
        return dict(settings.language_model_config)
    local = Path(settings.language_model) / "config.json"
    if local.is_file():
        keys = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "vocab_size",
                "max_position_embeddings", "rms_norm_eps")
        config = json.loads(local.read_text())
        return {k: config[k] for k in keys if k in config}
    if settings.language_model in KNOWN_LANGUAGE_MODELS:
        return dict(KNOWN_LANGUAGE_MODELS[settings.language_model])
    raise RecipeError(f"llava.language_model {settings.language_model}: its architecture is not known offline; a rehearsal needs "
                      f"llava.language_model_config (hidden_size, num_hidden_layers, ... as in its config.json)")


def _write_phase_data(directory: Path, phase: str, records: int = 2) -> tuple[str, str]:
    images = directory / phase / "images"
    images.mkdir(parents=True, exist_ok=True)
    data = []
    for index in range(records):
        Image.new("RGB", (64, 48), (200, 40 + 60 * index, 40)).save(images / f"{index}.jpg")
        data.append({"id": f"{phase}-{index}", "image": f"{index}.jpg", "conversations": CONVERSATIONS[phase]})
    path = directory / phase / f"{phase}.json"
    path.write_text(json.dumps(data))
    return str(path), str(images)


def rehearsal_settings(settings: Any, directory: Path, depth: int | None) -> tuple[Any, list[str]]:
    from .benchmarks.samples import SAMPLES

    notes = []
    config = language_model_config(settings)
    if settings.language_model is not None:
        notes.append(f"language model {settings.language_model}: random weights at its widths "
                     f"(hidden {config['hidden_size']}, vocabulary {config.get('vocab_size', '?')})")
    if depth is not None and config.get("num_hidden_layers", 0) > depth:
        notes.append(f"language_model.num_hidden_layers {config['num_hidden_layers']} -> {depth}")
        config["num_hidden_layers"] = depth
    corpus = directory / "corpus.txt"
    corpus.parent.mkdir(parents=True, exist_ok=True)
    corpus.write_text("\n".join(turn["value"] for turns in CONVERSATIONS.values() for turn in turns) + "\n")
    update: dict[str, Any] = {"language_model": None, "language_model_config": config, "tokenizer_corpus": [str(corpus)],
                              "max_length": min(settings.max_length, 2048)}
    for phase in ("pretrain", "finetune"):
        section = getattr(settings, phase)
        if section is None:
            continue
        data, images = _write_phase_data(directory, phase)
        if section.deepspeed or settings.deepspeed:
            notes.append(f"{phase}: DeepSpeed {section.deepspeed or settings.deepspeed} left out (accelerate runs it on GPUs only); "
                         "the forecast gives its memory per GPU")
        update[phase] = {**section.model_dump(), "data": data, "image_folder": images, "batch_size": 1, "max_steps": 1,
                         "num_workers": 0, "deepspeed": None, "save_steps": 1}
    update["deepspeed"] = None
    evaluators = []
    for index, ref in enumerate(settings.eval):
        if ref.name not in SAMPLES:
            raise RecipeError(f"llava.eval.{index}: {ref.name} offers no rehearsal copy")
        evaluators.append({"name": ref.name, "params": SAMPLES[ref.name](dict(ref.params), directory / "eval" / ref.name)})
    update["eval"] = evaluators
    notes.append(f"data: synthetic LLaVA JSON ({', '.join(p for p in ('pretrain', 'finetune') if getattr(settings, p))}), one step each; "
                 f"{len(evaluators)} benchmark(s) on synthetic copies")
    return type(settings).model_validate({**settings.model_dump(), **update}), notes


#: Records in the LLaVA-1.5 data files the recipes name (LLaVA's published sets), for the forecast's step counts.
KNOWN_DATASETS = {"blip_laion_cc_sbu_558k.json": 558_128, "llava_v1_5_mix665k.json": 665_298}
#: Text tokens per sample the forecast assumes beside the image tokens (not measured: short captions in the
#: projector pretraining, multi-turn instructions in the finetuning).
ASSUMED_TEXT_TOKENS = {"pretrain": 64, "finetune": 512}


def llama_parameters(config: dict[str, Any]) -> int:
    h, i, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    kv = h * config.get("num_key_value_heads", config["num_attention_heads"]) // config["num_attention_heads"]
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h
    return layers * per_layer + 2 * config.get("vocab_size", 32000) * h + h


def _records(path: str) -> int | None:
    local = Path(path)
    if local.is_file() and local.stat().st_size < 200 * 2**20:
        return len(json.loads(local.read_text()))
    return KNOWN_DATASETS.get(local.name)


def forecast_rows(settings: Any, gpus: int, encoder: Any, encoder_parameters: int) -> list[dict[str, Any]]:
    """Per LLaVA phase and tower: steps over the phase's data, training FLOPs per step (6 N T for the
    trained LLM, 4 N T when only the projector trains, one more forward with gradient checkpointing;
    the frozen tower's forward), and the per-GPU memory under the phase's DeepSpeed stage."""
    import math

    from genhancer_plugins import memory_estimates

    config = language_model_config(settings)
    llm = llama_parameters(config)
    projector = encoder.local_dim * config["hidden_size"] + config["hidden_size"] ** 2
    rows = []
    for phase in ("pretrain", "finetune"):
        section = getattr(settings, phase)
        if section is None:
            continue
        tokens = encoder.num_local_tokens + ASSUMED_TEXT_TOKENS[phase]
        per_sample = (6 if phase == "finetune" else 4) * llm * tokens + 2 * encoder_parameters * encoder.num_local_tokens
        if settings.gradient_checkpointing:
            per_sample += 2 * llm * tokens
        global_batch = section.batch_size * gpus * section.gradient_accumulation_steps
        records = _records(section.data)
        steps = section.max_steps or (math.ceil(section.epochs * records / global_batch) if records else None)
        stage = section.deepspeed or settings.deepspeed
        trained = projector + (llm if phase == "finetune" else 0)
        memory = memory_estimates(encoder_parameters + llm + projector, {phase: trained}, gpus)[phase]
        key = "zero3" if stage == "zero3" else "zero2" if stage == "zero2" else "ddp"
        for tower in settings.towers:
            rows.append({"phase": f"llava {tower} {phase}", "steps": steps, "global_batch": global_batch,
                         "flops_per_step": per_sample * global_batch, "memory_per_gpu_gb": memory[key],
                         "parallelism": f"DeepSpeed {stage}" if stage else "ddp",
                         "note": f"{records or 'unknown'} records, {tokens} tokens per sample ({ASSUMED_TEXT_TOKENS[phase]} text: assumed)"})
    return rows
