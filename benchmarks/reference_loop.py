"""Our engine against a plain PyTorch loop written from the paper's Algorithm 1.

The reference recomputes the frozen work every step, as the authors' release does:
images -> frozen tokenizer (fp32) and encoder -> projector -> denoiser loss ->
backward -> AdamW. It uses the same component objects and the same data loader,
so the ratio measures the engine (accelerate, hooks, logging, checkpoints off)
and its options, not different models. Runs are interleaved round by round (the
machine is shared and noisy) and each reports the median step time after warm-up.

    python benchmarks/reference_loop.py                 # CPU size below, 3 rounds
    python benchmarks/reference_loop.py --rounds 5 --steps 12 --json out.json

Prints images/s per variant and stage (min / median / max over rounds) and the
ratio to the reference.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

#: A size where the denoiser is not trivially small on a CPU: 64 px images, a 4-layer
#: 256-wide CLIP, a FLUX-shaped VAE at a quarter of FLUX's widths (32-64-128-128, two
#: layers per block, mid-block attention), and a FLUX-style denoiser of 2 double +
#: 4 single blocks, 256 wide.
SIZE = {
    "encoder": {"name": "clip", "preset": "tiny", "params": {"config": {
        "vision": {"hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 4, "image_size": 64,
                   "patch_size": 8}, "text": None, "projection_dim": 256}}},
    "tokenizer": {"name": "vae", "preset": "tiny", "params": {"config": {
        "block_out_channels": [32, 64, 128, 128], "layers_per_block": 2, "norm_num_groups": 8, "mid_block_add_attention": True}}},
    "denoiser": {"name": "rectified_flow", "preset": "tiny", "params": {
        "num_layers": 2, "num_single_layers": 4, "attention_head_dim": 64, "num_attention_heads": 4, "joint_attention_dim": 256,
        "pooled_projection_dim": 256, "axes_dims_rope": [16, 24, 24]}},
    "conditioner": {"name": "cls"},
    "data": {"name": "synthetic", "params": {"num_images": 4096}, "batch_size": 16},
    "train": {"seed": 0, "mixed_precision": "no", "log_every": 1000},
    "preview": {"images": 0},
}
CACHE_DIR = Path(tempfile.gettempdir()) / "genhancer-bench-cache"
CACHE = ["data.fixed_crops=1", "cache.enabled=true", f"cache.directory={CACHE_DIR}"]
VARIANTS = {
    "engine (default)": [],
    "engine, frozen-work cache (warm)": CACHE,
    "engine, cache + fused AdamW + logged loss": [*CACHE, "train.fused_optimizer=true", "train.loss_sync=logged"],
    "engine, loss sync on logged steps": ["train.loss_sync=logged"],
    "engine, fused AdamW": ["train.fused_optimizer=true"],
    "engine, gradient checkpointing": ["train.gradient_checkpointing=true"],
}


class StepClock:
    """In-process plugin: the wall time of every optimisation step."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}
        self.last = time.perf_counter()

    from genhancer_plugins import hookimpl

    @hookimpl
    def genhancer_stage_start(self, stage: Any) -> None:
        self.last = time.perf_counter()

    @hookimpl
    def genhancer_step_end(self, step: Any) -> None:
        now = time.perf_counter()
        self.times.setdefault(step.stage, []).append(now - self.last)
        self.last = now


def engine(recipe: dict[str, Any], overrides: list[str], steps: int) -> dict[str, float]:
    from genhancer_plugins.testing import run_recipe, write_recipe

    clock = StepClock()
    with tempfile.TemporaryDirectory() as tmp:
        path = write_recipe(Path(tmp), {**recipe, "name": "bench", "stage1": {"steps": steps, "learning_rate": 1e-4},
                                        "stage2": {"steps": steps, "learning_rate": 1e-5}, "export": {"enabled": False}})
        run_recipe(path, Path(tmp) / "out", overrides, plugins=[(clock, "clock")])
    return {stage: statistics.median(times[2:]) for stage, times in clock.times.items()}


def reference(recipe: dict[str, Any], steps: int) -> dict[str, float]:
    """Algorithm 1, written plainly: no accelerate, no hooks, no checkpoints."""
    from accelerate.utils import set_seed
    from peft import LoraConfig, inject_adapter_in_model

    from genhancer_plugins.recipe.build import build_models, resolve_components
    from genhancer_plugins.recipe.schema import load_recipe
    from genhancer_plugins.registry.manager import load_plugins
    from genhancer_plugins.testing import write_recipe
    from genhancer_plugins.training.model import collate

    manager = load_plugins()
    with tempfile.TemporaryDirectory() as tmp:
        loaded = load_recipe(write_recipe(Path(tmp), {**recipe, "name": "bench"}), manager=manager)
    components = resolve_components(loaded, manager)
    set_seed(0)
    parts = build_models(components)
    encoder, tokenizer, denoiser, projector = parts["encoder"], parts["tokenizer"], parts["denoiser"], parts["conditioner"]
    dataset = components["data"].build(image_size=encoder.spec.image_size, seed=0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=recipe["data"]["batch_size"], shuffle=True, drop_last=True, collate_fn=collate)
    result = {}
    for stage, lr in (("stage1", 1e-4), ("stage2", 1e-5)):
        encoder.requires_grad_(False)
        if stage == "stage2":
            inject_adapter_in_model(LoraConfig(r=16, lora_alpha=16, lora_dropout=0.1, target_modules=encoder.lora_target_modules()), encoder)
            encoder.train()
        else:
            encoder.eval()
        trainable = [p for m in (projector, denoiser, encoder) for p in m.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.01)
        times, last = [], time.perf_counter()
        for index, batch in enumerate(loader):
            if index == steps:
                break
            images = batch["pixel_values"]
            with torch.no_grad():
                targets = tokenizer.encode(images)  # frozen, recomputed every step
            loss = denoiser.loss(targets, projector(encoder(images)))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            float(loss)  # the release logs the loss every step
            now = time.perf_counter()
            times.append(now - last)
            last = now
        result[stage] = statistics.median(times[2:])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="steps per stage and run (the first two are warm-up)")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    batch = SIZE["data"]["batch_size"]
    print("filling the frozen-work cache once (the crops every run below meets)...", flush=True)
    engine(SIZE, CACHE, args.steps)
    samples: dict[str, dict[str, list[float]]] = {}
    for round_index in range(args.rounds):
        order = ["reference", *VARIANTS]
        for name in order if round_index % 2 == 0 else reversed(order):  # alternate the order between rounds
            times = reference(SIZE, args.steps) if name == "reference" else engine(SIZE, VARIANTS[name], args.steps)
            for stage, seconds in times.items():
                samples.setdefault(name, {}).setdefault(stage, []).append(batch / seconds)
            print(f"round {round_index + 1}: {name}: " + ", ".join(f"{s} {batch / t:.1f} images/s" for s, t in times.items()), flush=True)
    print()
    print(f"{'variant':<36} {'stage':<7} {'images/s min / median / max':>30} {'ratio to reference (median)':>28}")
    for name, stages in samples.items():
        for stage, values in stages.items():
            ref = statistics.median(samples["reference"][stage])
            print(f"{name:<36} {stage:<7} {min(values):>10.1f} / {statistics.median(values):6.1f} / {max(values):6.1f}"
                  f" {statistics.median(values) / ref:>27.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(samples, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
