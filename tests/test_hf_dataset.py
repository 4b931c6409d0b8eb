"""The hf_dataset dataset, offline: a saved dataset, parquet files, a stream split over
processes, a corrupt row skipped with its reason, a training run on it."""

import io

import numpy as np
import pytest
import torch
from helpers import TINY, run_recipe, write_recipe
from PIL import Image

datasets = pytest.importorskip("datasets")  # a dev dependency: installed by `make test`

from genhancer_datasets.hf_dataset import HFImageDataset, StreamingHFImageDataset  # noqa: E402
from genhancer_datasets.params import HFDatasetParams  # noqa: E402


def jpeg(index, size=(48, 36)):
    rng = np.random.default_rng(index)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def image_rows(count, corrupt=()):
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
    rows = {"image": [{"bytes": b"not an image" if i in corrupt else jpeg(i), "path": None} for i in range(count)],
            "label": list(range(count))}
    return datasets.Dataset.from_dict(rows, features=features)


def test_a_saved_dataset_reads_every_row_and_skips_a_corrupt_one_with_its_reason(tmp_path):
    image_rows(6, corrupt={2}).save_to_disk(str(tmp_path / "saved"))
    data = HFImageDataset(HFDatasetParams(path=str(tmp_path / "saved")), image_size=32)
    assert len(data) == 6
    torch.manual_seed(0)
    items = [data[i] for i in range(6)]
    assert all(item["pixel_values"].shape == (3, 32, 32) for item in items)
    assert items[2]["key"] == "train/3" and items[2]["skipped"][0].startswith("train/2 (UnidentifiedImageError: ")
    assert [item["key"] for item in items] == ["train/0", "train/1", "train/3", "train/3", "train/4", "train/5"]
    torch.manual_seed(0)
    assert torch.equal(data[0]["pixel_values"], items[0]["pixel_values"])  # deterministic under the engine's seed


def test_parquet_files_splits_and_columns(tmp_path):
    rows = image_rows(8)
    (tmp_path / "pq").mkdir()
    rows.select(range(4)).to_parquet(str(tmp_path / "pq" / "part-0.parquet"))
    rows.select(range(4, 8)).to_parquet(str(tmp_path / "pq" / "part-1.parquet"))
    for path in (tmp_path / "pq", tmp_path / "pq" / "*.parquet"):
        assert len(HFImageDataset(HFDatasetParams(path=str(path)), image_size=16)) == 8
    datasets.DatasetDict({"train": rows, "validation": rows.select(range(2))}).save_to_disk(str(tmp_path / "dict"))
    assert len(HFImageDataset(HFDatasetParams(path=str(tmp_path / "dict"), split="validation"), image_size=16)) == 2
    with pytest.raises(ValueError, match=r"has no split 'test' \(splits: train, validation\)"):
        HFImageDataset(HFDatasetParams(path=str(tmp_path / "dict"), split="test"), image_size=16)
    with pytest.raises(ValueError, match=r"image_column 'img' is not a column of .* \(columns: image, label\)"):
        HFImageDataset(HFDatasetParams(path=str(tmp_path / "pq"), image_column="img"), image_size=16)
    with pytest.raises(FileNotFoundError, match="neither a local dataset nor a hub dataset that loads"):
        HFImageDataset(HFDatasetParams(path="nobody/no-such-dataset"), image_size=16)


def test_a_stream_is_split_over_processes_and_skips_corrupt_rows(tmp_path, monkeypatch):
    from genhancer_datasets import hf_dataset

    image_rows(12, corrupt={5}).save_to_disk(str(tmp_path / "saved"))
    params = HFDatasetParams(path=str(tmp_path / "saved"), streaming=True, shuffle_buffer=4)
    with pytest.raises(ValueError, match="epoch length unknown for this stream: set data.params.num_samples"):
        StreamingHFImageDataset(params, image_size=16)
    params = params.model_copy(update={"num_samples": 12})
    seen = {}
    for rank in (0, 1):
        monkeypatch.setattr(hf_dataset, "process_rank", lambda rank=rank: (rank, 2))
        stream = StreamingHFImageDataset(params, image_size=16, seed=3)
        items = []
        for item in stream:  # the stream repeats: one pass of this process's rows, until a key comes again
            if any(item["key"] == earlier["key"] for earlier in items):
                break
            items.append(item)
        seen[rank] = items
    # positions in the shared shuffled order: rank 0 reads the even ones, rank 1 the odd ones
    positions = {rank: {int(item["key"].rsplit("/", 1)[-1]) for item in items} for rank, items in seen.items()}
    assert not positions[0] & positions[1] and len(positions[0] | positions[1]) == 11  # disjoint, every readable row once
    assert {p % 2 for p in positions[0]} == {0} and {p % 2 for p in positions[1]} == {1}
    skipped = [entry for items in seen.values() for item in items for entry in item["skipped"]]
    assert len(skipped) == 1 and "(UnidentifiedImageError: " in skipped[0]


def test_a_run_trains_on_a_saved_dataset_and_validate_names_a_missing_one(tmp_path, capsys):
    from genhancer_plugins.cli import main

    image_rows(16).save_to_disk(str(tmp_path / "saved"))
    recipe = write_recipe(tmp_path, {**TINY, "data": {"name": "hf_dataset", "params": {"path": str(tmp_path / "saved")}, "batch_size": 4},
                                     "stage1": {"steps": 2, "learning_rate": 1e-3}, "stage2": {"steps": 1, "learning_rate": 1e-3},
                                     "preview": {"images": 0}})
    summary = run_recipe(recipe, tmp_path / "run")
    assert summary["completed"] and summary["stages"]["stage1"]["steps"] == 2
    assert main(["validate", str(recipe), "--set", f"data.params.path={tmp_path / 'gone'}"]) == 1
    assert f"data (hf_dataset): data.params.path {tmp_path / 'gone'} does not exist" in capsys.readouterr().out
