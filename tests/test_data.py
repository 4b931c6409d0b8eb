"""Real-image datasets: webdataset shards and image folders, written by the tests."""

import io
import json
import math
import random

import numpy as np
import pytest
from genhancer_datasets.common import crop_box, random_resized_crop
from genhancer_datasets.image_folder import ImageFolder
from genhancer_datasets.params import ImageFolderParams, WebDatasetParams
from genhancer_datasets.webdataset import WebDataset
from helpers import TINY, run_recipe, write_recipe
from PIL import Image

from genhancer_plugins.util.errors import RunError


def jpeg(seed: int, size=(40, 30)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def write_shards(directory, shards=4, per_shard=6, corrupt=("00001/000000007",), stats=True):
    import webdataset as wds

    directory.mkdir(parents=True, exist_ok=True)
    index = 0
    for s in range(shards):
        with wds.TarWriter(str(directory / f"{s:05d}.tar")) as sink:
            for _ in range(per_shard):
                key = f"{index:09d}"
                data = jpeg(index)
                if f"{s:05d}/{key}" in corrupt:
                    data = data[: len(data) // 3]  # truncated
                sink.write({"__key__": key, "jpg": data, "txt": f"caption {index}", "json": json.dumps({"i": index})})
                index += 1
        if stats:
            (directory / f"{s:05d}_stats.json").write_text(json.dumps({"successes": per_shard, "count": per_shard}))
    return str(directory / ("{00000..%05d}.tar" % (shards - 1)))


def test_webdataset_streams_decoded_crops_with_captions_and_reports_corrupt_samples(tmp_path):
    pattern = write_shards(tmp_path / "shards")
    data = WebDataset(WebDatasetParams(shards=pattern, shuffle_buffer=4), image_size=16, seed=0)
    assert len(data) == 24  # from the *_stats.json files
    items = []
    for item in data:  # the stream repeats; one pass is 23 readable samples
        items.append(item)
        if len(items) == 23:
            break
    assert all(i["pixel_values"].shape == (3, 16, 16) for i in items)
    assert all(0 <= i["pixel_values"].min() and i["pixel_values"].max() <= 1 for i in items)
    assert items[0]["caption"].startswith("caption ")
    keys = [i["key"] for i in items]
    assert len(set(keys)) == 23 and "00001.tar/000000007" not in keys
    skipped = [k for i in items for k in i["skipped"]]
    assert len(skipped) == 1 and skipped[0].startswith("00001.tar/000000007 (")  # the key, then why
    # shuffled, yet deterministic for a (seed, epoch)
    again = WebDataset(WebDatasetParams(shards=pattern, shuffle_buffer=4), image_size=16, seed=0)
    assert [next(iter(again))["key"] for _ in range(1)] == keys[:1]
    assert keys != sorted(keys)


def test_webdataset_start_up_errors_name_the_problem(tmp_path):
    pattern = write_shards(tmp_path / "shards", shards=2, stats=False)
    with pytest.raises(ValueError, match="set data.params.num_samples"):
        WebDataset(WebDatasetParams(shards=pattern), 16)
    assert len(WebDataset(WebDatasetParams(shards=pattern, num_samples=10), 16)) == 10
    with pytest.raises(FileNotFoundError, match=r"shard .*00002.tar not found \(and 5 more\)"):
        WebDataset(WebDatasetParams(shards=str(tmp_path / "shards" / "{00000..00007}.tar"), num_samples=5), 16)


def test_shards_split_disjointly_across_processes_and_workers(tmp_path):
    pattern = write_shards(tmp_path / "shards", shards=8, per_shard=2, corrupt=())
    data = WebDataset(WebDatasetParams(shards=pattern), 16)
    slots = [data.slot_shards(rank, 2, worker, 2)[0] for rank in range(2) for worker in range(2)]
    flat = [s for slot in slots for s in slot]
    assert len(flat) == 8 and set(flat) == set(data.shards)
    data.set_epoch(1)
    assert [data.slot_shards(r, 2, w, 2)[0] for r in range(2) for w in range(2)] != slots  # reshuffled per epoch
    few = WebDataset(WebDatasetParams(shards=write_shards(tmp_path / "few", shards=1, per_shard=8, corrupt=())), 16)
    assert few.slot_shards(1, 2, 0, 1) == (few.shards, 2, 1)  # fewer shards than slots: every n-th sample


def test_image_folder_recursive_list_files_and_errors(tmp_path):
    root = tmp_path / "images"
    (root / "a" / "b").mkdir(parents=True)
    (root / "one.jpg").write_bytes(jpeg(1))
    (root / "a" / "two.png").write_bytes(jpeg(2))
    (root / "a" / "b" / "three.jpeg").write_bytes(jpeg(3))
    (root / "a" / "notes.txt").write_text("not an image")
    data = ImageFolder(ImageFolderParams(root=str(root)), 16)
    assert len(data) == 3 and data[0]["pixel_values"].shape == (3, 16, 16)
    (tmp_path / "list.jsonl").write_text('{"image": "images/one.jpg"}\n{"image": "images/a/two.png"}\n')
    assert len(ImageFolder(ImageFolderParams(list_file=str(tmp_path / "list.jsonl")), 16)) == 2
    (tmp_path / "list.csv").write_text("path,caption\nimages/one.jpg,x\n")
    assert ImageFolder(ImageFolderParams(list_file=str(tmp_path / "list.csv")), 16)[0]["key"] == "images/one.jpg"
    (tmp_path / "bad.jsonl").write_text('{"image": "images/one.jpg"}\nnot json\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: expected a JSON object"):
        ImageFolder(ImageFolderParams(list_file=str(tmp_path / "bad.jsonl")), 16)
    with pytest.raises(FileNotFoundError, match="missing is not a directory"):
        ImageFolder(ImageFolderParams(root=str(tmp_path / "missing")), 16)
    with pytest.raises(ValueError, match="exactly one"):
        ImageFolderParams()


def test_image_folder_crops_are_keyed_by_seed_epoch_and_index_not_by_torchs_rng(tmp_path):
    import torch

    from genhancer_plugins.training.cache import FixedCrops

    (tmp_path / "one.jpg").write_bytes(jpeg(1, size=(64, 48)))
    data = ImageFolder(ImageFolderParams(root=str(tmp_path), crop_scale=(0.3, 0.6)), 16, seed=5)
    torch.manual_seed(0)
    first = data[0]["pixel_values"]
    torch.manual_seed(1)  # whatever the process drew before (another rank, another loader worker)
    assert torch.equal(data[0]["pixel_values"], first)
    data.set_epoch(1)
    assert not torch.equal(data[0]["pixel_values"], first)  # a new crop each epoch
    data.set_epoch(0)
    assert torch.equal(data[0]["pixel_values"], first)
    assert not torch.equal(ImageFolder(ImageFolderParams(root=str(tmp_path), crop_scale=(0.3, 0.6)), 16, seed=6)[0]["pixel_values"], first)
    # data.fixed_crops: crop c of an image is its epoch-c crop, so the crops differ
    crops = FixedCrops(data, 3, seed=5, image_size=16)
    assert torch.equal(crops[0]["pixel_values"], first)
    assert not torch.equal(crops[1]["pixel_values"], crops[2]["pixel_values"])


class ScriptedRandom:
    """Returns the given uniform and integer draws in order, recording each call."""

    def __init__(self, uniforms, integers=()):
        self.uniforms, self.integers, self.calls = list(uniforms), list(integers), []

    def uniform(self, low, high):
        self.calls.append(("uniform", low, high))
        return self.uniforms.pop(0)

    def randint(self, low, high):
        self.calls.append(("randint", low, high))
        return self.integers.pop(0)


def test_crop_box_first_fitting_draw_is_placed_row_then_column():
    # area share 0.9025 of 100x100, aspect exp(0) = 1: a 95x95 box; top 3 of 0..5, left 1 of 0..5
    rng = ScriptedRandom([0.9025, 0.0], [3, 1])
    assert crop_box(100, 100, (0.9, 1.0), rng) == (1, 3, 96, 98)
    assert rng.calls[2:] == [("randint", 0, 5), ("randint", 0, 5)]  # row (top) is drawn before column (left)
    # a draw that does not fit (aspect 4/3 at full area: 115 wide) is retried
    rng = ScriptedRandom([1.0, math.log(4 / 3), 1.0, 0.0], [0, 0])
    assert crop_box(100, 100, (0.9, 1.0), rng) == (0, 0, 100, 100)


def test_crop_box_falls_back_to_a_centre_crop_clipped_to_the_aspect_range():
    # 16:9 at >= 90 % area never fits a box of aspect <= 4/3: full height, width 180 * 4/3 = 240, centred
    assert crop_box(320, 180, (0.9, 1.0), random.Random(0)) == (40, 0, 280, 180)
    # 9:16: full width, height 180 / (3/4) = 240, centred
    assert crop_box(180, 320, (0.9, 1.0), random.Random(0)) == (0, 40, 180, 280)
    # 3:2 (most wide CC3M photos): height 200, width round(200 * 4/3) = 267, left (300 - 267) // 2 = 16
    assert crop_box(300, 200, (0.9, 1.0), random.Random(1)) == (16, 0, 283, 200)
    # tiny 3x1 strip: height 1, width round(4/3) = 1, centred at column 1
    assert crop_box(3, 1, (0.9, 1.0), random.Random(0)) == (1, 0, 2, 1)
    # ten scripted misfits on a square image: the fallback keeps it whole
    rng = ScriptedRandom([1.0, math.log(4 / 3)] * 10)
    assert crop_box(100, 100, (0.9, 1.0), rng) == (0, 0, 100, 100)
    assert len(rng.calls) == 20


@pytest.mark.parametrize("size", [(100, 100), (1, 1), (2, 2), (100, 80)])
def test_crop_box_on_fixed_seeds_stays_inside_the_scale_and_aspect_ranges(size):
    width, height = size
    for seed in range(50):
        left, top, right, bottom = crop_box(width, height, (0.9, 1.0), random.Random(seed))
        w, h = right - left, bottom - top
        assert 0 <= left and 0 <= top and right <= width and bottom <= height
        if (width, height) in ((1, 1), (2, 2)):  # every draw rounds to the whole image
            assert (left, top, right, bottom) == (0, 0, width, height)
        else:
            assert 0.9 * width * height * 0.97 <= w * h <= width * height  # rounding of w and h aside
            assert 3 / 4 * 0.97 <= w / h <= 4 / 3 * 1.03
    image = Image.new("RGB", size)
    assert random_resized_crop(image, 24, (0.9, 1.0), random.Random(0)).size == (24, 24)


def test_wide_images_are_cropped_not_squashed():
    # a 16:9 image with red bands at the far left and right: the centre crop (columns 40..280) drops both,
    # with a margin wider than the bicubic filter's reach (2 x 240/32 source pixels)
    image = Image.new("RGB", (320, 180), "blue")
    image.paste("red", (0, 0, 20, 180))
    image.paste("red", (300, 0, 320, 180))
    out = np.asarray(random_resized_crop(image, 32, (0.9, 1.0), random.Random(0)))
    assert out[..., 0].max() < 40 and out[..., 2].min() > 200


@pytest.mark.slow
def test_training_on_shards_and_folders_skips_and_reports_unreadable_samples(tmp_path):
    pattern = write_shards(tmp_path / "shards", shards=4, per_shard=8, corrupt=("00002/000000017",))
    recipe = write_recipe(tmp_path, {**TINY, "data": {"name": "webdataset", "params": {"shards": pattern, "shuffle_buffer": 8},
                                                      "batch_size": 4, "num_workers": 2},
                                     "stage1": {"epochs": 1}, "stage2": {"steps": 2}})
    summary = run_recipe(recipe, tmp_path / "wds")
    assert summary["stages"]["stage1"]["steps"] == 8  # 32 samples / batch 4
    skipped = summary["stages"]["stage1"]["skipped_samples"]
    assert (skipped["count"], skipped["encounters"]) == (1, 1) and skipped["first"][0].startswith("00002.tar/000000017 (")

    root = tmp_path / "folder"
    root.mkdir()
    for i in range(8):
        (root / f"{i}.jpg").write_bytes(jpeg(i) if i != 3 else b"\xff\xd8 broken")
    recipe = write_recipe(tmp_path, {**TINY, "data": {"name": "image_folder", "params": {"root": str(root)}, "batch_size": 4},
                                     "stage1": {"epochs": 2}, "stage2": {"steps": 1}}, "folder.yaml")
    summary = run_recipe(recipe, tmp_path / "folder_run")
    assert summary["stages"]["stage1"]["steps"] == 4
    skipped = summary["stages"]["stage1"]["skipped_samples"]
    # one unreadable file, met once per epoch: counted as one file, two encounters
    assert (skipped["count"], skipped["encounters"]) == (1, 2) and skipped["first"][0].startswith("3.jpg (")

    missing = write_recipe(tmp_path, {**TINY, "data": {"name": "image_folder", "params": {"root": str(tmp_path / "nowhere")}}}, "missing.yaml")
    with pytest.raises(RunError, match=r"data \(image_folder\): .*nowhere does not exist"):
        run_recipe(missing, tmp_path / "never")
