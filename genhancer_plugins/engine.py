"""The one training engine: every encoder, denoiser and schedule runs here.

Lifecycle of :class:`Run` (printed as it goes):

1. ``prepare_output``: refuse a non-empty directory unless resuming or
   overwriting; write the resolved recipe.
2. ``setup``: accelerate (devices, precision, processes), components built
   from the recipe, lifecycle hook ``genhancer_run_start``.
3. ``train_stage`` for each enabled stage:
   - stage1: encoder frozen; projector and denoiser train (paper lr 1e-4);
   - stage2: encoder adapted with LoRA (or fully); projector and denoiser
     keep training ("all") or stay frozen ("only") (paper lr 1e-5).
   A finished stage leaves ``<stage>/final``; ``--resume`` skips it and
   continues an unfinished one from its newest checkpoint.
4. ``export``: LoRA merged, encoder written in the Hugging Face layout and
   read back to check it reproduces the in-training outputs.
5. ``run.json``: recipe, versions, steps, losses, wall time.
"""

from __future__ import annotations

import itertools
import json
import math
import platform
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import __version__
from .build import (
    ResolvedComponent,
    apply_pretrainer,
    build_models,
    cache_root,
    resolve_components,
    resolve_evaluators,
    resolve_pretrainer,
)
from .checkpoint import (
    STATE_FILE,
    WEIGHTS_FILE,
    list_checkpoints,
    load_checkpoint,
    load_weights,
    prune_checkpoints,
    save_checkpoint,
)
from .errors import RunError
from .events import ExportInfo, RunInfo, StageInfo, StepInfo
from .interfaces import Conditioner, Denoiser, Encoder, Tokenizer, count_parameters
from .lora import apply_lora, has_lora, mark_lora_trainable, merge_lora
from .manager import PluginManager
from .recipe import LoadedRecipe, StageSettings, dump_yaml

STAGES = ("stage1", "stage2")
OUTPUT_ENTRIES = ("stage1", "stage2", "export", "export.tmp", "original", "eval", "logs", "run.json", "recipe.yaml")
EXPORT_TOLERANCE = 1e-4


class Pipeline(nn.Module):
    """Encoder, conditioner, frozen tokenizer and denoiser as one module, so
    that accelerate/DDP wrap a single forward that returns the loss."""

    def __init__(self, encoder: Encoder, conditioner: Conditioner, tokenizer: Tokenizer, denoiser: Denoiser):
        super().__init__()
        self.encoder = encoder
        self.conditioner = conditioner
        self.tokenizer = tokenizer
        self.denoiser = denoiser

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.denoiser.loss(self.targets(images), self.conditioner(self.encoder(images)))

    def targets(self, images: torch.Tensor) -> torch.Tensor:
        """The frozen tokenizer's targets, computed in fp32 even under bf16/fp16
        autocast: the release encodes with the VAE in fp32, and the encode is
        cheap next to the denoiser."""
        with torch.autocast(device_type=images.device.type, enabled=False):
            return self.tokenizer.encode(images.float())


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack images; keep keys, and the keys of unreadable samples datasets skipped."""
    return {
        "pixel_values": torch.stack([item["pixel_values"] for item in items]),
        "keys": [item.get("key", "") for item in items],
        "skipped": [key for item in items for key in item.get("skipped", [])],
    }


def step_seed(*parts: int) -> int:
    """A well-mixed seed from (seed, stage, micro-step, rank): exact resume
    without saving RNG state, different noise on every process."""
    return int(np.random.SeedSequence([abs(int(p)) for p in parts]).generate_state(1)[0])


def learning_rate(base: float, warmup_steps: int, step: int) -> float:
    """Linear warm-up, then constant (``step`` counts from 0)."""
    if warmup_steps <= 0:
        return base
    return base * min(1.0, (step + 1) / (warmup_steps + 1))


def library_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {"genhancer": __version__, "python": platform.python_version()}
    for name in ("torch", "transformers", "diffusers", "peft", "accelerate"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@dataclass
class StageResult:
    steps: int = 0
    final_loss: float | None = None
    wall_time_s: float = 0.0
    resumed_from: str | None = None
    already_finished: bool = False
    losses: list[tuple[int, float]] = field(default_factory=list)
    skipped_samples: list[str] = field(default_factory=list)  #: unreadable samples met (all processes)


class Run:
    """One execution of a recipe (see the module docstring for the phases)."""

    def __init__(
        self,
        loaded: LoadedRecipe,
        manager: PluginManager,
        output_dir: str | Path,
        resume: bool = False,
        overwrite: bool = False,
        show_progress: bool = True,
    ):
        self.loaded = loaded
        self.recipe = loaded.recipe
        self.manager = manager
        self.output_dir = Path(output_dir)
        self.resume = resume
        self.overwrite = overwrite
        self.show_progress = show_progress
        self.components: dict[str, ResolvedComponent] = resolve_components(loaded, manager)
        self.evaluator_specs = resolve_evaluators(loaded, manager)
        self.llava_eval_specs = resolve_evaluators(loaded, manager, "llava.eval")
        self.llava_summary: dict[str, Any] | None = None
        self.results: dict[str, StageResult] = {}
        self.export_info: dict[str, Any] | None = None
        self.eval_results: dict[str, dict[str, Any]] = {}

    # -- phase 1 ---------------------------------------------------------
    def prepare_output(self) -> None:
        out = self.output_dir
        ours = [out / e for e in OUTPUT_ENTRIES if (out / e).exists()]
        if out.exists() and not out.is_dir():
            raise RunError(f"output directory {out} exists and is not a directory")
        others = [p for p in out.iterdir()] if out.is_dir() else []
        if others and not (self.resume or self.overwrite):
            raise RunError(
                f"output directory {out} is not empty; pass --resume to continue that run "
                f"or --overwrite to replace it"
            )
        if self.overwrite and not self.resume and self.accelerator.is_main_process:
            foreign = [p.name for p in others if p not in ours]
            if foreign:
                raise RunError(f"--overwrite would leave files it did not write in {out}: {', '.join(sorted(foreign))}; use another directory")
            for path in ours:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        self.accelerator.wait_for_everyone()
        recipe_file = out / "recipe.yaml"
        resolved = dump_yaml(self.loaded.raw)
        if self.resume and recipe_file.is_file() and recipe_file.read_text() != resolved:
            self.log(f"warning: the recipe differs from the one {out} was started with ({recipe_file}); continuing with the new one")
        if self.accelerator.is_main_process:
            out.mkdir(parents=True, exist_ok=True)
            recipe_file.write_text(resolved)
        self.accelerator.wait_for_everyone()

    # -- phase 2 ---------------------------------------------------------
    def _mixed_precision(self) -> str:
        wanted = self.recipe.train.mixed_precision
        if wanted != "auto":
            return wanted
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"

    def setup_accelerator(self) -> None:
        from accelerate import Accelerator
        from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration

        train = self.recipe.train
        self.accelerator = Accelerator(
            mixed_precision=self._mixed_precision(),
            gradient_accumulation_steps=train.gradient_accumulation_steps,
            log_with=list(train.report_to) or None,
            project_config=ProjectConfiguration(project_dir=str(self.output_dir), logging_dir=str(self.output_dir / "logs")),
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=train.seed),
        )

    def setup_models(self) -> None:
        from accelerate.utils import set_seed

        pretrainer = resolve_pretrainer(self.loaded, self.manager)
        if pretrainer is not None:
            phase = pretrainer.build(seed=self.recipe.train.seed)
            if self.accelerator.is_main_process:  # trains once, then every process reads the cache
                phase.encoder_params(cache_root(), self.log)
            self.accelerator.wait_for_everyone()
            apply_pretrainer(self.components, phase.encoder_params(cache_root(), self.log))
        set_seed(self.recipe.train.seed)  # identical initialisation on every process
        models = build_models(self.components)
        self.pipeline = Pipeline(models["encoder"], models["conditioner"], models["tokenizer"], models["denoiser"])
        self.pipeline.to(self.accelerator.device)
        precision = self.accelerator.mixed_precision
        try:
            self.dataset = self.components["data"].build(image_size=models["encoder"].spec.image_size, seed=self.recipe.train.seed)
        except (FileNotFoundError, ValueError) as exc:  # a missing shard or directory: fail at start-up, clearly
            raise RunError(f"data ({self.recipe.data.name}): {exc}") from None
        if len(self.dataset) == 0:
            raise RunError(f"dataset {self.recipe.data.name!r} is empty")
        self.evaluators = []
        for spec in self.evaluator_specs:
            try:
                self.evaluators.append(spec.build())
            except (FileNotFoundError, ValueError) as exc:  # a missing benchmark: fail before training, not after
                raise RunError(f"{spec.section} ({spec.ref.name}): {exc}") from None
        if self.recipe.train.report_to:
            self.accelerator.init_trackers(self.recipe.name, config=self._tracker_config())
        self.manager.hook.genhancer_run_start(run=RunInfo(self.recipe, self.output_dir, self.modules(), *self._rank()))
        self.log(
            f"components: encoder {self.recipe.encoder.name} ({count_parameters(self.pipeline.encoder):,} params), "
            f"denoiser {self.recipe.denoiser.name} ({count_parameters(self.pipeline.denoiser):,}), "
            f"projector ({count_parameters(self.pipeline.conditioner):,}); dataset {len(self.dataset):,} images; "
            f"{self.accelerator.num_processes} process(es) on {self.accelerator.device}, precision {precision}"
        )

    def _tracker_config(self) -> dict[str, Any]:
        r = self.recipe
        return {
            "encoder": r.encoder.name,
            "denoiser": r.denoiser.name,
            "stage1_lr": r.stage1.learning_rate,
            "stage2_lr": r.stage2.learning_rate,
            "batch_size": r.data.batch_size,
            "seed": r.train.seed,
        }

    def modules(self) -> dict[str, nn.Module]:
        p = self.pipeline
        return {"encoder": p.encoder, "conditioner": p.conditioner, "tokenizer": p.tokenizer, "denoiser": p.denoiser}

    def _rank(self) -> tuple[int, int]:
        return self.accelerator.process_index, self.accelerator.num_processes

    def log(self, message: str) -> None:
        if self.accelerator.is_main_process:
            print(f"[genhancer] {message}", flush=True)

    # -- phase 3 ---------------------------------------------------------
    def configure_stage(self, stage: str) -> None:
        """Which parameters train in ``stage``, and the LoRA it needs."""
        p = self.pipeline
        p.requires_grad_(False)
        if stage == "stage1":
            p.conditioner.requires_grad_(True)
            p.denoiser.requires_grad_(True)
            return
        s2 = self.recipe.stage2
        if s2.encoder_tuning == "lora":
            if not has_lora(p.encoder):
                apply_lora(p.encoder, s2.lora)
                p.encoder.to(self.accelerator.device)
            mark_lora_trainable(p.encoder, s2.lora.bias)
        else:
            for param in p.encoder.vision_parameters():
                param.requires_grad_(True)
        if s2.mode == "all":
            p.conditioner.requires_grad_(True)
            p.denoiser.requires_grad_(True)

    def _set_modes(self, stage: str) -> None:
        self.pipeline.train()
        if stage == "stage1":
            self.pipeline.encoder.eval()  # frozen: no dropout, fixed statistics

    def _stage_state(self) -> dict[str, torch.Tensor]:
        """What a finished stage hands on: projector, denoiser, trained encoder weights."""
        state = {}
        for name, param in self.pipeline.named_parameters():
            if name.startswith(("conditioner.", "denoiser.")) or (name.startswith("encoder.") and param.requires_grad):
                state[name] = param.detach().to("cpu").contiguous()
        return state

    def _init_stage2_from(self, source: str) -> None:
        path = Path(source)
        candidates = [path / "stage1" / "final" / WEIGHTS_FILE, path / WEIGHTS_FILE, path]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise RunError(f"stage2.init_from: no stage-1 weights at {source} (looked for {', '.join(map(str, candidates[:2]))})")
        loaded = load_weights(found, self.pipeline, prefixes=("conditioner.", "denoiser."))
        self.log(f"stage2 starts from {found} ({len(loaded)} tensors)")

    @property
    def streaming(self) -> bool:
        """Iterable datasets shard themselves per process; map-style ones are sharded by accelerate."""
        return isinstance(self.dataset, torch.utils.data.IterableDataset)

    def _dataloader(self) -> torch.utils.data.DataLoader:
        data = self.recipe.data
        if self.streaming:
            return torch.utils.data.DataLoader(
                self.dataset, batch_size=data.batch_size, drop_last=True, num_workers=data.num_workers, collate_fn=collate
            )
        return torch.utils.data.DataLoader(
            self.dataset,
            batch_size=data.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=data.num_workers,
            collate_fn=collate,
            generator=torch.Generator().manual_seed(self.recipe.train.seed),
        )

    def _epoch(self, loader: Any, epoch: int, batches_done: int, batches_per_epoch: int) -> Any:
        """The batches of ``epoch`` not consumed yet (resume skips ``batches_done``)."""
        if self.streaming:
            self.dataset.set_epoch(epoch)
            return itertools.islice(iter(loader), batches_done, batches_per_epoch)
        loader.set_epoch(epoch)
        return self.accelerator.skip_first_batches(loader, batches_done) if batches_done else loader

    def _probe_images(self, count: int) -> torch.Tensor:
        """A few fixed images (the dataset's first) for checks such as the export's."""
        if self.streaming:
            self.dataset.set_epoch(0)
            items = list(itertools.islice(iter(self.dataset), count))
        else:
            items = [self.dataset[i] for i in range(min(count, len(self.dataset)))]
        return torch.stack([item["pixel_values"] for item in items])

    def _gather_skipped(self, local: list[str]) -> list[str]:
        from accelerate.utils import gather_object

        return list(gather_object(local)) if self.accelerator.num_processes > 1 else list(local)

    def _total_steps(self, settings: StageSettings, batches_per_epoch: int) -> int:
        if settings.steps:
            return settings.steps
        per_epoch = batches_per_epoch // self.recipe.train.gradient_accumulation_steps
        if per_epoch == 0:
            raise RunError(
                f"one epoch of {len(self.dataset)} images gives no optimisation step at batch size "
                f"{self.recipe.data.batch_size} x {self.accelerator.num_processes} process(es) x "
                f"{self.recipe.train.gradient_accumulation_steps} accumulation; use more images or a smaller batch"
            )
        return max(1, math.ceil(settings.epochs * per_epoch))

    def train_stage(self, stage: str, settings: StageSettings) -> StageResult:
        acc = self.accelerator
        stage_dir = self.output_dir / stage
        final_dir = stage_dir / "final"
        ckpt_dir = stage_dir / "checkpoints"
        from accelerate.utils import set_seed

        # Stage-level randomness (LoRA initialisation) must not depend on how
        # much of the previous stage ran in this process: resume relies on it.
        set_seed(step_seed(self.recipe.train.seed, STAGES.index(stage), 2**31 - 1))
        self.configure_stage(stage)
        if (final_dir / STATE_FILE).is_file():
            load_weights(final_dir / WEIGHTS_FILE, self.pipeline)
            saved = json.loads((final_dir / STATE_FILE).read_text())
            self.log(f"{stage}: already finished in {final_dir}; loaded its weights")
            return StageResult(
                steps=saved["step"],
                final_loss=saved.get("final_loss"),
                already_finished=True,
                losses=[tuple(x) for x in saved.get("losses", [])],
                skipped_samples=saved.get("skipped_samples", []),
            )
        if stage == "stage2" and "stage1" not in self.recipe.active_stages():
            if self.recipe.stage2.init_from:
                self._init_stage2_from(self.recipe.stage2.init_from)
            elif self.recipe.schedule == "end_to_end":
                self.log("stage2: end-to-end schedule: encoder LoRA and a fresh denoiser train together from step 0")
            else:
                self.log("warning: stage1 is disabled and stage2.init_from is empty: the denoiser starts untrained")

        trainable = [p for p in self.pipeline.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            trainable, lr=settings.learning_rate, betas=settings.betas, weight_decay=settings.weight_decay
        )
        acc.free_memory()  # drop the previous stage's wrappers
        if self.streaming:
            model, optimizer = acc.prepare(self.pipeline, optimizer)
            loader = self._dataloader()
            batches_per_epoch = len(self.dataset) // (self.recipe.data.batch_size * acc.num_processes)
        else:
            model, optimizer, loader = acc.prepare(self.pipeline, optimizer, self._dataloader())
            batches_per_epoch = len(loader)
        total = self._total_steps(settings, batches_per_epoch)
        accum = self.recipe.train.gradient_accumulation_steps
        result = StageResult()
        step, epoch, batches_done = 0, 0, 0
        checkpoints = list_checkpoints(ckpt_dir) if self.resume else []
        if checkpoints:
            state = load_checkpoint(checkpoints[-1], self.pipeline, optimizer.optimizer)
            step, epoch, batches_done = state["step"], state["epoch"], state["batches_done"]
            result.losses = [tuple(x) for x in state.get("losses", [])]
            result.skipped_samples = state.get("skipped_samples", [])
            result.resumed_from = str(checkpoints[-1])
            self.log(f"{stage}: resuming from {checkpoints[-1]} (step {step}/{total})")
        n_trainable = sum(p.numel() for p in trainable)
        self.log(
            f"{stage}: {total} steps, lr {settings.learning_rate:g} (warm-up {settings.warmup_steps}), "
            f"{n_trainable:,} trainable parameters, global batch "
            f"{self.recipe.data.batch_size * acc.num_processes * accum}"
        )
        self._set_modes(stage)
        seed = self.recipe.train.seed
        stage_index = STAGES.index(stage)
        rank, world = self._rank()
        samples_per_step = self.recipe.data.batch_size * world * accum
        bar = self._progress(stage, total, step)
        start = time.perf_counter()
        last_time, micro, running, skipped = start, step * accum, [], []
        while step < total:
            for batch in self._epoch(loader, epoch, batches_done, batches_per_epoch):
                batches_done += 1
                skipped.extend(batch["skipped"])
                torch.manual_seed(step_seed(seed, stage_index, micro, rank))
                micro += 1
                with acc.accumulate(model):
                    for group in optimizer.param_groups:
                        group["lr"] = learning_rate(settings.learning_rate, settings.warmup_steps, step)
                    loss = model(batch["pixel_values"].to(acc.device, non_blocking=True))
                    acc.backward(loss)
                    if acc.sync_gradients and settings.max_grad_norm:
                        acc.clip_grad_norm_(trainable, settings.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                running.append(loss.detach())
                if not acc.sync_gradients:
                    continue
                step += 1
                mean_loss = acc.reduce(torch.stack(running).mean(), reduction="mean").item()
                running = []
                now = time.perf_counter()
                throughput = samples_per_step / max(now - last_time, 1e-9)
                last_time = now
                lr = optimizer.param_groups[0]["lr"]
                result.losses.append((step, mean_loss))
                bar.update(1)
                bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.2e}", samples_s=f"{throughput:.1f}")
                if bar.disable and self.show_progress and (step % self.recipe.train.log_every == 0 or step == total):
                    # no terminal (cluster logs, CI): a plain line instead of a redrawn bar
                    self.log(f"{stage} step {step}/{total} loss {mean_loss:.4f} lr {lr:.2e} {throughput:.1f} samples/s")
                if self.recipe.train.report_to and step % self.recipe.train.log_every == 0:
                    acc.log({f"{stage}/loss": mean_loss, f"{stage}/lr": lr, f"{stage}/samples_per_s": throughput}, step=step)
                self.manager.hook.genhancer_step_end(
                    step=StepInfo(stage, step, total, mean_loss, lr, throughput, rank, self.modules())
                )
                preview = self.recipe.preview
                if preview.images and preview.every and step % preview.every == 0 and step < total:
                    self.write_preview(stage_dir / "reconstructions" / f"step-{step}.png")
                every = self.recipe.train.checkpoint_every
                if every and step % every == 0 and step < total:
                    result.skipped_samples += self._gather_skipped(skipped)
                    skipped = []
                    self._save_checkpoint(ckpt_dir, optimizer.optimizer, step, epoch, batches_done, result)
                if step >= total:
                    break
            else:
                epoch, batches_done = epoch + 1, 0
        bar.close()
        result.skipped_samples += self._gather_skipped(skipped)
        if result.skipped_samples:
            first = ", ".join(result.skipped_samples[:5])
            self.log(f"{stage}: skipped {len(result.skipped_samples)} unreadable sample(s), first: {first}")
        result.steps = step
        result.final_loss = result.losses[-1][1] if result.losses else None
        result.wall_time_s = time.perf_counter() - start
        self._save_checkpoint(ckpt_dir, optimizer.optimizer, step, epoch, batches_done, result)
        if acc.is_main_process:
            final_dir.mkdir(parents=True, exist_ok=True)
            from safetensors.torch import save_file

            save_file(self._stage_state(), final_dir / WEIGHTS_FILE, metadata={"format": "pt"})
            (final_dir / STATE_FILE).write_text(
                json.dumps({"step": step, "final_loss": result.final_loss, "losses": result.losses,
                            "wall_time_s": result.wall_time_s, "skipped_samples": result.skipped_samples})
            )
        acc.wait_for_everyone()
        if self.recipe.preview.images:
            self.write_preview(stage_dir / "reconstructions.png")
        self.log(f"{stage}: done, final loss {result.final_loss:.4f}, {result.wall_time_s:.1f} s -> {final_dir}")
        self.manager.hook.genhancer_stage_end(
            stage=StageInfo(stage, step, result.final_loss, stage_dir, self.modules(), *self._rank())
        )
        return result

    def write_preview(self, path: Path) -> None:
        """A reconstruction grid of the first images (main process; the others wait)."""
        from .reconstruct import reconstruct, save_grid

        if self.accelerator.is_main_process:
            images = self._probe_images(self.recipe.preview.images).to(self.accelerator.device)
            with self.accelerator.autocast():
                outputs = reconstruct(self.pipeline, images, steps=self.recipe.preview.sampling_steps, seed=self.recipe.train.seed)
            save_grid(images, outputs, path)
        self.accelerator.wait_for_everyone()

    def _save_checkpoint(self, ckpt_dir: Path, optimizer: torch.optim.Optimizer, step: int, epoch: int, batches_done: int, result: StageResult) -> None:
        if self.accelerator.is_main_process:
            state = {"step": step, "epoch": epoch, "batches_done": batches_done, "losses": result.losses,
                     "skipped_samples": result.skipped_samples}
            save_checkpoint(ckpt_dir / f"checkpoint-{step}", self.pipeline, optimizer, state)
            prune_checkpoints(ckpt_dir, self.recipe.train.keep_checkpoints)
        self.accelerator.wait_for_everyone()

    def _progress(self, stage: str, total: int, initial: int) -> Any:
        from tqdm.auto import tqdm

        interactive = sys.stderr.isatty()
        disable = not (self.show_progress and self.accelerator.is_main_process and interactive)
        return tqdm(total=total, initial=initial, desc=stage, unit="step", disable=disable, dynamic_ncols=True)

    # -- phase 4 ---------------------------------------------------------
    def export(self) -> dict[str, Any]:
        """Merge LoRA, write the HF directory, reload it and compare outputs."""
        acc = self.accelerator
        encoder = self.pipeline.encoder
        encoder.eval()
        probe = self._probe_images(4).to(acc.device)
        with torch.no_grad():
            before = encoder(probe).global_token.float()
        merge_lora(encoder)
        export_dir = self.output_dir / "export"
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[self.recipe.export.dtype]
        info: dict[str, Any] = {"directory": str(export_dir), "dtype": self.recipe.export.dtype}
        if dtype != torch.float32:
            # What the export will hold: the trained weights rounded to ``dtype`` (training is over).
            with torch.no_grad():
                for param in encoder.parameters():
                    param.copy_(param.to(dtype).float())
                rounded = encoder(probe).global_token.float()
            info["rounding_max_abs_diff"] = float((before - rounded).abs().max())
            before = rounded
        if acc.is_main_process:
            tmp = export_dir.with_name("export.tmp")
            if tmp.exists():
                shutil.rmtree(tmp)
            encoder.save_pretrained(tmp, dtype=dtype)
            comp = self.components["encoder"]
            reloaded = comp.registered.spec.factory(comp.params.model_copy(update={"source": str(tmp)}))
            reloaded.to(acc.device).float().eval()
            with torch.no_grad():
                after = reloaded(probe).global_token.float()
            diff = float((before - after).abs().max())
            if diff > EXPORT_TOLERANCE:
                raise RunError(f"exported encoder differs from the trained one by {diff:.2e} (> {EXPORT_TOLERANCE:g}); kept in {tmp}")
            info["max_abs_diff"] = diff
            described = encoder.describe()
            metadata = {
                "genhancer_version": __version__,
                "recipe": self.recipe.name,
                "encoder": described,
                # Image-text evaluation of a vision-only export needs the text tower it came from.
                "text_tower_from": None if described.get("has_text_tower") else described.get("source"),
                "export_check_max_abs_diff": diff,
                "dtype": self.recipe.export.dtype,
            }
            (tmp / "genhancer.json").write_text(json.dumps(metadata, indent=2))
            (tmp / "README.md").write_text(model_card(self.recipe.name, described, dump_yaml(self.loaded.raw)))
            if export_dir.exists():
                shutil.rmtree(export_dir)
            tmp.rename(export_dir)
            self.log(f"export: {export_dir} (reloaded and matched, max |diff| {diff:.1e})")
        acc.wait_for_everyone()
        self.manager.hook.genhancer_export_end(export=ExportInfo(export_dir, self.recipe, acc.process_index))
        return info

    # -- evaluation (before training and after export) ---------------------
    def _original_source(self) -> str:
        """Where the untouched encoder can be loaded from: its source, or a copy written now."""
        source = getattr(self.components["encoder"].params, "source", None)
        if source:
            return str(source)
        if not hasattr(self, "pipeline"):
            raise RunError("the original encoder has no source to load: set llava.original_tower (or the encoder's source)")
        original = self.output_dir / "original"
        if self.accelerator.is_main_process and not (original / "config.json").is_file():
            self.pipeline.encoder.save_pretrained(original)
        return str(original)

    def evaluate(self, phase: str, source: str) -> None:
        """Apply every recipe evaluator to ``source`` (main process); ``phase`` is original or enhanced."""
        from .evaluation import evaluate_one, load_model, read_result, write_comparison

        if not self.evaluators:
            return
        if self.accelerator.is_main_process:
            device = str(self.accelerator.device)
            model = None
            for spec, evaluator in zip(self.evaluator_specs, self.evaluators):
                folder = self.output_dir / "eval" / evaluator.name
                result = read_result(folder, phase) if self.resume else None
                if result is None:
                    model = model or load_model(self.manager, source, device=device)
                    self.log(f"eval: {evaluator.name} on the {phase} encoder ({source})")
                    result = evaluate_one(evaluator, model, phase, folder)
                entry = self.eval_results.setdefault(evaluator.name, {})
                entry[phase] = result
                if phase == "enhanced" and "original" in entry:
                    table = write_comparison(evaluator, {"original": entry["original"], "enhanced": result}, folder, reference="original")
                    self.log(f"{evaluator.name} (original vs enhanced):\n{table}")
        self.accelerator.wait_for_everyone()

    def run_llava(self) -> dict[str, Any]:
        """LLaVA-1.5 phases and benchmarks for each tower (see llava_integration.pipeline)."""
        from llava_integration.pipeline import run_llava

        settings = self.recipe.llava
        towers = {}
        for label in settings.towers:
            if label == "enhanced":
                towers[label] = settings.tower or str(self.output_dir / "export")
            else:
                towers[label] = settings.original_tower or self._original_source()
        evaluators = []
        for spec in self.llava_eval_specs:
            try:
                evaluators.append((spec, spec.build()))
            except (FileNotFoundError, ValueError) as exc:
                raise RunError(f"{spec.section} ({spec.ref.name}): {exc}") from None
        summary = run_llava(settings, towers, self.output_dir, evaluators, self.recipe.train.seed, self.resume, self.log,
                            self.accelerator.is_main_process)
        self.accelerator.wait_for_everyone()
        return summary

    def _eval_summary(self) -> dict[str, Any]:
        summary = {}
        for name, phases in self.eval_results.items():
            entry = {phase: result.metrics for phase, result in phases.items()}
            if "original" in phases and "enhanced" in phases:
                a, b = phases["original"].metrics, phases["enhanced"].metrics
                entry["difference"] = {k: b[k] - v for k, v in a.items() if k in b}
                entry["primary"] = phases["original"].primary
            summary[name] = entry
        return summary

    # -- phase 5 ---------------------------------------------------------
    def write_summary(self, wall_time: float, completed: bool) -> dict[str, Any]:
        summary = {
            "recipe": self.recipe.name,
            "recipe_files": [str(p) for p in self.loaded.files],
            "resolved_recipe": self.loaded.raw,
            "versions": library_versions(),
            "num_processes": self.accelerator.num_processes,
            "mixed_precision": self.accelerator.mixed_precision,
            "stages": {
                name: {"steps": r.steps, "final_loss": r.final_loss, "wall_time_s": round(r.wall_time_s, 2),
                       "resumed_from": r.resumed_from, "already_finished": r.already_finished, "losses": r.losses,
                       "skipped_samples": {"count": len(r.skipped_samples), "first": r.skipped_samples[:20]}}
                for name, r in self.results.items()
            },
            "export": self.export_info,
            "eval": self._eval_summary(),
            "llava": self.llava_summary,
            "wall_time_s": round(wall_time, 2),
            "completed": completed,
        }
        if self.accelerator.is_main_process:
            (self.output_dir / "run.json").write_text(json.dumps(summary, indent=2))
        return summary

    def execute(self) -> dict[str, Any]:
        start = time.perf_counter()
        self.setup_accelerator()
        self.prepare_output()
        if self.recipe.active_stages():
            self.setup_models()
            if self.evaluators:
                self.evaluate("original", self._original_source())
            for stage in self.recipe.active_stages():
                self.results[stage] = self.train_stage(stage, getattr(self.recipe, stage))
                self.write_summary(time.perf_counter() - start, completed=False)
            if self.recipe.export.enabled and self.recipe.stage2.enabled:
                self.export_info = self.export()
                self.evaluate("enhanced", str(self.output_dir / "export"))
            elif self.recipe.export.enabled:
                self.log("export skipped: stage2 is disabled, the encoder is unchanged")
        if self.recipe.llava:
            self.llava_summary = self.run_llava()
        summary = self.write_summary(time.perf_counter() - start, completed=True)
        if self.recipe.train.report_to:
            self.accelerator.end_training()
        return summary


def load_trained_pipeline(run_dir: str | Path, manager: PluginManager, stage: str | None = None) -> tuple[Pipeline, LoadedRecipe, str]:
    """Rebuild a run's pipeline from ``run_dir/recipe.yaml`` and its newest
    finished stage (or ``stage``); returns the pipeline, recipe and stage used."""
    from .recipe import load_recipe

    run_dir = Path(run_dir)
    if not (run_dir / "recipe.yaml").is_file():
        raise RunError(f"{run_dir} is not a run directory (no recipe.yaml)")
    loaded = load_recipe(run_dir / "recipe.yaml")
    finished = [s for s in STAGES if (run_dir / s / "final" / STATE_FILE).is_file()]
    if stage is None:
        if not finished:
            raise RunError(f"{run_dir}: no finished stage yet (no <stage>/final)")
        stage = finished[-1]
    elif stage not in finished:
        raise RunError(f"{run_dir}: {stage} has not finished (finished: {', '.join(finished) or 'none'})")
    from accelerate.utils import set_seed

    components = resolve_components(loaded, manager)
    pretrainer = resolve_pretrainer(loaded, manager)
    if pretrainer is not None:  # cached by the run: nothing trains here
        apply_pretrainer(components, pretrainer.build(seed=loaded.recipe.train.seed).encoder_params(cache_root(), lambda m: None))
    set_seed(loaded.recipe.train.seed)  # the run's initialisation of anything the stage did not save
    models = build_models(components)
    pipeline = Pipeline(models["encoder"], models["conditioner"], models["tokenizer"], models["denoiser"])
    weights = run_dir / stage / "final" / WEIGHTS_FILE
    from safetensors import safe_open

    with safe_open(str(weights), "pt") as f:
        uses_lora = any("lora_" in key for key in f.keys())
    if uses_lora:
        apply_lora(pipeline.encoder, loaded.recipe.stage2.lora)
    load_weights(weights, pipeline)
    return pipeline.eval(), loaded, stage


def model_card(name: str, described: dict[str, Any], recipe_yaml: str) -> str:
    source = described.get("source") or "randomly initialised (test/demo configuration)"
    return f"""---
library_name: transformers
tags: [genhancer, vision, clip]
---
# {name}: GenHancer-enhanced {described.get('family', '')} vision encoder

Post-trained from `{source}` ({described.get('architecture')}) with GenHancer: a lightweight
denoiser reconstructed each image from the encoder's global token only, first with the encoder
frozen, then with the encoder adapted through LoRA (merged into these weights).

Load it with plain transformers, for example:

```python
from transformers import AutoModel, AutoImageProcessor
model = AutoModel.from_pretrained("path/to/this/directory")
processor = AutoImageProcessor.from_pretrained("path/to/this/directory")
```

LLaVA-1.5 users can pass this directory as `--vision_tower`.

## Recipe
```yaml
{recipe_yaml}```
"""
