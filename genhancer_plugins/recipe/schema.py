"""Recipes: YAML files validated by pydantic.

A recipe may ``extends:`` a base recipe (a path relative to the file); the
child's mappings merge into the base's key by key, lists and scalars replace.
``--set a.b.c=value`` overrides any field (the value is parsed as YAML).
Every error names the dotted path of the field and the file that set it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, PositiveInt, ValidationError, model_validator

from genhancer_plugins.recipe.files import apply_override, deep_update, dump_yaml, load_chain, load_yaml, parse_override  # noqa: F401  (re-exported)
from genhancer_plugins.registry.components import Params
from genhancer_plugins.util.errors import RecipeError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class ComponentRef(_Strict):
    """Selects a registered component by name, with a preset and overrides."""

    name: str
    preset: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class DataSettings(ComponentRef):
    batch_size: PositiveInt = Field(16, description="images per device per micro-batch")
    num_workers: NonNegativeInt = 0
    pin_memory: bool | Literal["auto"] = Field("auto", description="page-locked batches for faster copies; auto: on a GPU")
    fixed_crops: NonNegativeInt = Field(
        0, description="K > 0: K crops per image drawn once, an epoch visits each (N x K items); 0: a fresh crop every time"
    )
    persistent_workers: bool | Literal["auto"] = Field("auto", description="keep loader workers between epochs; auto: when num_workers > 0")


class LoraSettings(_Strict):
    rank: PositiveInt = 16
    alpha: PositiveFloat = 16
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    bias: Literal["none", "lora_only", "all"] = Field(
        "none",
        description="biases that train beside the adapters (merged into the export): none; lora_only, the bias of each "
        "adapted linear layer (peft's bias='lora_only', the release's setting); all, every bias of the vision side",
    )


class StageSettings(_Strict):
    enabled: bool = True
    steps: PositiveInt | None = Field(None, description="optimisation steps; overrides epochs")
    epochs: PositiveFloat = 1.0
    learning_rate: PositiveFloat = 1e-4
    warmup_steps: NonNegativeInt = 0
    weight_decay: float = Field(0.01, ge=0.0)
    lr_decay: Literal["constant", "cosine"] = Field(
        "constant", description="after the warm-up: constant, or a cosine from the learning rate to 0 at the last step"
    )
    optimizer: Literal["adamw", "sgd"] = Field("adamw", description="adamw (the paper's), or sgd with `momentum` (DIVA's)")
    betas: tuple[float, float] = Field((0.9, 0.999), description="adamw only")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="sgd only")
    max_grad_norm: PositiveFloat | None = 1.0

    @property
    def lr_schedule(self) -> str:
        """In words: what the engine's ``stage.learning_rate`` does with these settings."""
        after = "constant" if self.lr_decay == "constant" else "cosine to 0"
        return after if self.warmup_steps == 0 else f"linear warm-up over {self.warmup_steps} steps, then {after}"


class Stage1Settings(StageSettings):
    """Encoder frozen; projector and denoiser train."""


class AnchorSettings(_Strict):
    """An explicit hold on global semantics (beyond the paper, which relies on LoRA alone):
    stage 2's loss gains ``weight * d(g, g0)``, g the enhanced encoder's global token, g0 the
    original encoder's on the same images."""

    weight: float = Field(0.0, ge=0.0, description="0: off (the paper's stage 2, bit for bit)")
    distance: Literal["mse", "cosine"] = Field("mse", description="mse: mean squared difference; cosine: mean of 1 - cos(g, g0)")


class Stage2Settings(StageSettings):
    """Encoder adapted (LoRA or full); denoiser and projector train ("all") or not ("only")."""

    learning_rate: PositiveFloat = 1e-5
    mode: Literal["all", "only"] = "all"
    encoder_tuning: Literal["lora", "full"] = "lora"
    lora: LoraSettings = Field(default_factory=LoraSettings)
    anchor: AnchorSettings = Field(default_factory=AnchorSettings)
    init_from: str | None = Field(
        None, description="a previous run directory (or its stage1/final) to start from instead of training stage 1"
    )


class TrainSettings(_Strict):
    seed: int = 0
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    gradient_accumulation_steps: PositiveInt = 1
    checkpoint_every: NonNegativeInt = Field(0, description="steps between checkpoints; 0: only at the end of a stage")
    keep_checkpoints: PositiveInt = 2
    log_every: PositiveInt = 10
    report_to: list[Literal["tensorboard", "wandb"]] = Field(default_factory=list)
    # -- speed (docs/performance.md measures each) --
    compile: bool = Field(False, description="torch.compile the encoder and the denoiser (the first steps compile)")
    fused_optimizer: bool | Literal["auto"] = Field("auto", description="fused AdamW (one kernel per step); auto: on a GPU")
    gradient_checkpointing: bool = Field(False, description="recompute activations in backward: less memory, ~30% more compute")
    cast_frozen: bool = Field(True, description="under bf16/fp16, hold stage 1's frozen encoder in the compute dtype (fp32 restored after)")
    sharding: Literal["none", "fsdp"] = Field(
        "none", description="fsdp: weights, gradients and optimiser states of the training parts split over the processes (FSDP2)"
    )
    loss_sync: Literal["every_step", "logged"] = Field(
        "every_step", description="read the loss back (and average it over processes) every step, or only on logged steps"
    )
    nonfinite: Literal["stop", "skip"] = Field(
        "stop", description="a NaN/inf loss or gradient: stop (one line naming the step and the last good checkpoint; checked "
                            "on logged steps and before every checkpoint, nothing non-finite is saved) or skip the update (checked every step)"
    )
    max_skipped_steps: PositiveInt = Field(5, description="nonfinite: skip stops after this many non-finite steps in a row")
    num_threads: PositiveInt | None = Field(
        None, description="CPU threads per process; default: the usable cores / the processes on this node (printed at start-up)"
    )


class PreviewSettings(_Strict):
    """Reconstruction grids (input | reconstruction) written under each stage's directory."""

    images: NonNegativeInt = Field(4, description="images per grid; 0 turns previews off")
    sampling_steps: PositiveInt = Field(20, description="Euler steps (rectified flow) or decoding rounds (perceiver)")
    every: NonNegativeInt = Field(0, description="also write a grid every N steps (0: only at the end of each stage)")


class CacheSettings(_Strict):
    """The frozen-work cache (genhancer_plugins.training.cache); needs data.fixed_crops."""

    enabled: bool = False
    directory: str | None = Field(None, description="where cache folders live (shared by runs); default: <run>/cache")
    dtype: Literal["float32", "float16", "bfloat16"] = Field(
        "float32", description="storage; float32 keeps training exactly as without the cache, half precision halves disk and memory"
    )


class ExportSettings(_Strict):
    enabled: bool = True
    dtype: Literal["float32", "bfloat16"] = Field(
        "float32",
        description="weights' dtype in the export: float32 (the trained fp32 master weights) or bfloat16 "
        "(the release's rounding under DeepSpeed bf16)",
    )


STAGE1, STAGE2 = "stage1", "stage2"
STAGES = (STAGE1, STAGE2)


class Recipe(_Strict):
    """A whole GenHancer run.

    Top-level keys beyond these fields are sections of downstream phases
    (component kind ``phase``, e.g. ``llava:``): each is validated by the
    phase plugin of that name (:func:`validate_phase_sections`) and selects it.
    """

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    name: str
    description: str = ""
    schedule: Literal["two_stage", "end_to_end"] = Field(
        "two_stage",
        description="two_stage: stage1 then stage2; end_to_end: no stage1, encoder and denoiser train together from step 0",
    )
    output_dir: str | None = Field(None, description="default for --output-dir; relative to the working directory")
    pretrain: ComponentRef | None = Field(
        None, description="a phase that produces the encoder first (cached); its result fills encoder.params"
    )
    encoder: ComponentRef
    conditioner: ComponentRef = Field(default_factory=lambda: ComponentRef(name="cls"))
    tokenizer: ComponentRef
    denoiser: ComponentRef
    data: DataSettings
    train: TrainSettings = Field(default_factory=TrainSettings)
    stage1: Stage1Settings = Field(default_factory=Stage1Settings)
    stage2: Stage2Settings = Field(default_factory=Stage2Settings)
    export: ExportSettings = Field(default_factory=ExportSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    preview: PreviewSettings = Field(default_factory=PreviewSettings)
    eval: list[ComponentRef] = Field(
        default_factory=list, description="evaluators applied to the original encoder before training and to the export after"
    )

    @model_validator(mode="after")
    def _something_trains(self) -> "Recipe":
        if self.cache.enabled and not self.data.fixed_crops:
            raise ValueError("cache.enabled needs data.fixed_crops (K crops per image drawn once): the cache keys its entries by crop")
        if not self.active_stages() and not self.model_extra:
            raise ValueError("stage1 and stage2 are both disabled: nothing would train (a downstream phase section may run alone)")
        if self.schedule == "end_to_end":
            if not self.stage2.enabled:
                raise ValueError("schedule end_to_end trains in stage2, which is disabled")
            if self.stage2.mode != "all" or self.stage2.init_from:
                raise ValueError("schedule end_to_end trains the denoiser from scratch: needs stage2.mode 'all' and no stage2.init_from")
        return self

    def active_stages(self) -> list[str]:
        """The stages that run, in order."""
        stages = []
        if self.stage1.enabled and self.schedule == "two_stage":
            stages.append(STAGE1)
        if self.stage2.enabled:
            stages.append(STAGE2)
        return stages

    def stage_settings(self, stage: str) -> StageSettings:
        return self.stage1 if stage == STAGE1 else self.stage2

    def phases(self) -> dict[str, Any]:
        """Downstream phase sections, by phase name: their validated parameters."""
        return dict(self.model_extra or {})


@dataclass
class LoadedRecipe:
    recipe: Recipe
    raw: dict[str, Any]  #: the merged mapping, after extends and overrides
    files: list[Path]  #: the recipe file first, then the files it extends
    origins: dict[str, str] = field(default_factory=dict)  #: dotted path -> file or "--set"

    def origin(self, path: str) -> str:
        """The file that set ``path`` (or the closest parent that was set)."""
        parts = path.split(".")
        for end in range(len(parts), 0, -1):
            found = self.origins.get(".".join(parts[:end]))
            if found:
                return found
        below = [source for key, source in self.origins.items() if key.startswith(path + ".")]
        if below:  # a mapping only its children were set in (--set nosuch.deep.path=1)
            return below[0]
        return str(self.files[0])

    def error(self, path: str, message: str) -> RecipeError:
        return RecipeError(f"{self.origin(path)}: {path}: {message}")


def _format_loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def validation_error(loaded: LoadedRecipe | None, exc: ValidationError, prefix: str = "", files: list[Path] | None = None) -> RecipeError:
    lines = []
    for err in exc.errors():
        path = prefix + _format_loc(err["loc"])
        message = "unknown field (check the spelling)" if err["type"] == "extra_forbidden" else err["msg"]
        where = loaded.origin(path) if loaded else str(files[0] if files else "recipe")
        lines.append(f"{where}: {path or '<top>'}: {message}")
    return RecipeError("invalid recipe:\n  " + "\n  ".join(lines))


def load_recipe(path: str | Path, overrides: list[str] = (), manager: Any = None) -> LoadedRecipe:
    """Read, merge (``extends``), override (``--set``) and validate a recipe,
    its phase sections by the plugins of ``manager`` (default: every installed plugin)."""
    merged, origins, files = load_chain(Path(path))
    for text in overrides:
        keys, value = parse_override(text)
        apply_override(merged, origins, keys, value)
    loaded = LoadedRecipe(recipe=None, raw=merged, files=files, origins=origins)  # type: ignore[arg-type]
    try:
        loaded.recipe = Recipe.model_validate(merged)
    except ValidationError as exc:
        raise validation_error(loaded, exc) from None
    if loaded.recipe.model_extra:
        if manager is None:
            from genhancer_plugins.registry.manager import load_plugins

            manager = load_plugins()
        validate_phase_sections(loaded, manager)
    return loaded


def validate_phase_sections(loaded: LoadedRecipe, manager: Any) -> None:
    """Each extra top-level key must name a registered ``phase``; its value is
    validated by that phase's parameters and replaces the raw mapping."""
    extra = loaded.recipe.__pydantic_extra__
    phases = manager.components.get("phase", {})
    for key, value in list(extra.items()):
        registered = phases.get(key)
        if registered is None:
            known = ", ".join(sorted(phases)) or "none installed"
            raise loaded.error(key, f"unknown field (check the spelling; downstream phase sections: {known})")
        if value is None:  # `llava: null` in a child recipe switches an inherited phase off
            del extra[key]
            continue
        try:
            extra[key] = registered.spec.params.model_validate(value)
        except ValidationError as exc:
            raise validation_error(loaded, exc, prefix=f"{key}.") from None


def resolve_params(loaded: LoadedRecipe, section: str, ref: ComponentRef, spec: Any) -> Params:
    """Preset + overrides for one component, validated by its params model."""
    preset_name = ref.preset or spec.default_preset
    values: dict[str, Any] = {}
    if preset_name is not None:
        if preset_name not in spec.presets:
            known = ", ".join(sorted(spec.presets)) or "none"
            raise loaded.error(f"{section}.preset", f"{spec.kind} {spec.name!r} has no preset {preset_name!r}; presets: {known}")
        values = dict(spec.presets[preset_name])
    values = deep_update(values, ref.params)
    try:
        return spec.params.model_validate(values)
    except ValidationError as exc:
        raise validation_error(loaded, exc, prefix=f"{section}.params.") from None
