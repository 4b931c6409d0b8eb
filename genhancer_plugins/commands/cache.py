"""``genhancer cache RECIPE``: the frozen work of every image and fixed crop, computed
once before training (genhancer_plugins.training.cache).

Items (image i, crop k; item = i + k x images) are cut into shards of ``shard_items``;
under a launcher each process takes every n-th shard, on its own device. A shard is
written whole (a temporary name, then renamed), so a killed build resumes at the first
shard it has not written. What a shard holds is what the lazy fill of the same run
would compute: the same crops (each item's own seed), the same modules in the same
modes (the tokenizer as stage 1 trains, the encoder in eval mode under the recipe's
precision, cast as stage 1 casts it), the same storage dtype. Training then reads it
from memory maps (:class:`~genhancer_plugins.training.cache.FrozenCache`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

import torch

from genhancer_plugins.recipe.build import resolve_components
from genhancer_plugins.recipe.schema import LoadedRecipe
from genhancer_plugins.training.anchor import frozen_in_compute_dtype
from genhancer_plugins.training.cache import FixedCrops, open_cache, range_shard_name
from genhancer_plugins.training.model import build_model, collate
from genhancer_plugins.util.errors import RecipeError
from genhancer_plugins.util.files import save_tensors


def precompute(loaded: LoadedRecipe, manager: Any, output_dir: str | Path, shard_items: int = 4096, show_progress: bool = True,
               log: Callable[[str], None] = print) -> dict[str, Any]:
    """Build this process's part of the recipe's cache; returns what was written and the cache's counts."""
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    from genhancer_plugins.util.dtypes import resolve_precision
    from genhancer_plugins.util.threads import set_cpu_threads

    recipe = loaded.recipe
    if not (recipe.cache.enabled and recipe.data.fixed_crops):
        raise RecipeError(f"{loaded.files[0]}: genhancer cache needs cache.enabled: true and data.fixed_crops > 0 "
                          "(the crops are what the cache keys)")
    threads = set_cpu_threads(recipe.train.num_threads)
    acc = Accelerator(mixed_precision=resolve_precision(recipe.train.mixed_precision))
    main = acc.is_main_process
    model = build_model(loaded, manager, log=log if main else lambda message: None, is_main_process=main,
                        wait_for_everyone=acc.wait_for_everyone)
    model.to(acc.device)
    model.train()
    model.encoder.eval()  # the modes stage 1 computes its frozen work in
    size = model.image_size
    images = resolve_components(loaded, manager)["data"].build(image_size=size, seed=recipe.train.seed)
    crops = FixedCrops(images, recipe.data.fixed_crops, recipe.train.seed, size)
    cache = open_cache(loaded, model, acc.mixed_precision, Path(output_dir), len(images), acc.process_index)
    kinds = ("targets",) if model.conditioner.uses_local_tokens else ("targets", "global_token")
    shards = [(start, min(start + shard_items, len(crops))) for start in range(0, len(crops), shard_items)]
    mine = shards[acc.process_index::acc.num_processes]
    todo = [s for s in mine if not all((cache.directory / range_shard_name(kind, *s)).is_file() for kind in kinds)]
    if main:
        log(f"cache: {len(crops):,} items ({len(images):,} images x {recipe.data.fixed_crops} crops) in {len(shards)} shards "
            f"of {shard_items}, {acc.num_processes} process(es), {threads}; {len(mine) - len(todo)} of this process's "
            f"{len(mine)} shards already written -> {cache.directory}")
    bar = tqdm(total=sum(end - start for start, end in todo), unit="item", desc="cache", disable=not (show_progress and main), dynamic_ncols=True)
    started, done = time.perf_counter(), 0
    cast = acc.mixed_precision if recipe.train.cast_frozen else "no"
    with torch.no_grad(), frozen_in_compute_dtype(model.encoder, cast):
        for start, end in todo:
            loader = torch.utils.data.DataLoader(torch.utils.data.Subset(crops, range(start, end)), batch_size=recipe.data.batch_size,
                                                 num_workers=recipe.data.num_workers, collate_fn=collate)
            written: dict[str, list[torch.Tensor]] = {kind: [] for kind in kinds}  # rows in item order (no shuffling)
            for batch in loader:
                pixels = batch["pixel_values"].to(acc.device)
                rows = {"targets": model.target_parameters(pixels)}
                if "global_token" in kinds:
                    with acc.autocast():
                        rows["global_token"] = model.frozen_global_token(pixels)
                for kind, values in rows.items():
                    written[kind].append(values.detach().to("cpu", cache.dtype))
                bar.update(len(batch["cache_keys"]))
            for kind in kinds:
                final = cache.directory / range_shard_name(kind, start, end)
                partial = final.with_name(final.name + ".partial")
                save_tensors({"rows": torch.cat(written[kind]).contiguous()}, partial,
                             metadata={"format": "pt", "kind": kind, "start": str(start), "end": str(end)})
                os.replace(partial, final)  # whole or absent: a resume rewrites only what is missing
            done += end - start
            if not (main and bar.disable):
                continue
            rate = done / max(time.perf_counter() - started, 1e-9)
            left = sum(e - s for s, e in todo) - done
            log(f"cache: shard {start:,}-{end:,} written, {rate:.1f} items/s, about {left / rate / 60:.1f} min left for this process")
    bar.close()
    acc.wait_for_everyone()
    cache.rescan()  # the other processes' shards too
    counts = cache.stats()["entries"]
    return {"directory": str(cache.directory), "items": len(crops), "shards": len(shards), "written_here": len(todo),
            "entries": counts, "wall_time_s": round(time.perf_counter() - started, 2)}
