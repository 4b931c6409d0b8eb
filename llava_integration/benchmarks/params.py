"""Parameters of the LLaVA benchmarks (light: pydantic only, so registering them imports nothing heavy)."""

from __future__ import annotations

from pydantic import Field, PositiveInt

from genhancer_plugins import Params


class MMVPMLLMParams(Params):
    root: str = Field(..., description="directory with Questions.csv and `MMVP Images/`")


class POPEParams(Params):
    root: str = Field(..., description="directory holding coco_pope_{random,popular,adversarial}.json")
    image_folder: str = Field(..., description="COCO val2014 images")
    splits: list[str] = Field(default_factory=lambda: ["random", "popular", "adversarial"])


class CVBenchParams(Params):
    root: str = Field(..., description="directory with test_2d.jsonl, test_3d.jsonl and img/ (the `filename` paths)")


class HallusionParams(Params):
    file: str = Field(..., description="HallusionBench.json (the release's list of questions)")
    image_root: str | None = Field(None, description="where the `filename` paths resolve (default: beside the file)")


class NaturalBenchParams(Params):
    root: str = Field(..., description="the release's parquet files: a directory (searched recursively, e.g. data/train-*.parquet) or one file")


class ScienceQAParams(Params):
    root: str = Field(..., description="LLaVA's scienceqa folder: problems.json, the question file and images/test/")
    question_file: str = Field("llava_test_CQM-A.json", description="LLaVA-format questions, relative to root")
    image_folder: str = Field("images/test", description="where each question's `image` resolves, relative to root")
    image_only: bool = Field(True, description="ask only the questions with an image (ScienceQA-IMG); false asks all")


class MultipleChoiceParams(Params):
    file: str = Field(..., description="JSONL: image (relative to the file, optional), question, options, answer (index or text), pair (optional), group (optional)")
    limit: PositiveInt | None = None
