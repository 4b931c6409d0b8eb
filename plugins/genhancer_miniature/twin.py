"""Data for the MLLM twin: the shapes world in LLaVA's formats.

``python -m genhancer_miniature.twin OUT`` writes ``OUT/images/``,
``OUT/pretrain.json`` (image captions, for projector pretraining),
``OUT/finetune.json`` (one question per fine attribute, LLaVA conversations),
``OUT/eval.jsonl`` (multiple-choice questions in pairs of scenes that differ
in the asked attribute: the MMVP idea) and ``OUT/corpus.txt`` (every text, for
an offline word tokenizer).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .world import ATTRIBUTES, caption, pairs, render, scene_at

QUESTIONS = {
    "shape": "What shape is shown?",
    "colour": "What colour are the shapes?",
    "count": "How many shapes are there?",
    "position": "On which side are the shapes?",
    "orientation": "Which way does the notch face?",
    "size": "Are the shapes small or large?",
    "fill": "Are the shapes filled or outline?",
}


def write_twin_data(out: Path, train_images: int = 400, eval_pairs: int = 10, seed: int = 0) -> Path:
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    pretrain, finetune = [], []
    attributes = list(QUESTIONS)
    for i in range(train_images):
        scene = scene_at(5_000_011 + seed, i)
        name = f"images/train-{i:05d}.png"
        render(scene).save(out / name)
        pretrain.append({"id": f"cap-{i}", "image": name, "conversations": [
            {"from": "human", "value": "<image>\nDescribe the image."}, {"from": "gpt", "value": caption(scene)}]})
        attribute = attributes[i % len(attributes)]
        finetune.append({"id": f"qa-{i}", "image": name, "conversations": [
            {"from": "human", "value": f"<image>\n{QUESTIONS[attribute]}"}, {"from": "gpt", "value": scene.words()[attribute]}]})
    items = []
    for attribute in attributes:
        for k, (a, b) in enumerate(pairs(attribute, eval_pairs, seed + 31)):
            for side, scene in (("a", a), ("b", b)):
                name = f"images/eval-{attribute}-{k}{side}.png"
                render(scene).save(out / name)
                items.append({"id": f"{attribute}-{k}{side}", "image": name, "question": QUESTIONS[attribute],
                              "options": list(ATTRIBUTES[attribute]), "answer": scene.words()[attribute],
                              "group": attribute, "pair": f"{attribute}-{k}"})
    (out / "pretrain.json").write_text(json.dumps(pretrain))
    (out / "finetune.json").write_text(json.dumps(finetune))
    (out / "eval.jsonl").write_text("\n".join(json.dumps(x) for x in items) + "\n")
    words = {caption(scene_at(5_000_011 + seed, i)) for i in range(train_images)}
    words |= set(QUESTIONS.values()) | {"Describe the image."} | {w for v in ATTRIBUTES.values() for w in v}
    (out / "corpus.txt").write_text("\n".join(sorted(words)) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output")
    parser.add_argument("--train-images", type=int, default=400)
    parser.add_argument("--eval-pairs", type=int, default=10)
    args = parser.parse_args()
    print(write_twin_data(Path(args.output), args.train_images, args.eval_pairs))


if __name__ == "__main__":
    main()
