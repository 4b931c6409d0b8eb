"""LLaVA-1.5 integration: tower swap, data, conversation masking, scoring, benchmark readers, the CPU twin."""

import csv
import json
from pathlib import Path

import pytest
import torch
from helpers import TINY, run_recipe, tiny_encoder_config, write_colour_questions, write_recipe
from PIL import Image

from genhancer_plugins import load_plugins
from llava_integration.benchmarks import (
    MMVPMLLMEvaluator,
    MMVPMLLMParams,
    MultipleChoiceEvaluator,
    MultipleChoiceParams,
    POPEEvaluator,
    POPEParams,
)
from llava_integration.conversation import IGNORE, SYSTEM, encode_conversation
from llava_integration.data import Collator, LlavaDataset, pad_to_square
from llava_integration.tower import TowerMismatch, llava_repo_features, swap_vision_tower

pytestmark = pytest.mark.needs_llava  # the plugin's own tests

VISION = tiny_encoder_config()["vision"]


def save_tower(path: Path, seed: int, **overrides) -> Path:
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed)
    config = {**VISION, **overrides}
    CLIPVisionModel(CLIPVisionConfig(**config)).save_pretrained(path)
    size = config["image_size"]
    CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                       image_mean=[0.1, 0.2, 0.3]).save_pretrained(path)
    return path


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("What colour is it ?\nred blue green\nDescribe the image .\na red circle\n")
    return path


@pytest.fixture
def tiny_llava(tmp_path, corpus):
    from llava_integration.build import build_llava
    from llava_integration.params import LlavaSettings

    settings = LlavaSettings(language_model_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                                    "num_attention_heads": 2, "num_key_value_heads": 2,
                                                    "max_position_embeddings": 256},
                             tokenizer_corpus=[str(corpus)])
    return build_llava(save_tower(tmp_path / "tower", 0), settings, load_plugins())


def test_swap_loads_the_tower_and_its_processor(tmp_path, tiny_llava):
    model, processor = tiny_llava
    new = save_tower(tmp_path / "new", 1)
    swap_vision_tower(model, new, load_plugins(), processor)
    from transformers import CLIPVisionModel

    reference = CLIPVisionModel.from_pretrained(new)
    for key, value in reference.state_dict().items():
        assert torch.equal(model.model.vision_tower.state_dict()[key], value)
    assert list(processor.image_processor.image_mean) == pytest.approx([0.1, 0.2, 0.3])


@pytest.mark.parametrize("overrides,message", [
    ({"hidden_size": 48, "intermediate_size": 96}, "hidden size 48 != 32: the projector's first layer takes 32-dim features"),
    ({"image_size": 48}, "36 image tokens .* != 16"),
    ({"patch_size": 4}, "64 image tokens .* != 16"),
])
def test_incompatible_towers_say_what_differs(tmp_path, tiny_llava, overrides, message):
    model, processor = tiny_llava
    with pytest.raises(TowerMismatch, match=message):
        swap_vision_tower(model, save_tower(tmp_path / "bad", 2, **overrides), load_plugins(), processor)


@pytest.mark.slow
def test_export_loads_as_the_original_llava_repository_does(tmp_path):
    from transformers import CLIPVisionModel

    run_recipe(write_recipe(tmp_path, TINY), tmp_path / "run")
    export = tmp_path / "run" / "export"
    tower, info = CLIPVisionModel.from_pretrained(export, output_loading_info=True)
    assert not info["missing_keys"]
    image = Image.new("RGB", (40, 30), (200, 30, 30))
    feats = llava_repo_features(export, [image])
    assert feats.shape == (1, 16, 32)  # (32 / 8)^2 patch tokens of layer -2, CLS dropped


def test_vicuna_template_masks_everything_but_the_replies(tiny_llava):
    _, processor = tiny_llava
    tok = processor.tokenizer
    image_id = tok.convert_tokens_to_ids("<image>")
    enc = encode_conversation(tok, [("<image>\nWhat colour is it ?", "red"), ("Describe the image .", "a red circle")], image_id, 4)
    assert enc.input_ids[0] == tok.bos_token_id and enc.input_ids.count(image_id) == 4
    trained = [i for i, label in zip(enc.input_ids, enc.labels) if label != IGNORE]
    assert tok.decode(trained).split() == ["red", "</s>", "a", "red", "circle", "</s>"]
    text = tok.decode([i for i in enc.input_ids if i != image_id])
    assert text.startswith("<s> " + SYSTEM.split()[0]) and "USER :" in text and "ASSISTANT :" in text


def test_dataset_skips_and_counts_bad_records(tmp_path, tiny_llava):
    _, processor = tiny_llava
    (tmp_path / "img").mkdir()
    Image.new("RGB", (20, 10), (0, 0, 255)).save(tmp_path / "img" / "a.png")
    good = {"id": "1", "image": "a.png", "conversations": [{"from": "human", "value": "<image>\nWhat colour is it ?"}, {"from": "gpt", "value": "blue"}]}
    records = [
        good,
        {**good, "id": "2", "image": "missing.png"},
        {**good, "id": "3", "conversations": [{"from": "human", "value": "What colour is it ?"}, {"from": "gpt", "value": "blue"}]},
        {"id": "4", "conversations": [{"from": "human", "value": "What colour is it ?"}, {"from": "gpt", "value": "red"}]},
        {"id": "5", "conversations": [{"from": "gpt", "value": "red"}]},
        {**good, "id": "6", "conversations": [{"from": "human", "value": "<image>\n" + "red " * 400}, {"from": "gpt", "value": "blue"}]},
    ]
    (tmp_path / "data.json").write_text(json.dumps(records))
    data = LlavaDataset(tmp_path / "data.json", tmp_path / "img", processor, processor.tokenizer.convert_tokens_to_ids("<image>"), 16, max_length=300)
    assert len(data) == 2  # the good one and the text-only one
    assert dict(data.skipped) == {"missing image": 1, "no <image> token": 1, "malformed conversations": 1, "longer than max_length": 1}
    batch = Collator(processor.tokenizer.pad_token_id)([data[0], data[1]])
    assert batch["pixel_values"].shape == (1, 3, 32, 32)  # only the image record brings pixels
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert (batch["labels"][1][batch["attention_mask"][1] == 0] == IGNORE).all()


def test_a_phase_stopped_midway_resumes_to_the_same_weights(tmp_path, tiny_llava):
    import copy

    from transformers import TrainerCallback

    from llava_integration.params import LlavaPhaseSettings
    from llava_integration.train import train_phase

    model, processor = tiny_llava
    initial = copy.deepcopy(model.state_dict())
    (tmp_path / "img").mkdir()
    records = []
    for i, (colour, name) in enumerate([((255, 0, 0), "red"), ((0, 0, 255), "blue"), ((0, 255, 0), "green")] * 3):
        Image.new("RGB", (12, 12), colour).save(tmp_path / "img" / f"{i}.png")
        records.append({"id": str(i), "image": f"{i}.png", "conversations": [
            {"from": "human", "value": "<image>\nWhat colour is it ?"}, {"from": "gpt", "value": name}]})
    (tmp_path / "data.json").write_text(json.dumps(records))
    data = LlavaDataset(tmp_path / "data.json", tmp_path / "img", processor, model.config.image_token_index, 16, max_length=128)
    phase = LlavaPhaseSettings(data=str(tmp_path / "data.json"), learning_rate=1e-3, batch_size=2, max_steps=4, save_steps=2,
                               num_workers=0, logging_steps=1)
    common = type("Common", (), {"bf16": False, "deepspeed": None, "gradient_checkpointing": False})()

    straight = train_phase(model, processor, data, "finetune", phase, tmp_path / "straight", common, seed=3)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    assert straight["steps"] == 4 and straight["resumed_from"] is None

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise KeyboardInterrupt("stopped midway")

    model.load_state_dict(initial)
    with pytest.raises(KeyboardInterrupt):
        train_phase(model, processor, data, "finetune", phase, tmp_path / "crashed", common, seed=3, callbacks=[Crash()])
    assert not (tmp_path / "crashed" / "final").exists()
    model.load_state_dict(initial)  # a restarted process starts from the freshly built model
    resumed = train_phase(model, processor, data, "finetune", phase, tmp_path / "crashed", common, seed=3)
    assert resumed["resumed_from"].endswith("checkpoint-2") and resumed["steps"] == 4
    for key, value in model.state_dict().items():
        assert torch.allclose(value, expected[key], atol=1e-6), key
    assert not torch.equal(expected["model.multi_modal_projector.linear_1.weight"], initial["model.multi_modal_projector.linear_1.weight"])
    # a finished phase is not trained again
    again = train_phase(model, processor, data, "finetune", phase, tmp_path / "crashed", common, seed=3, callbacks=[Crash()])
    assert again == resumed

    from safetensors.torch import load_file, save_file

    from genhancer_plugins.util.errors import RunError
    from llava_integration.train import load_checkpoint_weights

    saved = load_file(str(tmp_path / "crashed" / "checkpoint-2" / "model.safetensors"))
    saved.pop(next(k for k in saved if "projector" in k))
    (tmp_path / "broken").mkdir()
    save_file(saved, str(tmp_path / "broken" / "model.safetensors"))
    with pytest.raises(RunError, match=r"1 weight\(s\) missing, e.g. \['model.multi_modal_projector"):
        load_checkpoint_weights(model, tmp_path / "broken")
    (tmp_path / "broken" / "model.safetensors").rename(tmp_path / "broken" / "pytorch_model.bin")
    with pytest.raises(RunError, match="no model.safetensors"):
        load_checkpoint_weights(model, tmp_path / "broken")


def test_without_progress_a_phase_logs_plain_lines_and_no_bars_or_dicts(tmp_path, tiny_llava, capfd):
    from llava_integration.params import LlavaPhaseSettings
    from llava_integration.train import train_phase

    model, processor = tiny_llava
    (tmp_path / "img").mkdir()
    Image.new("RGB", (12, 12), (255, 0, 0)).save(tmp_path / "img" / "0.png")
    records = [{"id": str(i), "image": "0.png", "conversations": [{"from": "human", "value": "<image>\nWhat colour is it ?"},
                                                                 {"from": "gpt", "value": "red"}]} for i in range(4)]
    (tmp_path / "data.json").write_text(json.dumps(records))
    data = LlavaDataset(tmp_path / "data.json", tmp_path / "img", processor, model.config.image_token_index, 16, max_length=128)
    phase = LlavaPhaseSettings(data=str(tmp_path / "data.json"), learning_rate=1e-3, batch_size=2, max_steps=2, num_workers=0, logging_steps=1)
    common = type("Common", (), {"bf16": False, "deepspeed": None, "gradient_checkpointing": False})()
    lines = []
    capfd.readouterr()
    train_phase(model, processor, data, "finetune", phase, tmp_path / "quiet", common, show_progress=False, log=lines.append)
    printed = capfd.readouterr()
    assert [line.split(" loss ")[0] for line in lines] == ["finetune: step 1/2", "finetune: step 2/2"]
    assert "{'loss'" not in printed.out + printed.err and "it/s" not in printed.err, printed


def test_cli_swaps_a_tower_then_scores_both_checkpoints(tmp_path, tiny_llava, capsys):
    from genhancer_plugins.cli import main
    from llava_integration.scoring import LikelihoodScorer

    model, processor = tiny_llava
    model.save_pretrained(tmp_path / "llava")
    processor.save_pretrained(tmp_path / "llava")
    tower = save_tower(tmp_path / "enhanced_tower", 5)
    assert main(["llava", "swap", "--llava", str(tmp_path / "llava"), "--tower", str(tower), "-o", str(tmp_path / "swapped")]) == 0
    assert main(["llava", "swap", "--llava", str(tmp_path / "llava"), "--tower", str(tower), "-o", str(tmp_path / "swapped")]) == 2
    assert "is not empty" in capsys.readouterr().err  # nothing already written is replaced

    questions, items = write_colour_questions(tmp_path)
    out = tmp_path / "scores"
    code = main(["llava", "eval", "multiple_choice", "-m", str(tmp_path / "llava"), "-m", str(tmp_path / "swapped"),
                 "--label", "original", "--label", "swapped", "-p", f"file={questions}", "-o", str(out), "--device", "cpu"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "original" in printed and "swapped" in printed and "difference" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["models"]) == {"original", "swapped"}
    # the command's answers are the scorer's answers on the same checkpoint
    scorer = LikelihoodScorer(model, processor)
    with (out / "original" / "predictions.csv").open() as f:
        predicted = [row["prediction"] for row in csv.DictReader(f)]
    expected = []
    for item in items:
        with Image.open(tmp_path / item["image"]) as image:
            expected.append(item["options"][scorer.choose(image.convert("RGB"), item["question"], item["options"])[0]])
    assert predicted == expected
    assert summary["models"]["original"]["metrics"]["accuracy"] == 50.0 * sum(p == i["answer"] for p, i in zip(expected, items))
    assert main(["llava", "eval", "multiple_choice", "-m", str(tmp_path / "llava"), "-p", "fiel=x", "-o", str(out)]) == 2
    assert "fiel" in capsys.readouterr().err


def test_llava_benchmarks_and_encoder_evaluators_are_not_mixed_up(tmp_path, capsys):
    from genhancer_plugins.cli import main
    from genhancer_plugins.recipe.build import resolve_evaluators
    from genhancer_plugins.recipe.schema import RecipeError, load_recipe
    from genhancer_plugins.registry.manager import load_plugins

    recipe = write_recipe(tmp_path, {**TINY, "eval": [{"name": "mmvp_mllm", "params": {"root": str(tmp_path)}}]})
    with pytest.raises(RecipeError, match=r"eval\.0\.name.*mmvp_mllm scores mllm models; `eval` lists evaluators of encoder models"):
        resolve_evaluators(load_recipe(recipe), load_plugins())
    assert main(["eval", "naturalbench", "-m", "x", "-p", "root=y", "-o", str(tmp_path / "o")]) == 2
    assert "naturalbench scores mllm models; this command scores encoder models" in capsys.readouterr().err
    assert main(["llava", "eval", "mmvp_vlm", "-m", "x", "-p", "root=y", "-o", str(tmp_path / "o")]) == 2
    assert "mmvp_vlm scores encoder models; this command scores mllm models" in capsys.readouterr().err


def test_pad_to_square_uses_the_processor_mean():
    out = pad_to_square(Image.new("RGB", (20, 10), (0, 0, 0)), (0.5, 0.25, 1.0))
    assert out.size == (20, 20) and out.getpixel((0, 0)) == (128, 64, 255) and out.getpixel((10, 10)) == (0, 0, 0)


def test_likelihood_scorer_nll_is_the_mean_token_nll_of_each_option_alone(tiny_llava):
    """The batched, padded scoring equals a hand computation on each option's own, unpadded
    sequence: -mean log p(answer token | everything before it)."""
    from llava_integration.conversation import prompt_ids
    from llava_integration.data import pad_to_square
    from llava_integration.scoring import LikelihoodScorer

    model, processor = tiny_llava
    scorer = LikelihoodScorer(model, processor)
    image = Image.new("RGB", (40, 24), (200, 30, 30))  # not square: the scorer pads it as LLaVA-1.5 does
    options = ["red", "a red circle", "blue"]  # different token counts: the batch is padded
    nll = scorer.option_nll(image, "What colour is it ?", options)
    tok = processor.tokenizer
    prompt = prompt_ids(tok, "What colour is it ?", model.config.image_token_index, scorer.image_tokens, with_image=True)
    square = pad_to_square(image, tuple(processor.image_processor.image_mean))
    pixels = processor.image_processor(images=[square], return_tensors="pt")["pixel_values"]
    for option, got in zip(options, nll):
        answer = tok(" " + option, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([prompt + answer]), pixel_values=pixels).logits[0].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        expected = -sum(float(logprobs[len(prompt) - 1 + k, token]) for k, token in enumerate(answer)) / len(answer)
        assert got == pytest.approx(expected, abs=1e-4), option
    choice, again = scorer.choose(image, "What colour is it ?", options)
    assert again == nll and choice == nll.index(min(nll))


class Scripted:
    """Answers from a script: question key -> chosen option index."""

    name = "scripted"

    def __init__(self, answers):
        self.answers = answers
        self.calls = []
        self.pixels = []  #: top-left colour of each image shown, to check which image went with which question

    def choose(self, image, question, options):
        self.calls.append((image is not None, question, tuple(options)))
        self.pixels.append(image.getpixel((0, 0)) if image is not None else None)
        pick = self.answers.pop(0)
        return pick, [0.0 if i == pick else 1.0 for i in range(len(options))]


def test_mmvp_mllm_reader_and_pair_accuracy(tmp_path):
    root = tmp_path / "MMVP"
    (root / "MMVP Images").mkdir(parents=True)
    rows = [(1, "Open or closed?", "(a) Open (b) Closed", "(a)"), (2, "Open or closed?", "(a) Open (b) Closed", "(b)"),
            (3, "Which way?", "(a) Left (b) Right", "(b)"), (4, "Which way?", "(a) Left (b) Right", "(a)")]
    with (root / "Questions.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Index", "Question", "Options", "Correct Answer"])
        w.writerows(rows)
    for index, *_ in rows:
        Image.new("RGB", (8, 8)).save(root / "MMVP Images" / f"{index}.jpg")
    evaluator = MMVPMLLMEvaluator(MMVPMLLMParams(root=str(root)))
    model = Scripted([0, 1, 1, 1])  # pair 1 right, pair 2 half right
    result = evaluator.evaluate(model)
    assert result.metrics == {"pair_accuracy": 50.0, "question_accuracy": 75.0}
    assert model.calls[0] == (True, "Open or closed?", ("Open", "Closed"))
    (root / "MMVP Images" / "4.jpg").unlink()
    with pytest.raises(ValueError, match="row 5: image .*4.jpg not found"):
        MMVPMLLMEvaluator(MMVPMLLMParams(root=str(root)))


def test_pope_reader_and_f1_by_hand(tmp_path):
    (tmp_path / "img").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "img" / "x.jpg")
    labels = ["yes", "yes", "no", "no"]
    lines = [json.dumps({"question_id": i, "image": "x.jpg", "text": f"Is there a thing {i}?", "label": label}) for i, label in enumerate(labels)]
    (tmp_path / "coco_pope_random.json").write_text("\n".join(lines) + "\n")
    evaluator = POPEEvaluator(POPEParams(root=str(tmp_path), image_folder=str(tmp_path / "img"), splits=["random"]))
    # predictions: yes, no, yes, no -> TP 1, FN 1, FP 1, TN 1
    m = evaluator.evaluate(Scripted([0, 1, 0, 1])).metrics
    assert m["random_accuracy"] == 50.0 and m["random_precision"] == 50.0 and m["random_recall"] == 50.0
    assert m["random_f1"] == 50.0 and m["random_yes_ratio"] == 50.0 and m["f1"] == 50.0
    with pytest.raises(ValueError, match="coco_pope_popular.json not found"):
        POPEEvaluator(POPEParams(root=str(tmp_path), image_folder=str(tmp_path / "img"), splits=["popular"]))


def test_cv_bench_reader_and_combined_accuracy_by_hand(tmp_path):
    from llava_integration.benchmarks import CVBenchEvaluator, CVBenchParams

    (tmp_path / "img").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "img" / "x.png")
    rows_2d = [{"idx": i, "type": "2D", "task": "Count", "question": f"How many? {i}", "choices": ["1", "2", "3"],
                "answer": "(B)", "filename": "img/x.png", "source": src} for i, src in enumerate(["ADE20K", "ADE20K", "COCO", "COCO"])]
    rows_3d = [{"idx": 10 + i, "type": "3D", "task": "Depth", "question": "Which is closer?", "choices": ["lamp", "bed"],
                "answer": "(A)", "filename": "img/x.png", "source": "Omni3D"} for i in range(2)]
    (tmp_path / "test_2d.jsonl").write_text("\n".join(json.dumps(r) for r in rows_2d))
    (tmp_path / "test_3d.jsonl").write_text("\n".join(json.dumps(r) for r in rows_3d))
    # ADE20K: right, wrong (50); COCO: right, right (100); Omni3D: right, wrong (50)
    m = CVBenchEvaluator(CVBenchParams(root=str(tmp_path))).evaluate(Scripted([1, 0, 1, 1, 0, 1])).metrics
    assert (m["ADE20K_accuracy"], m["COCO_accuracy"], m["Omni3D_accuracy"]) == (50.0, 100.0, 50.0)
    assert m["2D"] == 75.0 and m["3D"] == 50.0 and m["overall"] == 62.5
    (tmp_path / "test_3d.jsonl").write_text(json.dumps({**rows_3d[0], "answer": "(C)"}))
    with pytest.raises(ValueError, match=r"test_3d.jsonl:1: answer '\(C\)' is not one of 2 choices"):
        CVBenchEvaluator(CVBenchParams(root=str(tmp_path)))


def test_hallusion_bench_accuracies_by_hand(tmp_path):
    from llava_integration.benchmarks import HallusionEvaluator, HallusionParams

    (tmp_path / "hallusion_bench" / "VD").mkdir(parents=True)
    for name in ("0_0.png", "0_1.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / "hallusion_bench" / "VD" / name)
    base = {"category": "VD", "subcategory": "illusion", "set_id": "0", "visual_input": "1"}
    records = [
        {**base, "figure_id": "0", "question_id": "0", "question": "Is A longer?", "gt_answer": "1", "filename": "./hallusion_bench/VD/0_0.png"},
        {**base, "figure_id": "0", "question_id": "1", "question": "Is B longer?", "gt_answer": "0", "filename": "./hallusion_bench/VD/0_0.png"},
        {**base, "figure_id": "1", "question_id": "0", "question": "Is A longer?", "gt_answer": "0", "filename": "./hallusion_bench/VD/0_1.png"},
        {**base, "figure_id": "1", "question_id": "1", "question": "Is B longer?", "gt_answer": "1", "filename": "./hallusion_bench/VD/0_1.png"},
        {**base, "figure_id": "0", "question_id": "2", "visual_input": "0", "question": "Is water wet?", "gt_answer": "1"},
    ]
    (tmp_path / "HallusionBench.json").write_text(json.dumps(records))
    # answers: fig0 q0 yes (right), fig0 q1 no (right), fig1 q0 yes (wrong), fig1 q1 yes (right), text-only yes (right)
    model = Scripted([0, 1, 0, 0, 0])
    m = HallusionEvaluator(HallusionParams(file=str(tmp_path / "HallusionBench.json"))).evaluate(model).metrics
    assert m["all_accuracy"] == 80.0
    assert m["figure_accuracy"] == 50.0  # figure 0 all right, figure 1 not
    assert m["question_accuracy"] == pytest.approx(200 / 3)  # q0 wrong on figure 1; q1 and the text-only q2 right
    assert model.calls[-1][0] is False  # the text-only question goes without an image


def _png(colour) -> dict:
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}  # how the datasets library stores an Image feature


def write_naturalbench(path: Path, rows: list[dict], type_column: str = "Question Type") -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    table = {key: [row[key] for row in rows] for key in rows[0]}
    table[type_column] = table.pop("type")
    pq.write_table(pa.table(table), path)


def naturalbench_row(index, kind, yes, no, **answers):
    row = {"Index": index, "Image_0": _png((255, 0, 0)), "Image_1": _png((0, 0, 255)),
           "Question_0": f"Is it red? {index}", "Question_1": f"Is it blue? {index}",
           # NaturalBench's pattern: question 0 is answered "yes" on image 0, question 1 on image 1
           "Image_0_Question_0": yes, "Image_1_Question_0": no, "Image_0_Question_1": no, "Image_1_Question_1": yes,
           "type": kind, "Source": "test"}
    row.update(answers)
    return row


def test_naturalbench_accuracies_by_hand(tmp_path):
    from llava_integration.benchmarks import NaturalBenchEvaluator, NaturalBenchParams

    write_naturalbench(tmp_path / "NaturalBench" / "data" / "train-00000-of-00002.parquet", [naturalbench_row(0, "yes_no", "Yes", "No")])
    write_naturalbench(tmp_path / "NaturalBench" / "data" / "train-00001-of-00002.parquet", [naturalbench_row(1, "multiple_choice", "A", "B")],
                       type_column="Question_Type")  # the column's other published spelling
    evaluator = NaturalBenchEvaluator(NaturalBenchParams(root=str(tmp_path / "NaturalBench")))
    # order per row: q0 on image 0, q0 on image 1, q1 on image 0, q1 on image 1
    # row 0: all four right; row 1: q0 on image 1 answered A (truth B), the other three right
    model = Scripted([0, 1, 1, 0, 0, 0, 1, 0])
    m = evaluator.evaluate(model).metrics
    assert m["accuracy"] == 87.5  # 7 of 8 answers
    assert m["q_acc"] == 75.0  # row 1's question 0 is wrong on one image: 3 of 4 questions
    assert m["i_acc"] == 75.0  # row 1's image 1 has a wrong answer: 3 of 4 images
    assert m["g_acc"] == 50.0  # only row 0 is right throughout
    red, blue = (255, 0, 0), (0, 0, 255)
    assert model.pixels == [red, blue, red, blue] * 2
    assert model.calls[0] == (True, "Is it red? 0 Please answer Yes or No.", ("Yes", "No"))
    assert model.calls[4][2] == ("A", "B") and model.calls[4][1].endswith("letter corresponding to the correct option.")

    bad = tmp_path / "bad.parquet"
    write_naturalbench(bad, [naturalbench_row(7, "yes_no", "Yes", "No", Image_1_Question_1="Maybe")])
    with pytest.raises(ValueError, match=r"bad.parquet: row 0 \(Index 7\): Image_1_Question_1 is 'Maybe'"):
        NaturalBenchEvaluator(NaturalBenchParams(root=str(bad)))
    with pytest.raises(ValueError, match="no parquet file"):
        NaturalBenchEvaluator(NaturalBenchParams(root=str(tmp_path / "empty")))


def test_science_qa_img_accuracy_by_hand(tmp_path):
    from llava_integration.benchmarks import ScienceQAEvaluator, ScienceQAParams

    problems = {"10": {"question": "Which is a mammal?", "choices": ["frog", "eel", "bat", "ant"], "answer": 2, "image": "image.png"},
                "11": {"question": "Which is hotter?", "choices": ["sun", "ice"], "answer": 0, "image": "image.png"},
                "12": {"question": "Which is a word?", "choices": ["qz", "cat", "xk"], "answer": 1, "image": None}}
    questions = [
        {"id": "10", "image": "10/image.png", "conversations": [
            {"from": "human", "value": "<image>\nContext: A zoo.\nQuestion: Which is a mammal?\nOptions: (A) frog (B) eel (C) bat (D) ant"},
            {"from": "gpt", "value": "C"}]},
        {"id": "11", "image": "11/image.png", "conversations": [
            {"from": "human", "value": "<image>\nContext: N/A\nQuestion: Which is hotter?\nOptions: (A) sun (B) ice"}, {"from": "gpt", "value": "A"}]},
        {"id": "12", "conversations": [
            {"from": "human", "value": "Context: N/A\nQuestion: Which is a word?\nOptions: (A) qz (B) cat (C) xk"}, {"from": "gpt", "value": "B"}]},
    ]
    for pid in ("10", "11"):
        (tmp_path / "images" / "test" / pid).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "images" / "test" / pid / "image.png")
    (tmp_path / "problems.json").write_text(json.dumps(problems))
    (tmp_path / "llava_test_CQM-A.json").write_text(json.dumps(questions))

    model = Scripted([2, 1])  # 10 right (C), 11 wrong (B); 12 has no image and is not asked
    m = ScienceQAEvaluator(ScienceQAParams(root=str(tmp_path))).evaluate(model).metrics
    assert m == {"img_accuracy": 50.0}
    assert model.calls[0] == (True, "Context: A zoo.\nQuestion: Which is a mammal?\nOptions: (A) frog (B) eel (C) bat (D) ant\n"
                                    "Answer with the option's letter from the given choices directly.", ("A", "B", "C", "D"))
    model = Scripted([2, 1, 1])  # with the text-only question too, answered right
    m = ScienceQAEvaluator(ScienceQAParams(root=str(tmp_path), image_only=False)).evaluate(model).metrics
    assert m["img_accuracy"] == 50.0 and m["accuracy"] == pytest.approx(200 / 3)
    assert model.calls[2][0] is False and model.calls[2][2] == ("A", "B", "C")

    del problems["11"]
    (tmp_path / "problems.json").write_text(json.dumps(problems))
    with pytest.raises(ValueError, match=r"llava_test_CQM-A.json: record 1: id '11' is not in .*problems.json"):
        ScienceQAEvaluator(ScienceQAParams(root=str(tmp_path)))


def test_multiple_choice_jsonl(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    items = [{"image": "a.png", "question": "q", "options": ["x", "y"], "answer": "y", "pair": "p", "group": "g"},
             {"image": "a.png", "question": "q", "options": ["x", "y"], "answer": 0, "pair": "p", "group": "g"}]
    (tmp_path / "mc.jsonl").write_text("\n".join(json.dumps(i) for i in items))
    m = MultipleChoiceEvaluator(MultipleChoiceParams(file=str(tmp_path / "mc.jsonl"))).evaluate(Scripted([1, 1])).metrics
    assert m == {"accuracy": 50.0, "g_accuracy": 50.0, "pair_accuracy": 0.0}


@pytest.mark.slow
def test_cpu_twin_runs_the_whole_chain(tmp_path):
    from genhancer_miniature.twin import write_twin_data

    data = write_twin_data(tmp_path / "twin", train_images=24, eval_pairs=1)
    llava = {
        "language_model_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                                  "num_key_value_heads": 2, "max_position_embeddings": 256},
        "tokenizer_corpus": [str(data / "corpus.txt")], "max_length": 200, "gradient_checkpointing": False,
        "pretrain": {"data": str(data / "pretrain.json"), "learning_rate": 1e-3, "batch_size": 8, "max_steps": 2, "num_workers": 0, "save_steps": 1},
        "finetune": {"data": str(data / "finetune.json"), "learning_rate": 1e-4, "batch_size": 8, "max_steps": 2, "num_workers": 0},
        "eval": [{"name": "multiple_choice", "params": {"file": str(data / "eval.jsonl")}}],
    }
    recipe = write_recipe(tmp_path, {**TINY, "llava": llava})
    summary = run_recipe(recipe, tmp_path / "run")
    assert set(summary["llava"]["towers"]) == {"original", "enhanced"}
    for tower in ("original", "enhanced"):
        phases = summary["llava"]["towers"][tower]["phases"]
        assert phases["pretrain"]["steps"] == 2 and phases["finetune"]["steps"] == 2
        assert phases["pretrain"]["trainable_parameters"] < phases["finetune"]["trainable_parameters"]
        assert (tmp_path / "run" / "llava" / tower / "finetune" / "final" / "model.safetensors").is_file()
    assert set(summary["llava"]["eval"]["multiple_choice"]) == {"original", "enhanced"}
    assert (tmp_path / "run" / "llava" / "eval" / "multiple_choice" / "summary.json").is_file()
    table = (tmp_path / "run" / "llava" / "eval" / "table.md").read_text().splitlines()
    assert table[0] == "| benchmark | metric | original | enhanced | difference |"
    scores = summary["llava"]["eval"]["multiple_choice"]
    row = next(line for line in table if line.startswith("| multiple_choice | accuracy |"))
    assert row == (f"| multiple_choice | accuracy | {scores['original']['accuracy']:.2f} | {scores['enhanced']['accuracy']:.2f} | "
                   f"{scores['enhanced']['accuracy'] - scores['original']['accuracy']:+.2f} |")
    # a recipe that starts from an already enhanced encoder runs only the LLaVA phases
    only = write_recipe(tmp_path, {**TINY, "stage1": {"enabled": False}, "stage2": {"enabled": False},
                                   "llava": {**llava, "towers": ["enhanced"], "tower": str(tmp_path / "run" / "export")}}, "only.yaml")
    again = run_recipe(only, tmp_path / "only")
    assert again["stages"] == {} and list(again["llava"]["towers"]) == ["enhanced"]
