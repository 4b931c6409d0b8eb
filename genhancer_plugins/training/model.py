"""The training module (encoder -> conditioner -> denoiser loss against the
tokenizer's targets), its one build path, and reloading a trained run."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from genhancer_plugins.interfaces import Conditioner, Denoiser, Encoder, EncoderOutput, ImageTokenizer
from genhancer_plugins.recipe.build import (
    ResolvedComponent,
    apply_pretrainer,
    build_models,
    cache_root,
    image_sizes,
    resolve_components,
    resolve_pretrainer,
)
from genhancer_plugins.recipe.schema import STAGES, LoadedRecipe
from genhancer_plugins.registry.manager import PluginManager
from genhancer_plugins.training.anchor import Anchor
from genhancer_plugins.training.checkpoint import STATE_FILE, WEIGHTS_FILE, load_weights
from genhancer_plugins.util.errors import RunError
from genhancer_plugins.util.images import resize_images


def _unmarked(part: str) -> None:
    return None


class GenHancerModel(nn.Module):
    """Encoder, conditioner, frozen tokenizer and denoiser as one module, so
    that accelerate/DDP wrap a single forward that returns the loss. Its methods are
    the one forward path: training, the frozen-work cache and ``bench`` all call them."""

    #: the parts of one forward, in order, as :meth:`forward` marks them (``bench`` times each)
    PARTS = ("tokenizer_encode", "encoder", "conditioner", "denoiser_forward")

    def __init__(self, encoder: Encoder, conditioner: Conditioner, tokenizer: ImageTokenizer, denoiser: Denoiser):
        super().__init__()
        self.encoder = encoder
        self.conditioner = conditioner
        self.tokenizer = tokenizer
        self.denoiser = denoiser
        #: stage 2's optional global-semantics anchor (set by the stage for its length)
        self.anchor: Anchor | None = None
        #: pixels per side of the encoder's, the tokenizer's and the data's images
        self.image_sizes = image_sizes(encoder, tokenizer)

    @property
    def image_size(self) -> int:
        """The side of the crops the data give (the larger of the encoder's and the tokenizer's)."""
        return self.image_sizes["data"]

    def encoder_images(self, images: torch.Tensor) -> torch.Tensor:
        return resize_images(images, self.image_sizes["encoder"])

    def tokenizer_images(self, images: torch.Tensor) -> torch.Tensor:
        return resize_images(images, self.image_sizes["tokenizer"])

    def forward(self, images: torch.Tensor, target_parameters: torch.Tensor | None = None,
                global_token: torch.Tensor | None = None, mark: Callable[[str], None] = _unmarked) -> torch.Tensor:
        """The loss of a batch. The frozen work may come precomputed (:mod:`genhancer_plugins.training.cache`):
        the tokenizer's target parameters, and in stage 1 the encoder's global token. ``mark(part)``
        is called as each of :attr:`PARTS` ends."""
        if target_parameters is not None:
            targets = self._in_fp32(self.tokenizer.targets_from_parameters, target_parameters)
        else:
            targets = self.targets(images)
        mark("tokenizer_encode")
        encoder_images = self.encoder_images(images)
        encoded = EncoderOutput(global_token, None) if global_token is not None else self.encoder(encoder_images)
        mark("encoder")
        condition = self.conditioner(encoded)
        mark("conditioner")
        loss = self.denoiser.loss(targets, condition)
        if self.anchor is not None:
            loss = loss + self.anchor.term(encoded.global_token, encoder_images)
        mark("denoiser_forward")
        return loss

    @staticmethod
    def _in_fp32(function: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
        """The frozen tokenizer runs in fp32 even under bf16/fp16 autocast: the release encodes
        with the VAE in fp32, and the encode is cheap next to the denoiser."""
        if inputs.device.type == "meta":  # counting FLOPs on shapes alone: there is no autocast to leave
            return function(inputs.float())
        with torch.autocast(device_type=inputs.device.type, enabled=False):
            return function(inputs.float())

    def targets(self, images: torch.Tensor) -> torch.Tensor:
        """The frozen tokenizer's targets of ``images``, in fp32."""
        return self._in_fp32(self.tokenizer.encode, self.tokenizer_images(images))

    def target_parameters(self, images: torch.Tensor) -> torch.Tensor:
        """What the frozen-work cache keeps of the tokenizer's work (before its random draw), in fp32."""
        return self._in_fp32(self.tokenizer.encode_parameters, self.tokenizer_images(images))

    @torch.no_grad()
    def frozen_global_token(self, images: torch.Tensor) -> torch.Tensor:
        """The frozen encoder's global token (stage 1's frozen work), under the caller's autocast."""
        return self.encoder(self.encoder_images(images)).global_token.float()

    def parts(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder, "conditioner": self.conditioner, "tokenizer": self.tokenizer, "denoiser": self.denoiser}


def build_model(
    loaded: LoadedRecipe,
    manager: PluginManager,
    components: dict[str, ResolvedComponent] | None = None,
    log: Callable[[str], None] = lambda message: None,
    is_main_process: bool = True,
    wait_for_everyone: Callable[[], None] = lambda: None,
    train_missing: bool = True,
    run_pretrainer: bool = True,
    meta: bool = False,
) -> GenHancerModel:
    """Components from the recipe, the pretrainer's encoder first (trained or read
    from the cache on the main process; the others wait), initialised from the
    recipe's seed. The one build path of runs, of reloading a run and of ``bench``
    (which passes components that already describe the pretrainer's encoder,
    ``run_pretrainer=False``, and ``meta=True`` to count FLOPs on shapes alone)."""
    from accelerate.utils import set_seed

    components = components if components is not None else resolve_components(loaded, manager)
    seed = loaded.recipe.train.seed
    pretrainer = resolve_pretrainer(loaded, manager) if run_pretrainer else None
    if pretrainer is not None:
        phase = pretrainer.build(seed=seed)
        if is_main_process:  # trains once, then every process reads the cache
            phase.encoder_params(cache_root(), log, train=train_missing)
        wait_for_everyone()
        apply_pretrainer(components, phase.encoder_params(cache_root(), log, train=train_missing))
    set_seed(seed)  # identical initialisation on every process
    models = build_models(components, meta=meta)
    return GenHancerModel(models["encoder"], models["conditioner"], models["tokenizer"], models["denoiser"])


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack images; keep keys, and the keys of unreadable samples datasets skipped."""
    batch = {
        "pixel_values": torch.stack([item["pixel_values"] for item in items]),
        "keys": [item.get("key", "") for item in items],
        "skipped": [key for item in items for key in item.get("skipped", [])],
    }
    if all("cache_key" in item for item in items):
        batch["cache_keys"] = [item["cache_key"] for item in items]
    return batch


def finished_stages(run_dir: Path) -> list[str]:
    return [s for s in STAGES if (run_dir / s / "final" / STATE_FILE).is_file()]


def load_trained_model(run_dir: str | Path, manager: PluginManager, stage: str | None = None,
                       train_missing: bool = True) -> tuple[GenHancerModel, LoadedRecipe, str]:
    """Rebuild a run's model from ``run_dir/recipe.yaml`` and its newest finished
    stage (or ``stage``); returns the model (eval mode), recipe and stage used.
    ``train_missing=False``: a pretrained encoder missing from the cache is an error."""
    from safetensors import safe_open

    from genhancer_plugins.recipe.schema import load_recipe
    from genhancer_plugins.training.lora import apply_lora

    run_dir = Path(run_dir)
    if not (run_dir / "recipe.yaml").is_file():
        raise RunError(f"{run_dir} is not a run directory (no recipe.yaml)")
    loaded = load_recipe(run_dir / "recipe.yaml", manager=manager)
    finished = finished_stages(run_dir)
    if stage is None:
        if not finished:
            raise RunError(f"{run_dir}: no finished stage yet (no <stage>/final)")
        stage = finished[-1]
    elif stage not in finished:
        raise RunError(f"{run_dir}: {stage} has not finished (finished: {', '.join(finished) or 'none'})")
    model = build_model(loaded, manager, train_missing=train_missing)  # the run's initialisation of anything the stage did not save
    weights = run_dir / stage / "final" / WEIGHTS_FILE
    with safe_open(str(weights), "pt") as f:
        uses_lora = any("lora_" in key for key in f.keys())
    if uses_lora:
        apply_lora(model.encoder, loaded.recipe.stage2.lora)
    load_weights(weights, model)
    return model.eval(), loaded, stage
