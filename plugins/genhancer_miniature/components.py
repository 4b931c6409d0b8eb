"""The miniature world's components: dataset, pretrainer, tokenizers, probes."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genhancer_plugins import (
    ImageTokenizer,
    Pretrainer,
    RunError,
    TargetSpec,
    checkpoint_complete,
    load_checkpoint,
    save_checkpoint,
    shared_lock,
    to_tensor,
)

from .params import PaletteParams, PixelParams, ShapesClassifierParams, ShapesDataParams
from .world import ATTRIBUTES, render, scene_at


class ShapesDataset(torch.utils.data.Dataset):
    """Scenes of stream ``stream`` (and the run seed), rendered at the encoder's size."""

    def __init__(self, params: ShapesDataParams, image_size: int, seed: int = 0):
        self.params, self.image_size, self.seed = params, image_size, seed

    def __len__(self) -> int:
        return self.params.num_images

    def __getitem__(self, index: int) -> dict[str, Any]:
        scene = scene_at(1_000_003 * (self.params.stream + 1) + self.seed, index)
        return {"pixel_values": to_tensor(render(scene, self.image_size)), "key": f"shapes-{index}",
                "labels": scene.labels(), "skipped": []}


# -- pretraining: the "original CLIP" of the miniature world ------------------
def _vision_config(p: ShapesClassifierParams) -> dict[str, Any]:
    return {"hidden_size": p.hidden_size, "intermediate_size": p.intermediate_size, "num_hidden_layers": p.num_layers,
            "num_attention_heads": p.num_heads, "image_size": p.image_size, "patch_size": p.patch_size}


class ShapesClassifier(Pretrainer):
    def __init__(self, params: ShapesClassifierParams):
        self.params = params
        digest = hashlib.sha256(json.dumps(params.model_dump(), sort_keys=True).encode()).hexdigest()[:12]
        self.key = f"shapes_classifier-{digest}"

    def planned_encoder_params(self) -> dict[str, Any]:
        return {"source": None, "config": {"vision": _vision_config(self.params)}}

    def encoder_params(self, cache_dir: Path, log: Callable[[str], None], train: bool = True) -> dict[str, Any]:
        target = Path(cache_dir) / "pretrained" / self.key
        if not (target / "pretrain.json").is_file():
            if not train:
                raise RunError(f"the shapes classifier this run was trained from is not in the cache ({target}); "
                               "`genhancer run` on the run's recipe trains it again (a few minutes), or set GENHANCER_CACHE "
                               "to the cache the run used")
            with shared_lock(target, log):  # two runs on one cache: the second waits, then finds it trained
                if not (target / "pretrain.json").is_file():
                    self._train(target, log)
        return {"source": str(target), "config": None}

    def _train(self, target: Path, log: Callable[[str], None]) -> None:
        import transformers
        from safetensors.torch import save_file
        from transformers import CLIPVisionConfig, CLIPVisionModel

        p = self.params
        start = time.perf_counter()
        generator = torch.Generator().manual_seed(p.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(p.seed)
            model = CLIPVisionModel(CLIPVisionConfig(**_vision_config(p)))
            head = nn.Linear(p.hidden_size, len(ATTRIBUTES["shape"]))
        # the PIL implementation where transformers has one by name (5.x); what the encoder loads it with anyway
        processor_class = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
        processor = processor_class(size={"shortest_edge": p.image_size}, crop_size={"height": p.image_size, "width": p.image_size})
        mean = torch.tensor(processor.image_mean).view(1, 3, 1, 1)
        std = torch.tensor(processor.image_std).view(1, 3, 1, 1)
        both = nn.ModuleDict({"model": model, "head": head})
        params = list(both.parameters())
        optimizer = torch.optim.AdamW(params, lr=p.learning_rate, weight_decay=p.weight_decay)
        warmup = max(1, p.steps // 20)
        accuracy, first = 0.0, 0
        partial = target.with_name(target.name + ".partial")
        if checkpoint_complete(partial):  # killed earlier: continue where its last checkpoint stopped
            state = load_checkpoint(partial, both, optimizer)
            first, accuracy = state["step"], state["accuracy"]
            generator.set_state(torch.tensor(state["generator"], dtype=torch.uint8))
            log(f"pretrain: resuming the shapes classifier at step {first}/{p.steps} ({partial})")
        else:
            log(f"pretrain: training the shapes classifier ({p.steps} steps, cached in {target})")
        session_start, session_first = time.perf_counter(), first
        for step in range(first, p.steps):
            lr = p.learning_rate * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / p.steps))
            for group in optimizer.param_groups:
                group["lr"] = lr
            indices = torch.randint(0, 2**31 - 1, (p.batch_size,), generator=generator).tolist()
            scenes = [scene_at(7 + p.seed, i) for i in indices]
            images = torch.stack([to_tensor(render(s, p.image_size)) for s in scenes])
            labels = torch.tensor([s.shape for s in scenes])
            logits = head(model(pixel_values=(images - mean) / std).pooler_output)
            loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            accuracy = 0.9 * accuracy + 0.1 * float((logits.argmax(-1) == labels).float().mean())
            if (step + 1) % 100 == 0 or step + 1 == p.steps:
                per_step = (time.perf_counter() - session_start) / (step + 1 - session_first)
                log(f"pretrain: step {step + 1}/{p.steps} loss {loss.item():.3f} shape accuracy (running) {accuracy:.3f}, "
                    f"{per_step:.2f} s/step, about {per_step * (p.steps - step - 1) / 60:.1f} min left")
                save_checkpoint(partial, both, optimizer, {"step": step + 1, "accuracy": accuracy,
                                                           "generator": generator.get_state().tolist()})
        tmp = target.with_name(target.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        state = {f"vision_model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(state, tmp / "model.safetensors", metadata={"format": "pt"})
        model.config.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        save_file({k: v.detach().contiguous() for k, v in head.state_dict().items()}, tmp / "coarse_head.safetensors")
        (tmp / "pretrain.json").write_text(json.dumps({"params": p.model_dump(), "running_shape_accuracy": accuracy,
                                                       "wall_time_s": round(time.perf_counter() - start, 1)}, indent=2))
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
        shutil.rmtree(partial, ignore_errors=True)
        log(f"pretrain: done in {time.perf_counter() - start:.0f} s")


# -- tokenizers for the miniature world ---------------------------------------
class PixelTokenizer(ImageTokenizer):
    """Continuous: the image itself in [-1, 1], pixel-unshuffled into channels."""

    def __init__(self, params: PixelParams):
        super().__init__()
        self.factor = params.factor

    def target_spec(self, image_size: int) -> TargetSpec:
        if image_size % self.factor:
            raise ValueError(f"image size {image_size} is not a multiple of factor {self.factor}")
        side = image_size // self.factor
        return TargetSpec("continuous", (3 * self.factor**2, side, side))

    def encode(self, images: Tensor) -> Tensor:
        return F.pixel_unshuffle(images * 2 - 1, self.factor)

    def decode(self, targets: Tensor) -> Tensor:
        return ((F.pixel_shuffle(targets.float(), self.factor) + 1) / 2).clamp(0, 1)


class PaletteTokenizer(ImageTokenizer):
    """Discrete: average-pool, then each pixel's nearest colour of a levels^3 palette."""

    def __init__(self, params: PaletteParams):
        super().__init__()
        self.factor, self.levels = params.factor, params.levels
        grid = torch.linspace(0, 1, params.levels)
        palette = torch.cartesian_prod(grid, grid, grid)  # [levels^3, 3]
        self.register_buffer("palette", palette, persistent=False)

    def target_spec(self, image_size: int) -> TargetSpec:
        if image_size % self.factor:
            raise ValueError(f"image size {image_size} is not a multiple of factor {self.factor}")
        side = image_size // self.factor
        return TargetSpec("discrete", (side * side,), vocab_size=self.levels**3)

    def encode(self, images: Tensor) -> Tensor:
        pooled = F.avg_pool2d(images.float(), self.factor)  # [B, 3, h, w]
        flat = pooled.flatten(2).transpose(1, 2)  # [B, h*w, 3]
        return torch.cdist(flat, self.palette.to(flat.device).expand(flat.shape[0], -1, -1)).argmin(-1)

    def decode(self, targets: Tensor) -> Tensor:
        batch, length = targets.shape
        side = int(round(length**0.5))
        colours = self.palette.to(targets.device)[targets.clamp(0, self.levels**3 - 1)]  # [B, L, 3]
        image = colours.transpose(1, 2).reshape(batch, 3, side, side)
        return F.interpolate(image, scale_factor=self.factor, mode="nearest")
