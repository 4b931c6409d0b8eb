"""The ``llava:`` recipe section (light: pydantic only; the phase plugin validates it)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt, model_validator

from genhancer_plugins import ComponentRef, Params


class LlavaPhaseSettings(Params):
    """One LLaVA-1.5 training phase (data in LLaVA's JSON format)."""

    data: str = Field(..., description="LLaVA JSON: [{id, image, conversations: [{from, value}]}]")
    image_folder: str | None = Field(None, description="images, relative paths in the JSON resolve here (default: beside it)")
    learning_rate: PositiveFloat
    batch_size: PositiveInt = Field(16, description="per device")
    gradient_accumulation_steps: PositiveInt = 1
    epochs: PositiveFloat = 1.0
    max_steps: PositiveInt | None = None
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0)
    save_steps: PositiveInt = 500
    logging_steps: PositiveInt = 10
    num_workers: NonNegativeInt = 4
    deepspeed: str | None = Field(None, description="zero2, zero3, or a DeepSpeed config file")


class LlavaSettings(Params):
    """LLaVA-1.5 with the enhanced tower: build, train (two phases), evaluate."""

    towers: list[Literal["original", "enhanced"]] = Field(
        default_factory=lambda: ["original", "enhanced"], description="train and evaluate one LLaVA per tower, for Table 2"
    )
    tower: str | None = Field(None, description="an already enhanced encoder directory; default: this run's export")
    original_tower: str | None = Field(None, description="the original encoder; default: the encoder's source")
    language_model: str | None = Field(None, description="hub id or directory of the LLM (LLaVA-1.5: lmsys/vicuna-7b-v1.5)")
    language_model_config: dict[str, Any] | None = Field(None, description="a random-weight Llama config (the CPU twin)")
    tokenizer_corpus: list[str] = Field(default_factory=list, description="text files to build an offline word tokenizer from (the CPU twin)")
    max_length: PositiveInt = 2048
    bf16: bool | Literal["auto"] = "auto"
    gradient_checkpointing: bool = True
    deepspeed: str | None = Field(None, description="default for both phases: zero2, zero3, or a config file")
    pretrain: LlavaPhaseSettings | None = None
    finetune: LlavaPhaseSettings | None = None
    eval: list[ComponentRef] = Field(default_factory=list)

    @model_validator(mode="after")
    def _needs_a_language_model(self) -> "LlavaSettings":
        if (self.language_model is None) == (self.language_model_config is None):
            raise ValueError("set exactly one of language_model (weights) or language_model_config (random, for tests)")
        return self
