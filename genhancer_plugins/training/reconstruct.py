"""Reconstructions: what the denoiser makes of an image's condition.

The paper's Fig. 1/4 view: for each image, the encoder's condition goes
through the denoiser's sampler (Euler steps of the rectified-flow ODE, or
iterative masked decoding) and the tokenizer decodes the result. A grid shows
input | reconstruction, one row per image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from genhancer_plugins.util.errors import RunError
from genhancer_plugins.util.files import respect_umask
from genhancer_plugins.util.images import resize_images, to_rgb, to_tensor


@torch.no_grad()
def reconstruct(modules: Mapping[str, nn.Module], images: torch.Tensor, steps: int = 20, seed: int = 0) -> torch.Tensor:
    """Images [B,3,H,W] in [0,1] -> reconstructions in [0,1] (same size), through ``modules``
    (encoder, conditioner, denoiser, tokenizer: a hook payload's ``run.modules``). Modes are restored after."""
    every = [(m, m.training) for part in modules.values() for m in part.modules()]
    for part in modules.values():
        part.eval()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            encoder = modules["encoder"]
            condition = modules["conditioner"](encoder(resize_images(images, encoder.spec.image_size)))
            targets = modules["denoiser"].sample(condition, steps=steps)
            decoded = modules["tokenizer"].decode(targets)
    finally:
        for module, mode in every:
            module.training = mode
    if decoded.shape[-2:] != images.shape[-2:]:
        decoded = torch.nn.functional.interpolate(decoded, size=images.shape[-2:], mode="bilinear", align_corners=False)
    return decoded.clamp(0, 1)


def _to_pil(tensor: torch.Tensor, size: int) -> Image.Image:
    array = (tensor.detach().float().cpu().permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(array).resize((size, size), Image.NEAREST)


HEADER = 18  #: pixels of the label band above the columns


def save_grid(inputs: torch.Tensor, outputs: torch.Tensor, path: Path, cell: int = 128) -> Path:
    """Write a PNG grid: a labelled header, then one row per image, columns input | reconstruction."""
    from PIL import ImageDraw

    rows = inputs.shape[0]
    grid = Image.new("RGB", (2 * cell + 6, HEADER + rows * (cell + 4)), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    draw.text((4, 3), "input", fill=(0, 0, 0))
    draw.text((cell + 10, 3), "reconstruction", fill=(0, 0, 0))
    for r in range(rows):
        grid.paste(_to_pil(inputs[r], cell), (0, HEADER + r * (cell + 4)))
        grid.paste(_to_pil(outputs[r], cell), (cell + 6, HEADER + r * (cell + 4)))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    respect_umask(path)
    return path


def check_images(paths: Sequence[str | Path]) -> None:
    """Every file opens as an image (header and structure), or an error names the first that does not."""
    for path in paths:
        try:
            with Image.open(path) as image:
                image.verify()
        except OSError as exc:
            raise RunError(f"{path}: not a readable image ({exc})") from None


def load_images(paths: Sequence[str | Path], size: int) -> torch.Tensor:
    """Image files -> [B,3,size,size] in [0,1] (centre crop to square, bicubic)."""
    tensors = []
    for path in paths:
        try:
            with Image.open(path) as image:
                image = to_rgb(image)
        except OSError as exc:  # not an image, or a truncated one
            raise RunError(f"{path}: not a readable image ({exc})") from None
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
        tensors.append(to_tensor(image))
    return torch.stack(tensors)
