"""The two LLaVA-1.5 training phases on the Hugging Face Trainer.

- ``pretrain``: only the projector trains (LLaVA-1.5: LCS-558K, lr 1e-3, global batch 256).
- ``finetune``: projector and LLM train (665K mix, lr 2e-5, global batch 128).
Both: one epoch, cosine schedule, warm-up ratio 0.03, vision tower frozen,
bf16 where the hardware has it, optional gradient checkpointing and DeepSpeed
ZeRO-2/3 (configuration files shipped in ``llava_integration/deepspeed/``).
A phase resumes from its newest Trainer checkpoint and is skipped once its
``final`` directory exists. Checkpoint weights are reloaded strictly by our own
loader (see :func:`load_checkpoint_weights`); the Trainer's optimizer, scheduler
and RNG files are read with ``weights_only`` loads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from genhancer_plugins import RunError, write_json

DEEPSPEED = {"zero2": Path(__file__).parent / "deepspeed" / "zero2.json", "zero3": Path(__file__).parent / "deepspeed" / "zero3.json"}


def set_trainable(model: Any, phase: str) -> int:
    """Freeze per phase; return the number of trainable parameters."""
    model.requires_grad_(False)
    model.model.multi_modal_projector.requires_grad_(True)
    if phase == "finetune":
        model.model.language_model.requires_grad_(True)
        model.lm_head.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def checkpoint_key_map(model: Any) -> dict[str, list[str]]:
    """Saved key -> the model's keys for that tensor (several when weights are tied).

    transformers 5 writes checkpoints under the hub's original key names
    (``language_model.model.*``, ``multi_modal_projector.*``), not the module
    names (``model.language_model.*``); the renaming is recovered by running
    its own save-time conversion on the live tensors and matching storage.
    """
    state = model.state_dict()
    by_storage: dict[tuple[int, tuple[int, ...]], list[str]] = {}
    for key, tensor in state.items():
        by_storage.setdefault((tensor.data_ptr(), tuple(tensor.shape)), []).append(key)
    try:
        from transformers.core_model_loading import revert_weight_conversion
    except ImportError:  # transformers 4 saves module names as they are
        return {key: [key] for key in state}
    saved = revert_weight_conversion(model, dict(state))
    mapping = {}
    for saved_key, tensor in saved.items():
        keys = by_storage.get((tensor.data_ptr(), tuple(tensor.shape)))
        if keys is None:
            raise RunError(f"cannot resume: the checkpoint key {saved_key} is not a plain renaming of a model weight")
        mapping[saved_key] = keys
    return mapping


def load_checkpoint_weights(model: Any, checkpoint: Path) -> None:
    """Load a Trainer checkpoint's safetensors weights into ``model``; every weight must be found.

    The Trainer's own reload is non-strict and keyed by module names, so with
    transformers 5 it silently keeps the freshly built LLaVA weights.
    """
    import torch
    from safetensors.torch import load_file

    index = checkpoint / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (checkpoint / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        raise RunError(f"cannot resume from {checkpoint}: no model.safetensors (other formats are not unpickled)")
    mapping = checkpoint_key_map(model)
    state = model.state_dict()
    loaded: set[str] = set()
    with torch.no_grad():
        for name in files:
            for saved_key, value in load_file(str(checkpoint / name)).items():
                keys = mapping.get(saved_key, [saved_key] if saved_key in state else None)
                if keys is None:
                    raise RunError(f"cannot resume from {checkpoint / name}: {saved_key} is not a weight of this model")
                state[keys[0]].copy_(value)
                loaded.update(keys)
    missing = sorted(set(state) - loaded)
    if missing:
        raise RunError(f"cannot resume from {checkpoint}: {len(missing)} weight(s) missing, e.g. {missing[:3]}")


def latest_checkpoint(directory: Path) -> str | None:
    from genhancer_plugins import list_checkpoints

    found = list_checkpoints(directory, complete_marker=None)  # the Trainer's own folders
    return str(found[-1]) if found else None


def train_phase(model: Any, processor: Any, dataset: Any, phase: str, settings: Any, output_dir: Path, common: Any,
                seed: int = 0, resume: bool = True, callbacks: list[Any] | None = None, show_progress: bool = True,
                log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run one phase; ``settings`` is the phase's recipe section, ``common`` the llava section,
    ``callbacks`` extra ``transformers.TrainerCallback`` objects (logging, early stopping).
    ``show_progress=False``: no bar and no log dicts, a plain ``log`` line per logging step."""
    import torch
    from transformers import Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback, TrainerCallback

    from .data import Collator

    final = output_dir / "final"
    if (final / "phase.json").is_file():
        return json.loads((final / "phase.json").read_text())
    trainable = set_trainable(model, phase)
    bf16 = common.bf16 if common.bf16 != "auto" else bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    deepspeed = None
    if common.deepspeed:
        deepspeed = str(DEEPSPEED.get(common.deepspeed, common.deepspeed))
    import dataclasses

    # transformers 5 folded warmup_ratio into warmup_steps (a float below 1 is a ratio)
    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    warmup = {"warmup_ratio": settings.warmup_ratio} if "warmup_ratio" in names else {"warmup_steps": settings.warmup_ratio}
    args = TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        learning_rate=settings.learning_rate,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps or -1,
        lr_scheduler_type="cosine",
        **warmup,
        weight_decay=0.0,
        bf16=bf16,
        gradient_checkpointing=common.gradient_checkpointing,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=2,
        logging_steps=settings.logging_steps,
        report_to=[],
        remove_unused_columns=False,
        dataloader_num_workers=settings.num_workers,
        dataloader_pin_memory=torch.cuda.is_available(),
        seed=seed,
        deepspeed=deepspeed,
        disable_tqdm=not show_progress,
    )

    class LogLines(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
            if state.is_world_process_zero and logs and "loss" in logs:
                log(f"{phase}: step {state.global_step}/{state.max_steps} loss {logs['loss']:.4f} lr {logs.get('learning_rate', 0):.3g}")

    class PhaseTrainer(Trainer):
        def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
            # DeepSpeed and FSDP restore their own sharded states; the plain path gets the strict loader
            if self.is_deepspeed_enabled or self.is_fsdp_enabled:
                return super()._load_from_checkpoint(resume_from_checkpoint, model)
            load_checkpoint_weights(model if model is not None else self.model, Path(resume_from_checkpoint))

    trainer = PhaseTrainer(model=model, args=args, train_dataset=dataset, data_collator=Collator(processor.tokenizer.pad_token_id),
                      callbacks=[*(callbacks or []), *([] if show_progress else [LogLines()])])
    if not show_progress:
        trainer.remove_callback(PrinterCallback)  # the dict per logging step: LogLines says it in one line
    checkpoint = latest_checkpoint(output_dir) if resume else None
    result = trainer.train(resume_from_checkpoint=checkpoint)
    final.mkdir(parents=True, exist_ok=True)
    trainer.save_model(str(final))
    processor.save_pretrained(str(final))
    summary = {"phase": phase, "trainable_parameters": trainable, "steps": result.global_step,
               "train_loss": result.training_loss, "skipped_records": dict(dataset.skipped), "resumed_from": checkpoint}
    write_json(final / "phase.json", summary)
    return summary
