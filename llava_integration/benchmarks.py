"""Multiple-choice benchmarks for LLaVA models, scored by likelihood.

Each evaluator reads its benchmark's published on-disk layout and asks a
:class:`MultipleChoiceModel` (``choose(image, question, options)``, e.g.
:class:`~llava_integration.scoring.LikelihoodScorer`) for every item.

- ``mmvp_mllm``: ``Questions.csv`` (``Index, Question, Options, Correct Answer``,
  options like ``(a) Open (b) Closed``, answer ``(a)``) and ``MMVP Images/<Index>.jpg``;
  300 questions in 150 consecutive pairs; question and pair accuracy.
- ``pope``: ``coco_pope_{random,popular,adversarial}.json`` (one JSON object per
  line: ``question_id, image, text, label`` with label yes/no) and an image
  folder (COCO val2014); accuracy, precision, recall, F1 and yes-ratio per split.
- ``cv_bench``: ``test_2d.jsonl`` / ``test_3d.jsonl`` (``idx, type, task, question,
  choices, answer`` like ``(A)``, ``filename`` under the root, ``source``); accuracy per
  source, 2D = mean(ADE20K, COCO), 3D = Omni3D, overall = mean(2D, 3D).
- ``hallusion_bench``: ``HallusionBench.json`` (``category, subcategory, visual_input,
  set_id, figure_id, question_id, question, gt_answer`` 1/0, ``filename``); yes/no by
  likelihood; all-, question- and figure-accuracy.
- ``naturalbench``: the Hugging Face release (``BaiqiL/NaturalBench``, ``data/train-*.parquet``;
  per row ``Index, Image_0, Image_1, Question_0, Question_1, Image_{i}_Question_{q}``
  answers Yes/No or A/B, ``Question Type`` yes_no / multiple_choice); four answers per
  row; Q-Acc, I-Acc, G-Acc and per-answer accuracy as NaturalBench defines them.
- ``science_qa``: LLaVA's ScienceQA files (``llava_test_CQM-A.json``, ``problems.json``,
  ``images/test/``); letters scored by likelihood; IMG accuracy (questions with an
  image), as LLaVA reports it, and all-question accuracy when text-only ones are asked.
- ``multiple_choice``: the project's own JSONL (``image, question, options,
  answer`` index or text, optional ``pair``), used by the CPU twin.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

from PIL import Image
from pydantic import Field, PositiveInt

from genhancer_plugins.components import Params
from genhancer_plugins.evaluation import EvalResult, Evaluator


class MultipleChoiceModel(Protocol):
    name: str

    def choose(self, image: Image.Image | None, question: str, options: Sequence[str]) -> tuple[int, list[float]]: ...


@dataclass(frozen=True)
class Item:
    key: str
    image: Path | bytes | None  #: a file, or encoded image bytes (benchmarks shipped as parquet)
    question: str
    options: tuple[str, ...]
    answer: int
    group: str = ""  #: split or category
    pair: str | None = None  #: items sharing a pair id count together


def _open(source: Path | bytes | None) -> Image.Image | None:
    if source is None:
        return None
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
        return image.convert("RGB")


def ask_all(model: MultipleChoiceModel, items: list[Item]) -> list[dict[str, Any]]:
    from tqdm.auto import tqdm

    rows = []
    for item in tqdm(items, desc="questions", leave=False, disable=None):
        choice, nll = model.choose(_open(item.image), item.question, item.options)
        rows.append({"key": item.key, "group": item.group, "pair": item.pair or "", "question": item.question,
                     "options": " | ".join(item.options), "answer": item.options[item.answer],
                     "prediction": item.options[choice], "correct": int(choice == item.answer),
                     "nll": " | ".join(f"{v:.4f}" for v in nll)})
    return rows


def accuracy(rows: list[dict[str, Any]]) -> float:
    """Share of rows answered right, in %."""
    return 100.0 * sum(r["correct"] for r in rows) / max(len(rows), 1)


def pair_accuracy(rows: list[dict[str, Any]]) -> float:
    pairs: dict[str, list[int]] = {}
    for row in rows:
        if row["pair"]:
            pairs.setdefault(row["pair"], []).append(row["correct"])
    return 100.0 * sum(all(v) for v in pairs.values()) / max(len(pairs), 1)


# -- MMVP (MLLM) -----------------------------------------------------------------
class MMVPMLLMParams(Params):
    root: str = Field(..., description="directory with Questions.csv and `MMVP Images/`")


OPTION = re.compile(r"\(([a-z])\)\s*([^()]+)", re.IGNORECASE)


def read_mmvp_mllm(root: Path) -> list[Item]:
    questions = root / "Questions.csv"
    if not questions.is_file():
        raise ValueError(f"mmvp_mllm: {questions} not found")
    with questions.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        needed = {"Index", "Question", "Options", "Correct Answer"}
        if not needed <= set(reader.fieldnames or []):
            raise ValueError(f"{questions}: expected columns {sorted(needed)}, found {reader.fieldnames}")
        rows = list(reader)
    if len(rows) % 2:
        raise ValueError(f"{questions}: {len(rows)} questions: pairs are consecutive rows, so the count must be even")
    items = []
    for number, row in enumerate(rows, 2):
        options = OPTION.findall(row["Options"])
        if len(options) < 2:
            raise ValueError(f"{questions}: row {number}: cannot read options from {row['Options']!r}")
        letters = [letter.lower() for letter, _ in options]
        answer = row["Correct Answer"].strip().strip("()").lower()
        if answer not in letters:
            raise ValueError(f"{questions}: row {number}: answer {row['Correct Answer']!r} is not one of the options")
        image = root / "MMVP Images" / f"{int(row['Index'])}.jpg"
        if not image.is_file():
            raise ValueError(f"{questions}: row {number}: image {image} not found")
        pair = str((number - 2) // 2)
        items.append(Item(row["Index"], image, row["Question"].strip(), tuple(t.strip() for _, t in options), letters.index(answer), pair=pair))
    return items


class MMVPMLLMEvaluator(Evaluator):
    name = "mmvp_mllm"

    def __init__(self, params: MMVPMLLMParams):
        self.items = read_mmvp_mllm(Path(params.root))

    def evaluate(self, model: MultipleChoiceModel) -> EvalResult:
        rows = ask_all(model, self.items)
        return EvalResult({"pair_accuracy": pair_accuracy(rows), "question_accuracy": accuracy(rows)}, "pair_accuracy", rows,
                          {"questions": len(rows)})


# -- POPE ---------------------------------------------------------------------
class POPEParams(Params):
    root: str = Field(..., description="directory holding coco_pope_{random,popular,adversarial}.json")
    image_folder: str = Field(..., description="COCO val2014 images")
    splits: list[str] = Field(default_factory=lambda: ["random", "popular", "adversarial"])


def read_pope(root: Path, image_folder: Path, splits: list[str]) -> list[Item]:
    items = []
    for split in splits:
        path = root / f"coco_pope_{split}.json"
        if not path.is_file():
            raise ValueError(f"pope: {path} not found")
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                label = record["label"].strip().lower()
                if label not in ("yes", "no"):
                    raise KeyError
                image = image_folder / record["image"]
            except (json.JSONDecodeError, KeyError, AttributeError):
                raise ValueError(f"{path}:{number}: expected question_id, image, text and label yes/no") from None
            if not image.is_file():
                raise ValueError(f"{path}:{number}: image {image} not found")
            items.append(Item(f"{split}-{record.get('question_id', number)}", image, record["text"], ("Yes", "No"),
                              0 if label == "yes" else 1, group=split))
    return items


class POPEEvaluator(Evaluator):
    name = "pope"

    def __init__(self, params: POPEParams):
        self.splits = params.splits
        self.items = read_pope(Path(params.root), Path(params.image_folder), params.splits)

    def evaluate(self, model: MultipleChoiceModel) -> EvalResult:
        rows = ask_all(model, self.items)
        metrics: dict[str, float] = {}
        for split in self.splits:
            part = [r for r in rows if r["group"] == split]
            tp = sum(r["prediction"] == "Yes" and r["answer"] == "Yes" for r in part)
            fp = sum(r["prediction"] == "Yes" and r["answer"] == "No" for r in part)
            fn = sum(r["prediction"] == "No" and r["answer"] == "Yes" for r in part)
            precision = tp / (tp + fp) if tp + fp else 0.0
            recall = tp / (tp + fn) if tp + fn else 0.0
            metrics[f"{split}_accuracy"] = accuracy(part)
            metrics[f"{split}_precision"] = 100.0 * precision
            metrics[f"{split}_recall"] = 100.0 * recall
            metrics[f"{split}_f1"] = 100.0 * (2 * precision * recall / (precision + recall) if precision + recall else 0.0)
            metrics[f"{split}_yes_ratio"] = 100.0 * sum(r["prediction"] == "Yes" for r in part) / len(part)
        metrics["f1"] = sum(metrics[f"{s}_f1"] for s in self.splits) / len(self.splits)
        return EvalResult(metrics, "f1", rows, {"questions": len(rows)})


# -- CV-Bench -----------------------------------------------------------------------
class CVBenchParams(Params):
    root: str = Field(..., description="directory with test_2d.jsonl, test_3d.jsonl and img/ (the `filename` paths)")


def read_cv_bench(root: Path) -> list[Item]:
    items = []
    for name in ("test_2d.jsonl", "test_3d.jsonl"):
        path = root / name
        if not path.is_file():
            raise ValueError(f"cv_bench: {path} not found")
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
                choices = [str(c) for c in record["choices"]]
                letter = record["answer"].strip().strip("()").upper()
                source = record["source"]
                image = root / record["filename"]
                question = record["question"]
            except (json.JSONDecodeError, KeyError, AttributeError, TypeError):
                raise ValueError(f"{where}: expected idx, question, choices, answer like (A), filename and source") from None
            index = ord(letter) - ord("A") if len(letter) == 1 else -1
            if not 0 <= index < len(choices):
                raise ValueError(f"{where}: answer {record['answer']!r} is not one of {len(choices)} choices")
            if not image.is_file():
                raise ValueError(f"{where}: image {image} not found")
            items.append(Item(str(record.get("idx", number)), image, question, tuple(choices), index, group=source))
    return items


class CVBenchEvaluator(Evaluator):
    """Accuracy per source; 2D = mean(ADE20K, COCO), 3D = Omni3D, overall = mean(2D, 3D), as CV-Bench defines it."""

    name = "cv_bench"

    def __init__(self, params: CVBenchParams):
        self.items = read_cv_bench(Path(params.root))

    def evaluate(self, model: MultipleChoiceModel) -> EvalResult:
        rows = ask_all(model, self.items)
        by_source = {}
        for source in ("ADE20K", "COCO", "Omni3D"):
            part = [r for r in rows if r["group"] == source]
            if not part:
                raise ValueError(f"cv_bench: no question from source {source}")
            by_source[source] = accuracy(part)
        two_d = (by_source["ADE20K"] + by_source["COCO"]) / 2
        metrics = {"overall": (two_d + by_source["Omni3D"]) / 2, "2D": two_d, "3D": by_source["Omni3D"],
                   **{f"{k}_accuracy": v for k, v in by_source.items()}}
        return EvalResult(metrics, "overall", rows, {"questions": len(rows)})


# -- HallusionBench -------------------------------------------------------------
class HallusionParams(Params):
    file: str = Field(..., description="HallusionBench.json (the release's list of questions)")
    image_root: str | None = Field(None, description="where the `filename` paths resolve (default: beside the file)")


def _read_json(path: Path, benchmark: str) -> Any:
    if not path.is_file():
        raise ValueError(f"{benchmark}: {path} not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


def read_hallusion(path: Path, image_root: Path) -> list[Item]:
    records = _read_json(path, "hallusion_bench")
    items = []
    for number, record in enumerate(records):
        where = f"{path}: record {number}"
        try:
            keys = [str(record[k]) for k in ("category", "subcategory", "set_id", "figure_id", "question_id")]
            answer = str(record["gt_answer"]).strip()
            visual = str(record["visual_input"]).strip() != "0"
            question = record["question"]
        except (KeyError, TypeError):
            raise ValueError(f"{where}: expected category, subcategory, set_id, figure_id, question_id, visual_input, question, gt_answer") from None
        if answer not in ("0", "1"):
            raise ValueError(f"{where}: gt_answer {answer!r} must be 1 (yes) or 0 (no)")
        image = None
        if visual:
            image = image_root / str(record.get("filename", "")).lstrip("./")
            if not image.is_file():
                raise ValueError(f"{where}: image {image} not found")
        category, subcategory, set_id, figure_id, question_id = keys
        items.append(Item(
            key=f"{category}/{subcategory}/{set_id}/{figure_id}/{question_id}", image=image, question=question,
            options=("Yes", "No"), answer=0 if answer == "1" else 1, group="figure" if visual else "no_figure",
            # pair = the question across its figures (qAcc); figure grouping is rebuilt from the key (fAcc)
            pair=f"{category}/{subcategory}/{set_id}/q{question_id}",
        ))
    return items


class HallusionEvaluator(Evaluator):
    """aAcc: every question; qAcc: a question counts when it is right for every figure it is asked
    about; fAcc: a figure counts when every question about it is right."""

    name = "hallusion_bench"

    def __init__(self, params: HallusionParams):
        path = Path(params.file)
        self.items = read_hallusion(path, Path(params.image_root) if params.image_root else path.parent)

    def evaluate(self, model: MultipleChoiceModel) -> EvalResult:
        rows = ask_all(model, self.items)
        figures: dict[str, list[int]] = {}
        for row in rows:
            if row["group"] == "figure":
                category, subcategory, set_id, figure_id, _ = row["key"].split("/")
                figures.setdefault(f"{category}/{subcategory}/{set_id}/{figure_id}", []).append(row["correct"])
        metrics = {
            "all_accuracy": accuracy(rows),
            "question_accuracy": pair_accuracy(rows),
            "figure_accuracy": 100.0 * sum(all(v) for v in figures.values()) / max(len(figures), 1),
        }
        return EvalResult(metrics, "question_accuracy", rows, {"questions": len(rows), "figures": len(figures)})


# -- NaturalBench -----------------------------------------------------------------
class NaturalBenchParams(Params):
    root: str = Field(..., description="the release's parquet files: a directory (searched recursively, e.g. data/train-*.parquet) or one file")


#: NaturalBench's own instruction after each question, by question type
NATURALBENCH_SUFFIX = {"yes_no": "Please answer Yes or No.",
                       "multiple_choice": "Please output the letter corresponding to the correct option."}
NATURALBENCH_OPTIONS = {"yes_no": ("Yes", "No"), "multiple_choice": ("A", "B")}


def _parquet_rows(path: Path, columns: list[str]):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError("naturalbench reads parquet files with pyarrow: pip install 'genhancer[benchmarks]'") from None
    handle = pq.ParquetFile(path)
    names = set(handle.schema_arrow.names)
    # the release renamed "Question Type" to "Question_Type" at one point; both are read
    type_column = next((c for c in ("Question_Type", "Question Type") if c in names), None)
    missing = [c for c in columns if c not in names] + ([] if type_column else ["Question_Type"])
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; found {sorted(names)}")
    for batch in handle.iter_batches(batch_size=64, columns=[*columns, type_column]):
        for row in batch.to_pylist():
            row["Question_Type"] = row.pop(type_column)
            yield row


def _image_bytes(value: Any, base: Path, where: str) -> bytes:
    """An image cell as the datasets library writes it: {bytes, path}, or plain bytes."""
    if isinstance(value, dict):
        if value.get("bytes"):
            return value["bytes"]
        if value.get("path") and (base / value["path"]).is_file():
            return (base / value["path"]).read_bytes()
    elif isinstance(value, bytes) and value:
        return value
    raise ValueError(f"{where}: no image bytes (and no readable image path)")


def read_naturalbench(root: Path) -> list[Item]:
    files = [root] if root.is_file() else sorted(root.rglob("*.parquet"))
    if not files:
        raise ValueError(f"naturalbench: no parquet file at {root}")
    columns = ["Index", "Image_0", "Image_1", "Question_0", "Question_1",
               *(f"Image_{i}_Question_{q}" for q in (0, 1) for i in (0, 1))]
    items = []
    for path in files:
        for number, row in enumerate(_parquet_rows(path, columns)):
            where = f"{path}: row {number} (Index {row['Index']})"
            kind = str(row["Question_Type"]).strip().lower()
            if kind not in NATURALBENCH_OPTIONS:
                raise ValueError(f"{where}: question type {row['Question_Type']!r} is not yes_no or multiple_choice")
            options = NATURALBENCH_OPTIONS[kind]
            images = [_image_bytes(row[f"Image_{i}"], path.parent, f"{where}: Image_{i}") for i in (0, 1)]
            for q in (0, 1):
                for i in (0, 1):
                    answer = str(row[f"Image_{i}_Question_{q}"]).strip().rstrip(".")
                    matches = [k for k, option in enumerate(options) if option.lower() == answer.lower()]
                    if not matches:
                        raise ValueError(f"{where}: Image_{i}_Question_{q} is {answer!r}, expected one of {list(options)}")
                    items.append(Item(f"{row['Index']}/q{q}/i{i}", images[i], f"{row[f'Question_{q}']} {NATURALBENCH_SUFFIX[kind]}",
                                      options, matches[0], group=kind, pair=str(row["Index"])))
    return items


class NaturalBenchEvaluator(Evaluator):
    """Each row asks two questions of two images. Q-Acc: a question counts when right on both images;
    I-Acc: an image counts when both its questions are right; G-Acc: a row counts when all four are right;
    accuracy: the four answers one by one (NaturalBench's binary score)."""

    name = "naturalbench"

    def __init__(self, params: NaturalBenchParams):
        self.items = read_naturalbench(Path(params.root))

    def evaluate(self, model: MultipleChoiceModel) -> EvalResult:
        rows = ask_all(model, self.items)
        groups: dict[str, dict[tuple[str, str], int]] = {}
        for row in rows:
            index, q, i = row["key"].rsplit("/", 2)
            groups.setdefault(index, {})[(q, i)] = row["correct"]
        questions = [all(g[(q, i)] for i in ("i0", "i1")) for g in groups.values() for q in ("q0", "q1")]
        images = [all(g[(q, i)] for q in ("q0", "q1")) for g in groups.values() for i in ("i0", "i1")]
        metrics = {
            "g_acc": 100.0 * sum(all(g.values()) for g in groups.values()) / max(len(groups), 1),
            "q_acc": 100.0 * sum(questions) / max(len(questions), 1),
            "i_acc": 100.0 * sum(images) / max(len(images), 1),
            "accuracy": accuracy(rows),
        }
        return EvalResult(metrics, "g_acc", rows, {"questions": len(rows), "groups": len(groups)})


# -- ScienceQA-IMG ------------------------------------------------------------------
class ScienceQAParams(Params):
    root: str = Field(..., description="LLaVA's scienceqa folder: problems.json, the question file and images/test/")
    question_file: str = Field("llava_test_CQM-A.json", description="LLaVA-format questions, relative to root")
    image_folder: str = Field("images/test", description="where each question's `image` resolves, relative to root")
    image_only: bool = Field(True, description="ask only the questions with an image (ScienceQA-IMG); false asks all")


#: LLaVA's --single-pred-prompt instruction
SCIENCE_QA_INSTRUCTION = "Answer with the option's letter from the given choices directly."
LETTERS = "ABCDE"


def read_science_qa(params: ScienceQAParams) -> list[Item]:
    root = Path(params.root)
    questions_path, problems_path = root / params.question_file, root / "problems.json"
    questions, problems = (_read_json(path, "science_qa") for path in (questions_path, problems_path))
    items = []
    for number, record in enumerate(questions):
        where = f"{questions_path}: record {number}"
        try:
            pid = str(record["id"])
            prompt = record["conversations"][0]["value"]
        except (KeyError, IndexError, TypeError):
            raise ValueError(f"{where}: expected id and conversations[0].value") from None
        if pid not in problems:
            raise ValueError(f"{where}: id {pid!r} is not in {problems_path}")
        has_image = bool(record.get("image"))
        if params.image_only and not has_image:
            continue
        problem = problems[pid]
        try:
            count, answer = len(problem["choices"]), int(problem["answer"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{problems_path}: problem {pid}: expected choices and an integer answer") from None
        if not 2 <= count <= len(LETTERS) or not 0 <= answer < count:
            raise ValueError(f"{problems_path}: problem {pid}: answer {answer} with {count} choices")
        image = None
        if has_image:
            image = root / params.image_folder / record["image"]
            if not image.is_file():
                raise ValueError(f"{where}: image {image} not found")
        question = prompt.replace("<image>", "").strip() + "\n" + SCIENCE_QA_INSTRUCTION
        items.append(Item(pid, image, question, tuple(LETTERS[:count]), answer, group="image" if has_image else "text"))
    if not items:
        raise ValueError(f"science_qa: {questions_path} has no question to ask" + (" with an image" if params.image_only else ""))
    return items


class ScienceQAEvaluator(Evaluator):
    """IMG accuracy: questions with an image context, as LLaVA reports ScienceQA-IMG."""

    name = "science_qa"

    def __init__(self, params: ScienceQAParams):
        self.items = read_science_qa(params)

    def evaluate(self, model: MultipleChoiceModel) -> EvalResult:
        rows = ask_all(model, self.items)
        metrics = {"img_accuracy": accuracy([r for r in rows if r["group"] == "image"])}
        if any(r["group"] == "text" for r in rows):
            metrics["accuracy"] = accuracy(rows)
        return EvalResult(metrics, "img_accuracy", rows, {"questions": len(rows)})


# -- the project's own multiple-choice JSONL ------------------------------------------
class MultipleChoiceParams(Params):
    file: str = Field(..., description="JSONL: image (relative to the file, optional), question, options, answer (index or text), pair (optional), group (optional)")
    limit: PositiveInt | None = None


def read_multiple_choice(path: Path) -> list[Item]:
    if not path.is_file():
        raise ValueError(f"multiple_choice: {path} not found")
    items = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise ValueError(f"{where}: not valid JSON") from None
        options = record.get("options")
        if not isinstance(options, list) or len(options) < 2:
            raise ValueError(f"{where}: needs a list of at least two options")
        answer = record.get("answer")
        index = options.index(answer) if isinstance(answer, str) and answer in options else answer
        if not isinstance(index, int) or not 0 <= index < len(options):
            raise ValueError(f"{where}: answer {answer!r} is not an option or an option index")
        image = path.parent / record["image"] if record.get("image") else None
        if image is not None and not image.is_file():
            raise ValueError(f"{where}: image {image} not found")
        items.append(Item(str(record.get("id", number)), image, str(record["question"]), tuple(map(str, options)), index,
                          group=str(record.get("group", "")), pair=str(record["pair"]) if record.get("pair") is not None else None))
    return items


class MultipleChoiceEvaluator(Evaluator):
    name = "multiple_choice"

    def __init__(self, params: MultipleChoiceParams):
        self.items = read_multiple_choice(Path(params.file))[: params.limit]

    def evaluate(self, model: MultipleChoiceModel) -> EvalResult:
        rows = ask_all(model, self.items)
        metrics = {"accuracy": accuracy(rows)}
        for group in sorted({r["group"] for r in rows if r["group"]}):
            part = [r for r in rows if r["group"] == group]
            metrics[f"{group}_accuracy"] = accuracy(part)
        if any(r["pair"] for r in rows):
            metrics["pair_accuracy"] = pair_accuracy(rows)
        return EvalResult(metrics, "accuracy", rows, {"questions": len(rows)})
