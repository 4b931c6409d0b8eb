"""Evaluators on benchmarks the tests generate, with models whose answers are known."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from genhancer_evaluators.mmvp import BenchmarkError, MMVPEvaluator, load_benchmark
from genhancer_evaluators.params import MMVPParams, RetrievalParams, ZeroShotParams
from genhancer_evaluators.retrieval import RetrievalEvaluator
from genhancer_evaluators.synthetic_mmvp import write_synthetic_mmvp
from genhancer_evaluators.zeroshot import ZeroShotEvaluator
from helpers import TINY, run_recipe, tiny_encoder_config, write_recipe
from PIL import Image

from genhancer_plugins.cli import main
from genhancer_plugins.evaluation.runner import run_evaluation

COLOURS = {"red": (220, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 220)}


class ColourModel:
    """Knows colours only: an image is its mean colour, a text is the colour word in it."""

    name = "colour-model"

    def image_embeddings(self, images):
        means = torch.from_numpy(np.stack([np.asarray(im, dtype=np.float32).reshape(-1, 3).mean(0) for im in images]))
        return torch.nn.functional.normalize(means, dim=-1)

    def text_embeddings(self, texts):
        vectors = []
        for text in texts:
            word = next((w for w in COLOURS if w in text.lower()), None)
            vectors.append(torch.tensor(COLOURS[word], dtype=torch.float32) if word else torch.ones(3))
        return torch.nn.functional.normalize(torch.stack(vectors), dim=-1)

    def logits(self, image_embeddings, text_embeddings):
        return 100 * text_embeddings @ image_embeddings.T


def solid(path: Path, colour: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 24), COLOURS[colour]).save(path)


def write_mmvp(root: Path, folder="MLLM_VLM Images") -> None:
    """Three Color pairs (both right / only one right / both wrong) and one Quantity pair (both right)."""
    rows = [
        (1, "Color", "the car is red", "red"), (2, "Color", "the car is blue", "blue"),
        (3, "Color", "the apple is red", "red"), (4, "Color", "the apple is red too", "green"),
        (5, "Color", "the sky is blue", "red"), (6, "Color", "the sky is red", "blue"),
        (7, "Quantity", "green things", "green"), (8, "Quantity", "blue things", "blue"),
    ]
    root.mkdir(parents=True, exist_ok=True)
    with (root / "Questions.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Question ID", "Type", "Statement"])
        for qid, kind, statement, colour in rows:
            writer.writerow([qid, kind, statement])
            solid(root / folder / kind / f"{qid}.jpg", colour)


@pytest.mark.parametrize("folder", ["MLLM_VLM Images", "MLLM_VLM_Images"])
def test_mmvp_scores_match_hand_counts(tmp_path, folder):
    write_mmvp(tmp_path / "mmvp", folder)
    evaluator = MMVPEvaluator(MMVPParams(root=str(tmp_path / "mmvp")))
    results, table = run_evaluation(evaluator, {"colour": ColourModel()}, tmp_path / "out")
    metrics = results["colour"].metrics
    assert metrics["Color and Appearance"] == pytest.approx(100 / 3)  # 1 of 3 pairs: the half-right pair does not count
    assert metrics["Quantity and Count"] == 100.0
    assert metrics["average"] == pytest.approx((100 / 3 + 100) / 2)
    rows = list(csv.DictReader((tmp_path / "out/colour/predictions.csv").open()))
    half = next(r for r in rows if r["qid1"] == "3")
    assert (half["correct1"], half["correct2"], half["pair_correct"]) == ("1", "0", "0")
    assert half["pred2"] == "3"  # "the apple is red too" picked the red image, not its own green one
    assert next(r for r in rows if r["qid1"] == "5")["pair_correct"] == "0"
    assert json.loads((tmp_path / "out/summary.json").read_text())["models"]["colour"]["metrics"] == metrics
    assert (tmp_path / "out/mmvp_vlm.png").stat().st_size > 1000
    assert "Color and Appearance" in table


def test_mmvp_prefixes_statements_with_a_photo_of(tmp_path):
    write_mmvp(tmp_path / "mmvp")
    seen = []

    class Spy(ColourModel):
        def text_embeddings(self, texts):
            seen.extend(texts)
            return super().text_embeddings(texts)

    MMVPEvaluator(MMVPParams(root=str(tmp_path / "mmvp"))).evaluate(Spy())
    assert seen and all(t.startswith("a photo of the ") or t.startswith("a photo of green") or t.startswith("a photo of blue") for t in seen)
    assert seen[0] == "a photo of the car is red"


def test_mmvp_rejects_malformed_files_naming_the_row(tmp_path):
    root = tmp_path / "mmvp"
    write_mmvp(root)
    text = (root / "Questions.csv").read_text().splitlines()
    (root / "Questions.csv").write_text("\n".join(text[:3] + [text[3].replace("Color", "Quantity")] + text[4:]) + "\n")
    with pytest.raises(BenchmarkError, match="rows 4 and 5 form a pair but have types 'Quantity' and 'Color'"):
        load_benchmark(root)
    write_mmvp(root)
    (root / "MLLM_VLM Images" / "Color" / "6.jpg").unlink()
    with pytest.raises(BenchmarkError, match=r"row 7: image .*6.jpg not found"):
        load_benchmark(root)
    write_mmvp(root)
    (root / "Questions.csv").write_text("\n".join(text[:-1]) + "\n")
    with pytest.raises(BenchmarkError, match="count must be even"):
        load_benchmark(root)
    with pytest.raises(BenchmarkError, match="Questions.csv not found"):
        load_benchmark(tmp_path / "nothing")


def test_zeroshot_top1_top5_and_templates(tmp_path):
    root = tmp_path / "classes"
    for colour in COLOURS:
        for i in range(2):
            solid(root / colour / f"{i}.png", colour)
    solid(root / "red" / "wrong.png", "blue")  # a mislabeled image
    evaluator = ZeroShotEvaluator(ZeroShotParams(root=str(root), templates=["a {} thing", "an image of {}"]))
    result = evaluator.evaluate(ColourModel())
    assert result.metrics["top1"] == pytest.approx(100 * 6 / 7)
    assert result.metrics["top3"] == 100.0  # three classes: top-k capped at the class count
    assert result.info == {"images": 7, "classes": 3}
    with pytest.raises(ValueError, match="unknown template set"):
        ZeroShotEvaluator(ZeroShotParams(root=str(root), templates="fancy"))


def test_retrieval_recall_both_directions(tmp_path):
    for colour in COLOURS:
        solid(tmp_path / f"{colour}.png", colour)
    lines = [
        {"image": "red.png", "captions": ["a red ball", "something"]},
        {"image": "green.png", "caption": "a green leaf"},
        {"image": "blue.png", "caption": "a red sea"},  # misleading caption: blue's only caption says red
    ]
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    result = RetrievalEvaluator(RetrievalParams(file=str(tmp_path / "pairs.jsonl"))).evaluate(ColourModel())
    m = result.metrics
    # image->text: red and green find their own caption first; blue's best caption ranks behind others
    assert m["image_to_text_R@1"] == pytest.approx(200 / 3) and m["image_to_text_R@10"] == 100.0
    # text->image: "a red ball" -> red ok; "something" (no colour) ties -> rank counts strictly larger scores
    assert 0 < m["text_to_image_R@1"] < 100
    (tmp_path / "bad.jsonl").write_text('{"image": "missing.png", "caption": "x"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:1: image .*missing.png not found"):
        RetrievalEvaluator(RetrievalParams(file=str(tmp_path / "bad.jsonl")))


@pytest.mark.slow
def test_eval_cli_on_real_tiny_models_is_deterministic(tmp_path, capsys):
    bench = write_synthetic_mmvp(tmp_path / "bench", pairs_per_pattern=2)
    recipe = write_recipe(tmp_path, TINY)
    run_recipe(recipe, tmp_path / "run")
    export = str(tmp_path / "run" / "export")
    args = ["eval", "mmvp_vlm", "-p", f"root={bench}", "-m", export, "-m", export, "--label", "a", "--label", "b"]
    assert main([*args, "-o", str(tmp_path / "e1")]) == 0
    assert main([*args, "-o", str(tmp_path / "e2")]) == 0
    out = capsys.readouterr().out
    assert "average" in out and "difference" in out
    s1 = json.loads((tmp_path / "e1/summary.json").read_text())
    s2 = json.loads((tmp_path / "e2/summary.json").read_text())
    assert s1["models"] == s2["models"]
    assert s1["models"]["a"]["metrics"] == s1["models"]["b"]["metrics"]
    assert all(v == 0 for v in s1["difference"].values())
    assert (tmp_path / "e1/a/predictions.csv").read_text() == (tmp_path / "e2/a/predictions.csv").read_text()
    assert len((tmp_path / "e1/a/predictions.csv").read_text().splitlines()) == 1 + 9 * 2


@pytest.mark.slow
def test_run_evaluates_before_and_after_and_records_both(tmp_path):
    bench = write_synthetic_mmvp(tmp_path / "bench", pairs_per_pattern=1)
    for colour in COLOURS:
        solid(tmp_path / "zs" / colour / "0.png", colour)
    recipe = write_recipe(tmp_path, {**TINY, "eval": [{"name": "mmvp_vlm", "params": {"root": str(bench)}},
                                                      {"name": "zeroshot", "params": {"root": str(tmp_path / "zs")}}]})
    summary = run_recipe(recipe, tmp_path / "out")
    mmvp = summary["eval"]["mmvp_vlm"]
    assert set(mmvp) == {"original", "enhanced", "difference", "primary"}
    assert mmvp["difference"]["average"] == pytest.approx(mmvp["enhanced"]["average"] - mmvp["original"]["average"])
    assert "top1" in summary["eval"]["zeroshot"]["original"]
    for path in ("eval/mmvp_vlm/original/predictions.csv", "eval/mmvp_vlm/enhanced/predictions.csv",
                 "eval/mmvp_vlm/summary.json", "eval/mmvp_vlm/mmvp_vlm.png", "original/config.json"):
        assert (tmp_path / "out" / path).is_file(), path
    missing = write_recipe(tmp_path, {**TINY, "eval": [{"name": "mmvp_vlm", "params": {"root": str(tmp_path / "none")}}]}, "m.yaml")
    from genhancer_plugins.util.errors import RunError

    with pytest.raises(RunError, match=r"eval.0 \(mmvp_vlm\): .*Questions.csv not found"):
        run_recipe(missing, tmp_path / "never")


def _save_encoder(family: str, path: Path, text: bool = True) -> Path:
    from genhancer_hf_encoders.encoders import build_encoder
    from genhancer_hf_encoders.params import HFEncoderParams

    torch.manual_seed(0)
    config = tiny_encoder_config(family, text=text, projection_dim=24 if family == "clip" else None)
    build_encoder(family, HFEncoderParams(config=config)).save_pretrained(path)
    return path


def test_siglip_is_scored_with_its_own_scale_and_bias(tmp_path):
    from genhancer_plugins.registry.loaders import load_image_text_model
    from genhancer_plugins.registry.manager import load_plugins

    model = load_image_text_model(load_plugins(), str(_save_encoder("siglip", tmp_path / "siglip")))
    assert model.family.name == "siglip"
    with torch.no_grad():
        model.model.logit_scale.fill_(2.0)
        model.model.logit_bias.fill_(-3.0)
    images = model.image_embeddings([Image.new("RGB", (32, 32), (200, 0, 0))])
    texts = model.text_embeddings(["a photo of red"])
    expected = torch.exp(torch.tensor(2.0)) * texts @ images.T - 3.0
    assert torch.allclose(model.logits(images, texts), expected, atol=1e-5)
    write_mmvp(tmp_path / "mmvp")
    evaluator = MMVPEvaluator(MMVPParams(root=str(tmp_path / "mmvp")))
    result = evaluator.evaluate(model)
    # each statement's probability is the softmax over its pair's two images of SigLIP's own logits
    pair = evaluator.pairs[0]
    with Image.open(pair.images[0]) as a, Image.open(pair.images[1]) as b:
        image_emb = model.image_embeddings([a.convert("RGB"), b.convert("RGB")])
    text_emb = model.text_embeddings(["a photo of " + s for s in pair.statements])
    expected = torch.softmax(torch.exp(torch.tensor(2.0)) * text_emb @ image_emb.T - 3.0, dim=-1)
    assert result.rows[0]["prob1"] == pytest.approx(float(expected[0, 0]), abs=1e-5)
    assert result.rows[0]["prob2"] == pytest.approx(float(expected[1, 1]), abs=1e-5)


def test_vision_only_model_borrows_the_text_tower_named(tmp_path):
    from transformers import CLIPModel, CLIPVisionConfig, CLIPVisionModelWithProjection

    from genhancer_plugins.registry.loaders import load_image_text_model
    from genhancer_plugins.registry.manager import load_plugins

    full = _save_encoder("clip", tmp_path / "full")
    whole = CLIPModel.from_pretrained(full)
    vision = CLIPVisionModelWithProjection(CLIPVisionConfig(**{**whole.config.vision_config.to_diff_dict(), "projection_dim": 24}))
    vision.vision_model.load_state_dict(whole.vision_model.state_dict())
    vision.visual_projection.load_state_dict(whole.visual_projection.state_dict())
    with torch.no_grad():
        vision.visual_projection.weight.mul_(-1)  # a different vision side, to see which one is used
    vision.save_pretrained(tmp_path / "vision")
    from transformers import AutoImageProcessor

    AutoImageProcessor.from_pretrained(full).save_pretrained(tmp_path / "vision")
    manager = load_plugins()
    alone = load_image_text_model(manager, str(tmp_path / "vision"))
    with pytest.raises(ValueError, match="has no text tower: pass --text-from"):
        alone.text_embeddings(["x"])
    paired = load_image_text_model(manager, str(tmp_path / "vision"), text_from=str(full))
    original = load_image_text_model(manager, str(full))
    image = [Image.new("RGB", (32, 32), (10, 200, 10))]
    assert torch.allclose(paired.image_embeddings(image), -original.image_embeddings(image), atol=1e-5)
    assert torch.allclose(paired.text_embeddings(["a"]), original.text_embeddings(["a"]))
