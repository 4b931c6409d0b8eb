"""``genhancer bench``: what a recipe costs before a cluster job starts.

Every component is built at the recipe's sizes with random weights (no download:
a component whose params have a ``source`` builds from its ``config`` when the
source is null, the convention of the built-in encoders and tokenizers; no data:
random images at the encoder's resolution). Per stage and batch size it times a
few steps split by component, reads peak memory, and counts training FLOPs (one
forward + backward, counted by ``torch.utils.flop_counter`` on the model itself;
the optimiser's few FLOPs per parameter are left out). ``dry`` counts FLOPs on the meta device only: nothing runs,
nothing is allocated, any size fits.
"""

from __future__ import annotations

import resource
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch

from genhancer_plugins.interfaces import count_parameters
from genhancer_plugins.recipe.build import plan_pretrainer, resolve_components
from genhancer_plugins.recipe.schema import STAGE1, LoadedRecipe
from genhancer_plugins.registry.components import construction_device
from genhancer_plugins.training.anchor import frozen_in_compute_dtype
from genhancer_plugins.training.model import GenHancerModel, build_model
from genhancer_plugins.training.stage import enter_stage
from genhancer_plugins.util.dtypes import compute_dtype
from genhancer_plugins.util.tables import text_table

#: Dense bf16 tensor-core peaks (TFLOP/s) by device name, for MFU when --peak-tflops is not given.
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0}
PARTS = (*GenHancerModel.PARTS, "backward", "optimizer")


@dataclass
class BenchRow:
    stage: str
    batch_size: int
    flops_per_image: float | None  #: None: not one image fitted in memory
    trainable_parameters: int
    images_per_s: float | None = None
    step_ms: float | None = None
    split_ms: dict[str, float] = field(default_factory=dict)
    peak_memory_gb: float | None = None
    memory_kind: str = ""
    achieved_tflops: float | None = None
    mfu: float | None = None
    error: str | None = None


def random_weight_components(loaded: LoadedRecipe, manager: Any) -> dict[str, Any]:
    """The recipe's components, with every ``source`` set to null: random weights at the preset's sizes
    (and the encoder at the architecture the recipe's pretrainer would produce)."""
    components = resolve_components(loaded, manager)
    plan_pretrainer(loaded, manager, components)
    for component in components.values():
        if "source" in type(component.params).model_fields and getattr(component.params, "source", None) is not None:
            component.params = component.params.model_copy(update={"source": None})
    return components


def count_flops(model: GenHancerModel, batch: int, device: str | torch.device) -> float:
    """FLOPs of one training step's forward and backward for ``batch`` images (the model's own ops)."""
    from torch.utils.flop_counter import FlopCounterMode

    size = model.image_size
    images = torch.rand(batch, 3, size, size, device=device)
    with FlopCounterMode(display=False) as counter:
        loss = model(images)
        if loss.requires_grad:
            loss.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def out_of_memory(exc: BaseException) -> bool:
    """A device or host allocation that failed (CUDA raises OutOfMemoryError; the CPU allocator a RuntimeError)."""
    return isinstance(exc, (torch.OutOfMemoryError, MemoryError)) or (isinstance(exc, RuntimeError) and "not enough memory" in str(exc))


def _release(model: GenHancerModel, device: torch.device) -> None:
    model.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.empty_cache()


def flops_per_image(model: GenHancerModel, where: torch.device, log: Callable[[str], None], stage: str) -> float | None:
    """Training FLOPs per image, counted at batch 2 (1 when 2 does not fit); None when not even one image fits."""
    for batch in (2, 1):
        try:
            return count_flops(model, batch, where) / batch
        except (torch.OutOfMemoryError, MemoryError, RuntimeError) as exc:
            if not out_of_memory(exc):
                raise
            _release(model, where)
            log(f"bench: {stage}: counting FLOPs at batch {batch} ran out of memory" + ("; counting at batch 1" if batch == 2 else ""))
    return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30, "device"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "process RSS (peak so far)"


def _frozen_inputs(model: GenHancerModel, images: torch.Tensor, stage: str, cached: bool, autocast: Any) -> dict[str, torch.Tensor]:
    """With the frozen-work cache on, what a warm cache hands every step (computed here by the
    same model methods the cache fills itself with); without it, nothing."""
    if not cached:
        return {}
    frozen = {"target_parameters": model.target_parameters(images)}
    if stage == STAGE1 and not model.conditioner.uses_local_tokens:
        with autocast():
            frozen["global_token"] = model.frozen_global_token(images)
    return frozen


def _timed_step(model: GenHancerModel, optimizer: torch.optim.Optimizer, images: torch.Tensor, frozen: dict[str, torch.Tensor],
                autocast: Any) -> dict[str, float]:
    """One training step through the model's own forward, timed at the marks it sets."""
    device = images.device
    marks = []

    def mark(part: str = "") -> None:
        _sync(device)
        marks.append(time.perf_counter())

    mark()
    with autocast():
        loss = model(images, mark=mark, **frozen)
    loss.backward()
    mark()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    mark()
    return {part: 1000 * (b - a) for part, a, b in zip(PARTS, marks, marks[1:])}


def _peak(device: torch.device, given: float | None) -> float | None:
    if given:
        return given
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_TFLOPS.items() if key in name), None)


def run_bench(loaded: LoadedRecipe, manager: Any, batch_sizes: list[int], stages: list[str], steps: int = 3, warmup: int = 1,
              dry: bool = False, device: str | None = None, peak_tflops: float | None = None,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    from genhancer_plugins.util.threads import set_cpu_threads

    recipe = loaded.recipe
    log(f"bench: {set_cpu_threads(recipe.train.num_threads)}")
    device_ = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = build_model(loaded, manager, random_weight_components(loaded, manager), run_pretrainer=False, meta=dry)
    if not dry:
        model.to(device_)
    where = torch.device("meta") if dry else device_
    precision = recipe.train.mixed_precision
    if precision == "auto":
        precision = "bf16" if device_.type == "cuda" and torch.cuda.is_bf16_supported() else "no"
    dtype = compute_dtype(precision)
    cached = recipe.cache.enabled and bool(recipe.data.fixed_crops)

    def autocast() -> Any:
        return torch.autocast(device_.type, dtype=dtype) if dtype is not None else torch.autocast(device_.type, enabled=False)

    sizes = {"encoder": count_parameters(model.encoder), "denoiser": count_parameters(model.denoiser),
             "projector": count_parameters(model.conditioner), "tokenizer": count_parameters(model.tokenizer)}
    rows: list[BenchRow] = []
    for stage in stages:
        with construction_device(dry):
            enter_stage(model, recipe, stage, where)  # the trainable set and anchor training has
        trainable = [p for p in model.parameters() if p.requires_grad]
        flops = flops_per_image(model, where, log, stage)
        cast = stage == STAGE1 and recipe.train.cast_frozen and not dry
        for batch in batch_sizes:
            row = BenchRow(stage, batch, flops, sum(p.numel() for p in trainable))
            rows.append(row)
            if flops is None:  # not one image fits: no batch will; the other stages still run
                row.error = "out of memory at batch 1"
                continue
            if dry:
                continue
            log(f"bench: {stage} at batch {batch} ({warmup} warm-up + {steps} timed steps)")
            fused = device_.type == "cuda"  # fused AdamW: one kernel per step where the device has it
            optimizer = torch.optim.AdamW(trainable, lr=1e-5, fused=fused) if fused else torch.optim.AdamW(trainable, lr=1e-5)
            if device_.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device_)
            size = model.image_size
            try:
                timings = []
                with frozen_in_compute_dtype(model.encoder, precision if cast else "no"):  # as stage 1 trains
                    for index in range(warmup + steps):
                        images = torch.rand(batch, 3, size, size, device=device_)
                        frozen = _frozen_inputs(model, images, stage, cached, autocast)
                        split = _timed_step(model, optimizer, images, frozen, autocast)
                        if index >= warmup:
                            timings.append(split)
            except (torch.OutOfMemoryError, MemoryError, RuntimeError) as exc:
                if not out_of_memory(exc):
                    raise
                row.error = "out of memory"
                log(f"bench: {stage} at batch {batch} did not fit in memory; going on with the other batch sizes")
                optimizer.zero_grad(set_to_none=True)
                del optimizer
                _release(model, device_)
                continue
            row.split_ms = {part: sum(t[part] for t in timings) / len(timings) for part in PARTS}
            row.step_ms = sum(row.split_ms.values())
            row.images_per_s = 1000 * batch / row.step_ms
            row.peak_memory_gb, row.memory_kind = _peak_memory(device_)
            row.achieved_tflops = flops * batch / (row.step_ms / 1000) / 1e12
            peak = _peak(device_, peak_tflops)
            row.mfu = row.achieved_tflops / peak if peak else None
            del optimizer
    return {"recipe": loaded.recipe.name, "device": str(device_) if not dry else "meta (FLOPs only)",
            "device_name": torch.cuda.get_device_name(device_) if device_.type == "cuda" and not dry else None,
            "precision": precision, "image_size": model.image_size, "parameters": sizes,
            "frozen_work": "from a warm cache" if cached else "computed every step",
            "peak_tflops": None if dry else _peak(device_, peak_tflops), "rows": [asdict(r) for r in rows]}


def render_bench(result: dict[str, Any]) -> str:
    lines = [f"recipe {result['recipe']} on {result['device']}" + (f" ({result['device_name']})" if result["device_name"] else "")
             + f", precision {result['precision']}, image size {result['image_size']}, frozen work {result.get('frozen_work', '-')}",
             "parameters: " + ", ".join(f"{k} {v:,}" for k, v in result["parameters"].items())]
    header = ["stage", "batch", "GFLOP/image", "images/s", "step ms", *PARTS, "peak GB", "TFLOP/s", "MFU"]
    rows = []
    for r in result["rows"]:
        split = [f"{100 * r['split_ms'][p] / r['step_ms']:.0f}%" if r["step_ms"] else "-" for p in PARTS]
        flops = r["flops_per_image"]
        rows.append([r["stage"], r["batch_size"], f"{flops / 1e9:,.4g}" if flops is not None else "-",
                     r["error"] or (f"{r['images_per_s']:.2f}" if r["images_per_s"] is not None else "-"),
                     f"{r['step_ms']:.0f}" if r["step_ms"] else "-", *split,
                     f"{r['peak_memory_gb']:.2f}" if r["peak_memory_gb"] is not None else "-",
                     f"{r['achieved_tflops']:.3f}" if r["achieved_tflops"] is not None else "-",
                     f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "-"])
    lines.append(text_table(header, rows))
    memory = next((r["memory_kind"] for r in result["rows"] if r["memory_kind"]), "")
    if memory:
        lines.append(f"peak memory: {memory}; step split: share of the step per component; FLOPs: forward + backward, counted")
    return "\n".join(lines)

