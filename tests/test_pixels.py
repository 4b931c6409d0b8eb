"""Images reach the model with their real values and the right way up: 16-bit greyscale scaled
(not clipped to white), EXIF orientation applied, wherever images are read."""


import numpy as np
import pytest
import torch
from PIL import Image

from genhancer_plugins import to_rgb, to_tensor


def _gradient_png(path, bits=16):
    ramp = np.tile(np.linspace(0, 2**bits - 1, 256), (64, 1)).astype(np.uint16 if bits == 16 else np.uint8)
    Image.fromarray(ramp).save(path)
    return path


def _sideways_jpeg(path):
    """A 128 x 64 (wide) JPEG whose EXIF says: rotate 90 degrees to view (orientation 6): it is 64 x 128."""
    image = Image.new("RGB", (128, 64), (200, 0, 0))
    image.paste((0, 0, 200), (0, 0, 64, 64))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6
    image.save(path, exif=exif.tobytes(), quality=95)
    return path


def test_a_16_bit_png_keeps_its_grey_values(tmp_path):
    with Image.open(_gradient_png(tmp_path / "g16.png")) as image:
        assert image.mode.startswith("I")  # what PIL opens a 16-bit greyscale PNG as
        rgb = np.asarray(to_rgb(image))
    assert rgb.shape == (64, 256, 3) and 120 < rgb.mean() < 135  # mean ~127, not ~254 (clipped)
    assert rgb[0, 0, 0] == 0 and rgb[0, -1, 0] == 255


def test_exif_orientation_is_applied(tmp_path):
    with Image.open(_sideways_jpeg(tmp_path / "side.jpg")) as image:
        assert image.size == (128, 64)
        upright = to_rgb(image)
    assert upright.size == (64, 128)
    assert float(to_tensor(upright)[2, :64].mean()) > 0.5  # the blue half is on top after the rotation


@pytest.mark.parametrize("reader", ["dataset", "dataset_draft", "reconstruct", "evaluator", "llava"])
def test_every_reader_applies_them(tmp_path, reader):
    path = _sideways_jpeg(tmp_path / "side.jpg")
    grey = _gradient_png(tmp_path / "g16.png")
    if reader.startswith("dataset"):
        from genhancer_datasets.common import load_image

        kwargs = {"min_side": 32} if reader == "dataset_draft" else {}
        image, flat = load_image(str(path), **kwargs), load_image(grey.read_bytes())
        assert image.size[0] < image.size[1]
    elif reader == "reconstruct":
        from genhancer_plugins.training.reconstruct import load_images

        tensors = load_images([path, grey], 32)
        assert float(tensors[0, 2, :16].mean()) > 0.5  # the blue half on top: rotated before the centre crop
        flat = Image.fromarray((tensors[1].permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    elif reader == "evaluator":
        from genhancer_evaluators.common import open_rgb

        image, flat = open_rgb(path), open_rgb(grey)
        assert image.size == (64, 128)
    else:
        from llava_integration.benchmarks.common import open_image

        image, flat = open_image(path.read_bytes()), open_image(grey)
        assert image.size == (64, 128)
    assert 100 < np.asarray(flat).mean() < 155


def test_the_faster_conversions_give_the_same_pixels_bit_for_bit():
    rng = np.random.default_rng(0)
    for shape in ((37, 53, 3), (224, 224, 3), (1, 1, 3)):
        image = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))
        before = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
        after = to_tensor(image)
        assert torch.equal(before, after) and after.is_contiguous() and after.dtype == torch.float32
    image = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    assert to_rgb(image, copy=False) is image and to_rgb(image) is not image  # the default still copies
    palette = image.convert("P")
    assert to_rgb(palette, copy=False).mode == "RGB"  # anything to convert is converted either way
