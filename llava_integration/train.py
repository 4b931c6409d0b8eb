"""The two LLaVA-1.5 training phases on the Hugging Face Trainer.

- ``pretrain``: only the projector trains (LLaVA-1.5: LCS-558K, lr 1e-3, global batch 256).
- ``finetune``: projector and LLM train (665K mix, lr 2e-5, global batch 128).
Both: one epoch, cosine schedule, warm-up ratio 0.03, vision tower frozen,
bf16 where the hardware has it, optional gradient checkpointing and DeepSpeed
ZeRO-2/3 (configuration files shipped in ``llava_integration/deepspeed/``).
A phase resumes from its newest Trainer checkpoint and is skipped once its
``final`` directory exists.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DEEPSPEED = {"zero2": Path(__file__).parent / "deepspeed" / "zero2.json", "zero3": Path(__file__).parent / "deepspeed" / "zero3.json"}


def set_trainable(model: Any, phase: str) -> int:
    """Freeze per phase; return the number of trainable parameters."""
    model.requires_grad_(False)
    model.model.multi_modal_projector.requires_grad_(True)
    if phase == "finetune":
        model.model.language_model.requires_grad_(True)
        model.lm_head.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def latest_checkpoint(directory: Path) -> str | None:
    found = sorted((int(p.name.split("-")[1]), p) for p in directory.glob("checkpoint-*") if p.name.split("-")[1].isdigit())
    return str(found[-1][1]) if found else None


def train_phase(model: Any, processor: Any, dataset: Any, phase: str, settings: Any, output_dir: Path, common: Any,
                seed: int = 0, resume: bool = True) -> dict[str, Any]:
    """Run one phase; ``settings`` is the phase's recipe section, ``common`` the llava section."""
    import torch
    from transformers import Trainer, TrainingArguments

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
        disable_tqdm=False,
    )
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=Collator(processor.tokenizer.pad_token_id))
    checkpoint = latest_checkpoint(output_dir) if resume else None
    result = trainer.train(resume_from_checkpoint=checkpoint)
    final.mkdir(parents=True, exist_ok=True)
    trainer.save_model(str(final))
    processor.save_pretrained(str(final))
    summary = {"phase": phase, "trainable_parameters": trainable, "steps": result.global_step,
               "train_loss": result.training_loss, "skipped_records": dict(dataset.skipped), "resumed_from": checkpoint}
    (final / "phase.json").write_text(json.dumps(summary, indent=2))
    return summary
