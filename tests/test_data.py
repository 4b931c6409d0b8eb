"""Real-image datasets: webdataset shards and image folders, written by the tests."""

import io
import json
import random

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY, run_recipe, write_recipe
from genhancer_datasets.common import random_resized_crop
from genhancer_datasets.image_folder import ImageFolder
from genhancer_datasets.params import ImageFolderParams, WebDatasetParams
from genhancer_datasets.webdataset import WebDataset
from genhancer_plugins.errors import RunError


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
    assert skipped == ["00001.tar/000000007"]
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
    slots = [data._my_shards(rank, 2, worker, 2)[0] for rank in range(2) for worker in range(2)]
    flat = [s for slot in slots for s in slot]
    assert len(flat) == 8 and set(flat) == set(data.shards)
    data.set_epoch(1)
    assert [data._my_shards(r, 2, w, 2)[0] for r in range(2) for w in range(2)] != slots  # reshuffled per epoch
    few = WebDataset(WebDatasetParams(shards=write_shards(tmp_path / "few", shards=1, per_shard=8, corrupt=())), 16)
    assert few._my_shards(1, 2, 0, 1) == (few.shards, 2, 1)  # fewer shards than slots: every n-th sample


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


def test_random_resized_crop_covers_90_to_100_percent():
    image = Image.new("RGB", (100, 80))
    rng = random.Random(0)
    out = random_resized_crop(image, 24, (0.9, 1.0), rng)
    assert out.size == (24, 24)


@pytest.mark.slow
def test_training_on_shards_and_folders_skips_and_reports_unreadable_samples(tmp_path):
    pattern = write_shards(tmp_path / "shards", shards=4, per_shard=8, corrupt=("00002/000000017",))
    recipe = write_recipe(tmp_path, {**TINY, "data": {"name": "webdataset", "params": {"shards": pattern, "shuffle_buffer": 8},
                                                      "batch_size": 4, "num_workers": 2},
                                     "stage1": {"epochs": 1}, "stage2": {"steps": 2}})
    summary = run_recipe(recipe, tmp_path / "wds")
    assert summary["stages"]["stage1"]["steps"] == 8  # 32 samples / batch 4
    assert summary["stages"]["stage1"]["skipped_samples"] == {"count": 1, "first": ["00002.tar/000000017"]}

    root = tmp_path / "folder"
    root.mkdir()
    for i in range(8):
        (root / f"{i}.jpg").write_bytes(jpeg(i) if i != 3 else b"\xff\xd8 broken")
    recipe = write_recipe(tmp_path, {**TINY, "data": {"name": "image_folder", "params": {"root": str(root)}, "batch_size": 4},
                                     "stage1": {"epochs": 2}, "stage2": {"steps": 1}}, "folder.yaml")
    summary = run_recipe(recipe, tmp_path / "folder_run")
    assert summary["stages"]["stage1"]["steps"] == 4
    skipped = summary["stages"]["stage1"]["skipped_samples"]
    assert skipped["count"] == 2 and set(skipped["first"]) == {"3.jpg"}  # once per epoch

    missing = write_recipe(tmp_path, {**TINY, "data": {"name": "image_folder", "params": {"root": str(tmp_path / "nowhere")}}}, "missing.yaml")
    with pytest.raises(RunError, match=r"data \(image_folder\): .*nowhere is not a directory"):
        run_recipe(missing, tmp_path / "never")
