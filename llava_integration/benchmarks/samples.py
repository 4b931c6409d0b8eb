"""Small synthetic copies of each benchmark in its published layout, for ``genhancer
rehearse``: a few questions each, so that every reader and scorer runs on what the real
files look like (each benchmark's reader documents the layout). Each takes the benchmark's
params as a mapping and returns them pointing at the copy."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Callable

from PIL import Image

SIDE = 64


def _image(path: Path, colour: tuple[int, int, int] = (200, 40, 40)) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (SIDE, SIDE), colour).save(path)
    return path.name


def mmvp_mllm(params: dict[str, Any], directory: Path) -> dict[str, Any]:
    root = directory / "MMVP"
    rows = [(1, "Is the door open or closed?", "(a) Open (b) Closed", "(a)"), (2, "Is the door open or closed?", "(a) Open (b) Closed", "(b)")]
    for index, *_ in rows:
        _image(root / "MMVP Images" / f"{index}.jpg", (40 * index, 80, 120))
    with (root / "Questions.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Index", "Question", "Options", "Correct Answer"])
        writer.writerows(rows)
    return {**params, **{"root": str(root)}}


def pope(params: dict[str, Any], directory: Path) -> dict[str, Any]:
    root = directory / "pope"
    _image(root / "val2014" / "COCO_val2014_000000000001.jpg")
    for split in params.get("splits") or ["random", "popular", "adversarial"]:
        lines = [json.dumps({"question_id": i, "image": "COCO_val2014_000000000001.jpg", "text": f"Is there a {thing} in the image?",
                             "label": label}) for i, (thing, label) in enumerate((("cat", "yes"), ("car", "no")))]
        (root / f"coco_pope_{split}.json").write_text("\n".join(lines) + "\n")
    return {**params, **{"root": str(root), "image_folder": str(root / "val2014")}}


def naturalbench(params: dict[str, Any], directory: Path) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def png(colour: tuple[int, int, int]) -> dict[str, Any]:
        buffer = io.BytesIO()
        Image.new("RGB", (SIDE, SIDE), colour).save(buffer, format="PNG")
        return {"bytes": buffer.getvalue(), "path": None}  # how the datasets library stores an Image feature

    row = {"Index": [0], "Image_0": [png((255, 0, 0))], "Image_1": [png((0, 0, 255))], "Question_0": ["Is it red?"],
           "Question_1": ["Is it blue?"], "Image_0_Question_0": ["Yes"], "Image_1_Question_0": ["No"], "Image_0_Question_1": ["No"],
           "Image_1_Question_1": ["Yes"], "Question Type": ["yes_no"], "Source": ["synthetic"]}
    root = directory / "NaturalBench"
    (root / "data").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(row), root / "data" / "train-00000-of-00001.parquet")
    return {**params, **{"root": str(root)}}


def cv_bench(params: dict[str, Any], directory: Path) -> dict[str, Any]:
    root = directory / "CV-Bench"
    _image(root / "img" / "2D" / "count" / "0.png")
    base = {"question": "How many lamps are in the image?", "choices": ["1", "2"], "answer": "(A)", "filename": "img/2D/count/0.png"}
    # CV-Bench's combined accuracy averages its three sources: each needs a question
    (root / "test_2d.jsonl").write_text("".join(json.dumps({**base, "idx": i, "type": "2D", "task": "Count", "source": source}) + "\n"
                                                for i, source in enumerate(("ADE20K", "COCO"))))
    (root / "test_3d.jsonl").write_text(json.dumps({**base, "idx": 2, "type": "3D", "task": "Depth", "source": "Omni3D",
                                                    "question": "Which is closer, the lamp or the bed?", "choices": ["lamp", "bed"]}) + "\n")
    return {**params, **{"root": str(root)}}


def hallusion_bench(params: dict[str, Any], directory: Path) -> dict[str, Any]:
    root = directory / "HallusionBench"
    _image(root / "hallusion_bench" / "VD" / "illusion" / "0_0.png")
    base = {"category": "VD", "subcategory": "illusion", "set_id": "0", "figure_id": "0", "visual_input": "1",
            "filename": "./hallusion_bench/VD/illusion/0_0.png"}
    records = [{**base, "question_id": "0", "question": "Is the left line longer?", "gt_answer": "1"},
               {**base, "question_id": "1", "question": "Is the right line longer?", "gt_answer": "0"}]
    (root / "HallusionBench.json").write_text(json.dumps(records))
    return {**params, **{"file": str(root / "HallusionBench.json")}}


def science_qa(params: dict[str, Any], directory: Path) -> dict[str, Any]:
    root = directory / "scienceqa"
    _image(root / "images" / "test" / "10" / "image.png")
    problems = {"10": {"question": "Which is a mammal?", "choices": ["frog", "bat"], "answer": 1, "image": "image.png"}}
    questions = [{"id": "10", "image": "10/image.png", "conversations": [
        {"from": "human", "value": "<image>\nContext: A zoo.\nQuestion: Which is a mammal?\nOptions: (A) frog (B) bat"},
        {"from": "gpt", "value": "B"}]}]
    (root / "problems.json").write_text(json.dumps(problems))
    (root / "llava_test_CQM-A.json").write_text(json.dumps(questions))
    return {**params, **{"root": str(root), "question_file": "llava_test_CQM-A.json", "image_folder": "images/test"}}


def multiple_choice(params: dict[str, Any], directory: Path) -> dict[str, Any]:
    root = directory / "multiple_choice"
    _image(root / "a.png")
    (root / "items.jsonl").write_text(json.dumps({"image": "a.png", "question": "What colour is it?", "options": ["red", "blue"],
                                                  "answer": "red"}) + "\n")
    return {**params, **{"file": str(root / "items.jsonl")}}


#: benchmark name -> its rehearsal copy
SAMPLES: dict[str, Callable[[dict[str, Any], Path], dict[str, Any]]] = {
    "mmvp_mllm": mmvp_mllm, "pope": pope, "naturalbench": naturalbench, "cv_bench": cv_bench, "hallusion_bench": hallusion_bench,
    "science_qa": science_qa, "multiple_choice": multiple_choice,
}
