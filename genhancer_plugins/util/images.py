"""PIL images <-> tensors: the one conversion every component, dataset and evaluator uses."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageOps

ORIENTATION = 0x0112  #: the EXIF tag of how a camera held the image


def to_rgb(image: Image.Image, copy: bool = True) -> Image.Image:
    """8-bit RGB with the image's real values, the way it is meant to be seen: EXIF orientation
    applied (a phone photo stored sideways comes upright), 16-bit and 32-bit greyscale scaled to
    8 bits (``convert("RGB")`` alone would clip a 16-bit gradient to white), float images from
    [0, 1], palettes and alpha as RGB. ``copy=False``: an upright, loaded RGB image comes back as
    it is (for callers that own it, or only read it), saving a full-size copy."""
    if image.getexif().get(ORIENTATION, 1) != 1:
        image = ImageOps.exif_transpose(image)
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        array = np.asarray(image, dtype=np.float64)
        if image.mode == "F" and array.size and float(np.nanmax(array)) <= 1.0:
            peak = 1.0
        else:
            peak = 65535.0 if image.mode.startswith("I;16") or (array.size and float(array.max()) > 255) else 255.0
        image = Image.fromarray(np.clip(np.nan_to_num(array) * (255.0 / peak) + 0.5, 0, 255).astype(np.uint8), "L")
    if not copy and image.mode == "RGB" and image.im is not None:  # loaded already: nothing to convert
        return image
    return image.convert("RGB")  # a loaded copy even when already RGB: callers close the file after


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL image -> float tensor [3, H, W] in [0, 1] (RGB, through :func:`to_rgb`). The channels move
    first while still 8-bit (a quarter of the bytes), then x / 255 in float32, as before, bit for bit."""
    pixels = torch.from_numpy(np.array(to_rgb(image, copy=False))).permute(2, 0, 1).contiguous()
    return pixels.float().div_(255.0)


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """A batch [B, 3, H, W] in [0, 1] at ``size`` x ``size``: the same crop for a component that
    reads another resolution than the data's (DIVA: the diffusion model at 512, CLIP at 224).
    Bilinear with antialiasing, as torchvision's tensor ``Resize`` does; unchanged when already there."""
    if images.shape[-2:] == (size, size):
        return images
    resized = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return resized.clamp_(0, 1)
