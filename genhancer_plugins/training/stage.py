"""One training stage: which parameters train, the optimiser, the loop, resume.

- stage1: encoder frozen; projector and denoiser train (paper lr 1e-4);
- stage2: encoder adapted with LoRA (or fully); projector and denoiser keep
  training ("all") or stay frozen ("only") (paper lr 1e-5).

A finished stage leaves ``<stage>/final`` (the trained tensors, the state, and
the denoiser in its own library's layout under ``final/denoiser``, unless it is a
frozen pretrained network, which every build loads from its source);
``--resume`` skips it and continues an unfinished one from its newest
checkpoint. Per-step behaviour that is not training (progress, log lines,
trackers, previews) lives in :mod:`genhancer_plugins.training.callbacks`, reached
through the lifecycle hooks like any plugin.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from genhancer_plugins.events import StageInfo, StepInfo
from genhancer_plugins.recipe.schema import STAGE1, STAGE2, STAGES, Recipe, StageSettings
from genhancer_plugins.training.anchor import anchor_reference, frozen_in_compute_dtype, make_anchor
from genhancer_plugins.training.cache import cached_inputs
from genhancer_plugins.training.checkpoint import (
    STATE_FILE,
    WEIGHTS_FILE,
    gathered_tensors,
    list_checkpoints,
    load_checkpoint,
    load_weights,
    prune_checkpoints,
    save_checkpoint,
)
from genhancer_plugins.training.context import TrainingContext
from genhancer_plugins.training.lora import apply_lora, has_lora, mark_lora_trainable
from genhancer_plugins.training.model import GenHancerModel, collate
from genhancer_plugins.training.nonfinite import NonFiniteGuard
from genhancer_plugins.training.sharding import full
from genhancer_plugins.util.errors import RunError
from genhancer_plugins.util.files import respect_umask, save_tensors, write_json
from genhancer_plugins.util.seeds import step_seed

#: What reading a torn or truncated checkpoint raises (JSONDecodeError is a ValueError).
UNREADABLE = (OSError, ValueError, KeyError, SafetensorError)


def learning_rate(base: float, warmup_steps: int, step: int, total: int = 0, decay: str = "constant") -> float:
    """A linear warm-up (if any), then constant or a cosine to 0 at step ``total`` (``step`` counts from 0)."""
    if step < warmup_steps:
        return base * (step + 1) / (warmup_steps + 1)
    if decay == "cosine":
        progress = (step - warmup_steps) / max(1, total - warmup_steps)
        return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return base


@dataclass
class StageResult:
    steps: int = 0
    final_loss: float | None = None
    wall_time_s: float = 0.0
    resumed_from: str | None = None
    already_finished: bool = False
    losses: list[tuple[int, float]] = field(default_factory=list)
    skipped_samples: list[str] = field(default_factory=list)  #: unreadable samples met (all processes)

    def summary(self) -> dict[str, Any]:
        return {"steps": self.steps, "final_loss": self.final_loss, "wall_time_s": round(self.wall_time_s, 2),
                "resumed_from": self.resumed_from, "already_finished": self.already_finished, "losses": self.losses,
                "skipped_samples": {"count": len(unique := list(dict.fromkeys(self.skipped_samples))),
                                    "encounters": len(self.skipped_samples), "first": unique[:20]}}


def configure_trainable(model: GenHancerModel, stage: str, recipe: Recipe, device: Any) -> None:
    """Which parameters train in ``stage``, and the LoRA it needs."""
    model.requires_grad_(False)
    if stage == STAGE1:
        model.conditioner.requires_grad_(True)
        train_denoiser(model.denoiser)
        return
    s2 = recipe.stage2
    if s2.encoder_tuning == "lora":
        if not has_lora(model.encoder):
            apply_lora(model.encoder, s2.lora)
            model.encoder.to(device)
        mark_lora_trainable(model.encoder, s2.lora.bias)
    else:
        for param in model.encoder.vision_parameters():
            param.requires_grad_(True)
    if s2.mode == "all":
        model.conditioner.requires_grad_(True)
        train_denoiser(model.denoiser)


def train_denoiser(denoiser: Any) -> None:
    denoiser.requires_grad_(True)
    for param in denoiser.frozen_parameters():  # e.g. a pretrained transformer the recipe keeps frozen
        param.requires_grad_(False)


def loader_options(data: Any, on_gpu: bool, per_epoch: bool = False) -> dict[str, Any]:
    """DataLoader options from the recipe's ``data`` section: ``pin_memory: auto`` pins on a GPU only,
    ``persistent_workers: auto`` keeps workers across epochs whenever there are any, unless the dataset
    takes the epoch (``per_epoch``: it has ``set_epoch``), which a kept worker's copy would never see: every
    epoch would then repeat the first one's order and crops."""
    if per_epoch and data.num_workers > 0 and data.persistent_workers is True:
        raise RunError(f"data.persistent_workers: true keeps the loader's workers across epochs, but dataset {data.name!r} "
                       "reshuffles and re-crops per epoch (set_epoch), which their copies would not see; set it to auto or false")
    return {
        "batch_size": data.batch_size, "drop_last": True, "num_workers": data.num_workers, "collate_fn": collate,
        "pin_memory": on_gpu if data.pin_memory == "auto" else data.pin_memory,
        "persistent_workers": data.num_workers > 0 and not per_epoch and data.persistent_workers in ("auto", True),
    }


def enter_stage(model: GenHancerModel, recipe: Recipe, stage: str, device: Any) -> None:
    """What every step of ``stage`` trains: the trainable set (and LoRA) and stage 2's anchor.
    Training and ``bench`` both start a stage here."""
    from accelerate.utils import set_seed

    # Stage-level randomness (LoRA initialisation) must not depend on how
    # much of the previous stage ran in this process: resume relies on it.
    set_seed(step_seed(recipe.train.seed, STAGES.index(stage), 2**31 - 1))
    original = anchor_reference(model.encoder, recipe, stage)
    configure_trainable(model, stage, recipe, device)
    model.anchor = make_anchor(model.encoder, recipe.stage2.anchor, original)


def stage_state(model: GenHancerModel) -> dict[str, torch.Tensor]:
    """What a finished stage hands on: projector and denoiser (trained or not: ``stage2.mode: only``
    keeps them frozen), and the trained encoder weights. A pretrained network the denoiser keeps
    frozen (``Denoiser.frozen_parameters``) is not copied: every build loads it from its source."""
    never_trained = {id(p) for p in model.denoiser.frozen_parameters()}
    return gathered_tensors(model, lambda name, param: param.requires_grad
                            or (name.startswith(("conditioner.", "denoiser.")) and id(param) not in never_trained))


class StageTrainer:
    """Trains one stage with what a :class:`TrainingContext` holds."""

    def __init__(self, context: TrainingContext, stage: str):
        self.ctx = context
        self.stage = stage
        self.settings: StageSettings = context.recipe.stage_settings(stage)
        self.directory = context.output_dir / stage
        self.final_dir = self.directory / "final"
        self.checkpoints = self.directory / "checkpoints"

    # -- set-up ----------------------------------------------------------------
    def _finished(self) -> StageResult | None:
        if not (self.final_dir / STATE_FILE).is_file():
            return None
        try:
            saved = json.loads((self.final_dir / STATE_FILE).read_text())
            s = self.settings
            if (s.steps or 0) > saved["step"] or (s.steps is None and s.epochs > saved.get("epochs", s.epochs)):
                self.ctx.log(f"{self.stage}: finished at step {saved['step']}; the recipe asks for more: continuing from its last checkpoint")
                return None
            load_weights(self.final_dir / WEIGHTS_FILE, self.ctx.model)
        except UNREADABLE as exc:  # torn by a crash: the stage's last checkpoint finishes it again
            self.ctx.log(f"warning: {self.final_dir} is unreadable ({exc}); finishing {self.stage} again from its last checkpoint")
            return None
        self.ctx.log(f"{self.stage}: already finished in {self.final_dir}; loaded its weights")
        return StageResult(steps=saved["step"], final_loss=saved.get("final_loss"), already_finished=True,
                           wall_time_s=saved.get("wall_time_s", 0.0), losses=[tuple(x) for x in saved.get("losses", [])],
                           skipped_samples=saved.get("skipped_samples", []))

    def _stage2_start(self) -> None:
        recipe = self.ctx.recipe
        if self.stage != STAGE2 or STAGE1 in recipe.active_stages():
            return
        if recipe.stage2.init_from:
            self._init_from(recipe.stage2.init_from)
        elif recipe.schedule == "end_to_end":
            tuning = "encoder LoRA" if recipe.stage2.encoder_tuning == "lora" else "the whole encoder"
            denoiser = "the projector (the denoiser stays frozen)" if self.ctx.model.denoiser.frozen_parameters() else "the denoiser"
            self.ctx.log(f"stage2: end-to-end schedule: {tuning} and {denoiser} train together from step 0")
        else:
            self.ctx.log("warning: stage1 is disabled and stage2.init_from is empty: the denoiser starts untrained")

    def _init_from(self, source: str) -> None:
        path = Path(source)
        candidates = [path / STAGE1 / "final" / WEIGHTS_FILE, path / WEIGHTS_FILE, path]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise RunError(f"stage2.init_from: no stage-1 weights at {source} (looked for {', '.join(map(str, candidates[:2]))})")
        loaded = load_weights(found, self.ctx.model, prefixes=("conditioner.", "denoiser."))
        self.ctx.log(f"stage2 starts from {found} ({len(loaded)} tensors)")

    def _dataloader(self) -> torch.utils.data.DataLoader:
        dataset = self.ctx.dataset
        options = loader_options(self.ctx.recipe.data, on_gpu=torch.cuda.is_available(), per_epoch=hasattr(dataset, "set_epoch"))
        if self.ctx.streaming:
            return torch.utils.data.DataLoader(dataset, **options)
        return torch.utils.data.DataLoader(dataset, shuffle=True, generator=torch.Generator().manual_seed(self.ctx.recipe.train.seed),
                                           **options)

    def _total_steps(self, batches_per_epoch: int) -> int:
        if self.settings.steps:
            return self.settings.steps
        recipe, acc = self.ctx.recipe, self.ctx.accelerator
        per_epoch = batches_per_epoch // recipe.train.gradient_accumulation_steps
        if per_epoch == 0:
            raise RunError(
                f"one epoch of {len(self.ctx.dataset)} images gives no optimisation step at batch size "
                f"{recipe.data.batch_size} x {acc.num_processes} process(es) x "
                f"{recipe.train.gradient_accumulation_steps} accumulation; use more images or a smaller batch"
            )
        return max(1, math.ceil(self.settings.epochs * per_epoch))

    def _epoch(self, loader: Any, epoch: int, batches_done: int, batches_per_epoch: int) -> Any:
        """The batches of ``epoch`` not consumed yet (resume skips ``batches_done``)."""
        if self.ctx.streaming:
            self.ctx.dataset.set_epoch(epoch)
            return itertools.islice(iter(loader), batches_done, batches_per_epoch)
        loader.set_epoch(epoch)
        if hasattr(self.ctx.dataset, "set_epoch"):  # its random crops are keyed by (seed, epoch, index)
            self.ctx.dataset.set_epoch(epoch)
        return self.ctx.accelerator.skip_first_batches(loader, batches_done) if batches_done else loader

    # -- the stage ---------------------------------------------------------------
    def train(self) -> StageResult:
        ctx, acc, recipe = self.ctx, self.ctx.accelerator, self.ctx.recipe
        enter_stage(ctx.model, recipe, self.stage, acc.device)
        try:
            finished = self._finished()
            return finished if finished is not None else self._train()
        finally:
            ctx.model.anchor = None  # a training term only: export and evaluation need neither it nor its frozen copy

    def _train(self) -> StageResult:
        ctx, acc, recipe = self.ctx, self.ctx.accelerator, self.ctx.recipe
        self._stage2_start()
        if self.ctx.sharded:
            from genhancer_plugins.training.sharding import shard_trainable_parts

            sharded = shard_trainable_parts(ctx.model.parts())
            if sharded:
                ctx.log(f"{self.stage}: sharded over {acc.num_processes} processes (FSDP2): {', '.join(sharded)}")
        trainable = [p for p in ctx.model.parameters() if p.requires_grad]
        s = self.settings
        fused = recipe.train.fused_optimizer
        fused = acc.device.type == "cuda" if fused == "auto" else fused
        if s.optimizer == "sgd":
            optimizer = torch.optim.SGD(trainable, lr=s.learning_rate, momentum=s.momentum, weight_decay=s.weight_decay)
        else:
            optimizer = torch.optim.AdamW(trainable, lr=s.learning_rate, betas=s.betas, weight_decay=s.weight_decay,
                                          **({"fused": True} if fused else {}))
        acc.free_memory()  # drop the previous stage's wrappers
        if self.ctx.sharded:  # FSDP2 hooks already synchronise the shards: no DDP wrapper around the model
            model = ctx.model
            optimizer = acc.prepare(optimizer)
            loader = self._dataloader() if ctx.streaming else acc.prepare(self._dataloader())
        elif ctx.streaming:
            model, optimizer = acc.prepare(ctx.model, optimizer)
            loader = self._dataloader()
        else:
            model, optimizer, loader = acc.prepare(ctx.model, optimizer, self._dataloader())
        batches_per_epoch = len(ctx.dataset) // (recipe.data.batch_size * acc.num_processes) if ctx.streaming else len(loader)
        if batches_per_epoch == 0:  # drop_last would leave every epoch empty: the loop would never end
            per_process = len(ctx.dataset) // acc.num_processes
            raise RunError(f"{len(ctx.dataset)} image(s) make no full batch of data.batch_size {recipe.data.batch_size} on "
                           f"{acc.num_processes} process(es); set data.batch_size to at most {max(per_process, 1)} or add images")
        total = self._total_steps(batches_per_epoch)
        result = StageResult()
        position = self._resume(optimizer, result, total)
        ctx.log(f"{self.stage}: {total} steps, lr {s.learning_rate:g} ({s.lr_schedule}), "
                f"{sum(p.numel() for p in trainable):,} trainable parameters, global batch "
                f"{recipe.data.batch_size * acc.num_processes * recipe.train.gradient_accumulation_steps}")
        ctx.model.train()
        if self.stage == STAGE1:
            ctx.model.encoder.eval()  # frozen: no dropout, fixed statistics
        if ctx.cache is not None:  # rows whose every input is cached skip decoding (stage 2 needs the pixels for the encoder)
            kinds = ("targets", "global_token") if self._cache_encoder else None
            ctx.dataset.fully_cached = (lambda key: ctx.cache.has(key, kinds)) if kinds else None
        self.run_info = ctx.info()
        ctx.notify("genhancer_stage_start", stage=self._info(position[0], None, total))
        start = time.perf_counter()
        cast = self.stage == STAGE1 and recipe.train.cast_frozen
        with frozen_in_compute_dtype(ctx.model.encoder, acc.mixed_precision if cast else "no"):
            step = self._loop(model, optimizer, loader, trainable, total, batches_per_epoch, position, result)
        result.steps = step
        result.final_loss = result.losses[-1][1] if result.losses else None
        result.wall_time_s += time.perf_counter() - start
        self._finish(optimizer, result, position)
        ctx.notify("genhancer_stage_end", stage=self._info(step, result.final_loss, total))
        return result

    def _resume(self, optimizer: Any, result: StageResult, total: int) -> list[int]:
        """[step, epoch, batches done]: zeros, or the newest checkpoint's when resuming."""
        checkpoints = list_checkpoints(self.checkpoints) if self.ctx.resume else []
        state = None
        while checkpoints and state is None:
            try:
                state = load_checkpoint(checkpoints[-1], self.ctx.model, optimizer.optimizer)
            except UNREADABLE as exc:  # a torn newest checkpoint (killed mid-write): the one before it
                self.ctx.log(f"warning: {checkpoints[-1]} is unreadable ({exc}); trying the checkpoint before it")
                checkpoints.pop()
        if state is None:
            return [0, 0, 0]
        result.losses = [tuple(x) for x in state.get("losses", [])]
        result.skipped_samples = state.get("skipped_samples", [])
        result.wall_time_s = state.get("wall_time_s", 0.0)
        result.resumed_from = str(checkpoints[-1])
        self.ctx.log(f"{self.stage}: resuming from {checkpoints[-1]} (step {state['step']}/{total})")
        return [state["step"], state["epoch"], state["batches_done"]]

    def _loop(self, model: Any, optimizer: Any, loader: Any, trainable: list[torch.nn.Parameter], total: int,
              batches_per_epoch: int, position: list[int], result: StageResult) -> int:
        ctx, acc, recipe = self.ctx, self.ctx.accelerator, self.ctx.recipe
        step, epoch, batches_done = position
        seed, stage_index = recipe.train.seed, STAGES.index(self.stage)
        rank, world = acc.process_index, acc.num_processes
        accum = recipe.train.gradient_accumulation_steps
        samples_per_step = recipe.data.batch_size * world * accum
        last_time, running, skipped = time.perf_counter(), [], []
        within = 0  #: micro-batches of this process since the last optimizer step (a resume starts at a step)
        mean_loss = result.losses[-1][1] if result.losses else float("nan")
        started = time.perf_counter()
        guard = NonFiniteGuard(self.stage, recipe.train, acc, self.checkpoints)
        nonfinite = torch.zeros((), device=acc.device)  #: non-finite losses or gradient norms since the last check
        while step < total:
            batches_before = batches_done
            for batch in self._epoch(loader, epoch, batches_done, batches_per_epoch):
                batches_done += 1
                skipped.extend(batch["skipped"])
                # keyed by the micro-batch's place among all of the optimizer step's (the data loader gives process
                # r the step's batches r, r + world, ...): N processes x A accumulation draw exactly the noise of
                # 1 process x N*A on the same batches, so the two train the same model
                torch.manual_seed(step_seed(seed, stage_index, step, within * world + rank))
                within += 1
                with acc.accumulate(model):
                    for group in optimizer.param_groups:
                        group["lr"] = learning_rate(self.settings.learning_rate, self.settings.warmup_steps, step, total,
                                                    self.settings.lr_decay)
                    images = batch["pixel_values"].to(acc.device, non_blocking=True)
                    frozen = {}
                    if ctx.cache is not None:
                        frozen = cached_inputs(ctx.cache, ctx.model, batch, images, self._cache_encoder, acc.autocast)
                    # accelerate's prepare() puts a DDP model's forward under the recipe's autocast; a sharded
                    # model is not prepared, so its forward takes the same autocast here
                    with acc.autocast() if ctx.sharded else contextlib.nullcontext():
                        loss = model(images, **frozen)
                    acc.backward(loss)
                    nonfinite = nonfinite + (~torch.isfinite(loss.detach())).float()
                    if acc.sync_gradients and self.settings.max_grad_norm:
                        norm = acc.clip_grad_norm_(trainable, self.settings.max_grad_norm)
                        if norm is not None:  # under FSDP2 a DTensor: its whole value
                            nonfinite = nonfinite + (~torch.isfinite(full(torch.as_tensor(norm)))).float().to(nonfinite.device)
                    skip = acc.sync_gradients and guard.skip_update(nonfinite, step)
                    if skip:
                        nonfinite = torch.zeros_like(nonfinite)
                    else:
                        optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                running.append(loss.detach())
                if not acc.sync_gradients:
                    continue
                step, within = step + 1, 0
                logged = step % recipe.train.log_every == 0 or step == total
                if recipe.train.loss_sync == "every_step" or logged:
                    mean_loss = acc.reduce(torch.stack(running).mean(), reduction="mean").item()
                    result.losses.append((step, mean_loss))
                running = []  # loss_sync "logged": no device sync between logged steps; hooks see the last logged loss
                now = time.perf_counter()
                throughput = samples_per_step / max(now - last_time, 1e-9)
                last_time = now
                ctx.notify("genhancer_step_end", step=StepInfo(
                    self.stage, step, total, mean_loss, optimizer.param_groups[0]["lr"], throughput, self.run_info))
                every = recipe.train.checkpoint_every
                if logged or (every and step % every == 0) or step >= total:  # never log, save or finish on non-finite weights
                    guard.check(nonfinite, step, trainable)
                    nonfinite = torch.zeros_like(nonfinite)
                if every and step % every == 0 and step < total:
                    result.skipped_samples += ctx.gather(skipped)
                    skipped = []
                    elapsed = result.wall_time_s + time.perf_counter() - started
                    self._checkpoint(optimizer, [step, epoch, batches_done], result, elapsed)
                if step >= total:
                    break
            else:
                if batches_done == batches_before:
                    raise RunError(f"{self.stage}: epoch {epoch} gave no batch (every sample unreadable?); nothing to train on")
                epoch, batches_done = epoch + 1, 0
        position[:] = [step, epoch, batches_done]
        result.skipped_samples += ctx.gather(skipped)
        if result.skipped_samples:
            unique = list(dict.fromkeys(result.skipped_samples))
            ctx.log(f"{self.stage}: skipped {len(unique)} unreadable sample(s) ({len(result.skipped_samples)} times in all), "
                    f"first: {', '.join(unique[:5])}")
        return step

    @property
    def _cache_encoder(self) -> bool:
        """The encoder's output is frozen work only in stage 1, and cached only when no local token is read."""
        return self.stage == STAGE1 and not self.ctx.model.conditioner.uses_local_tokens

    def _checkpoint(self, optimizer: Any, position: list[int], result: StageResult, wall_time_s: float) -> None:
        if self.ctx.cache is not None:
            self.ctx.cache.flush()
        main = self.ctx.accelerator.is_main_process
        if main or self.ctx.sharded:  # sharded tensors are gathered by every process; the first writes
            step, epoch, batches_done = position
            state = {"step": step, "epoch": epoch, "batches_done": batches_done, "losses": result.losses,
                     "skipped_samples": result.skipped_samples, "wall_time_s": wall_time_s}
            save_checkpoint(self.checkpoints / f"checkpoint-{step}", self.ctx.model, optimizer.optimizer, state, write=main)
        if main:
            prune_checkpoints(self.checkpoints, self.ctx.recipe.train.keep_checkpoints)
        self.ctx.accelerator.wait_for_everyone()

    def _finish(self, optimizer: Any, result: StageResult, position: list[int]) -> None:
        """The last checkpoint, then ``final/``: trained tensors, state, and the denoiser in its own layout."""
        self._checkpoint(optimizer, position, result, result.wall_time_s)
        weights = stage_state(self.ctx.model) if (self.ctx.accelerator.is_main_process or self.ctx.sharded) else None
        if self.ctx.accelerator.is_main_process:
            self.final_dir.mkdir(parents=True, exist_ok=True)
            save_tensors(weights, self.final_dir / WEIGHTS_FILE)
            # Its own layout needs whole weights (sharded, they are in final/model.safetensors); a frozen
            # pretrained network is its source's, not copied.
            if not self.ctx.sharded and not self.ctx.model.denoiser.frozen_parameters():
                self.ctx.model.denoiser.save_pretrained(self.final_dir / "denoiser")
                respect_umask(self.final_dir / "denoiser")
            write_json(self.final_dir / STATE_FILE, {"step": result.steps, "epochs": self.settings.epochs, "final_loss": result.final_loss,
                                                     "losses": result.losses, "wall_time_s": result.wall_time_s,
                                                     "skipped_samples": result.skipped_samples})
        self.ctx.accelerator.wait_for_everyone()
        loss = f"{result.final_loss:.4f}" if result.final_loss is not None else "n/a"
        self.ctx.log(f"{self.stage}: done, final loss {loss}, {result.wall_time_s:.1f} s -> {self.final_dir}")

    def _info(self, steps: int, final_loss: float | None, total: int) -> StageInfo:
        return StageInfo(self.stage, steps, final_loss, self.directory, self.run_info, total)
