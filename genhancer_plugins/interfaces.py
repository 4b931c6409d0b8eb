"""Typed interfaces every component implements.

Data flows between components as plain values (tensors and the dataclasses
below), so each plugin can be tested alone with random tensors:

    images [B,3,H,W] in [0,1]
      -> Encoder      -> EncoderOutput(global_token [B,D], local_tokens [B,N,D'])
      -> Conditioner  -> Condition(pooled [B,P] | None, tokens [B,L,T] | None, token_positions [B,L,2] | None)
    images -> ImageTokenizer.encode -> targets (latents [B,C,h,w] or indices [B,L])
    Denoiser.loss(targets, condition) -> scalar
    Denoiser.sample(condition) -> targets

Every component receives images in [0, 1] and applies its own
normalisation (the encoder its processor's mean/std, the VAE [-1, 1]), at its
own resolution: the encoder's ``spec.image_size`` and the tokenizer's
``input_size`` (default: the encoder's), resized from one crop at the larger.

The contracts, one per component kind (what its factory returns):

============  ===========================================================
encoder       :class:`Encoder`
tokenizer     :class:`ImageTokenizer`
denoiser      :class:`Denoiser` (with its :class:`ConditionSpec`)
conditioner   :class:`Conditioner`
dataset       :class:`ImageDataset` or :class:`StreamingImageDataset`
evaluator     :class:`Evaluator` (scores an :class:`ImageTextModel` or a :class:`MultipleChoiceModel`)
pretrainer    :class:`Pretrainer`
phase         :class:`DownstreamPhase` (receives a :class:`PhaseContext`)
============  ===========================================================

and :class:`VisionTower`, what ``genhancer_load_vision_tower`` answers for a
downstream model that holds the encoder as its vision tower.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Protocol, Sequence

import torch
from torch import Tensor, nn


@dataclass
class EncoderOutput:
    """What an encoder sees in a batch of images."""

    global_token: Tensor  #: [B, D]: the class token (CLIP: projected pooler output)
    local_tokens: Tensor  #: [B, N, D_local]: patch tokens of the last layer


@dataclass
class Condition:
    """What the denoiser is conditioned on; either field may be absent."""

    pooled: Tensor | None = None  #: [B, P]: modulation vector
    tokens: Tensor | None = None  #: [B, L, T]: condition tokens
    #: [B, L, 2]: (row, column) of each condition token's patch centre as a share of
    #: the image side (0..1); NaN for tokens with no place (the global token). None: no positions.
    token_positions: Tensor | None = None


@dataclass(frozen=True)
class EncoderSpec:
    """Shapes an encoder produces, known before any image is seen."""

    global_dim: int
    local_dim: int
    num_local_tokens: int
    image_size: int


@dataclass(frozen=True)
class ConditionSpec:
    """The condition inputs a denoiser accepts (None: not accepted)."""

    pooled_dim: int | None
    token_dim: int | None


@dataclass(frozen=True)
class TargetSpec:
    """The denoiser's target space, as the tokenizer produces it."""

    kind: Literal["continuous", "discrete"]
    shape: tuple[int, ...]  #: per sample: (C, h, w) latents or (L,) code indices
    vocab_size: int | None = None  #: codebook size for discrete targets


class Encoder(nn.Module, ABC):
    """A vision encoder under post-training.

    Implementations wrap a Hugging Face model and must keep its parameter
    names, so that LoRA targets and exports use the hub's key layout.
    """

    spec: EncoderSpec

    @abstractmethod
    def forward(self, images: Tensor) -> EncoderOutput:
        """Encode images in [0, 1], shape [B, 3, H, W] at ``spec.image_size``."""

    @abstractmethod
    def vision_parameters(self) -> list[nn.Parameter]:
        """Parameters of the vision side (what stage 2 may fine-tune fully)."""

    @abstractmethod
    def lora_target_modules(self) -> list[str]:
        """Names (relative to this module) of the linear layers LoRA adapts."""

    @abstractmethod
    def save_pretrained(self, directory: Path, dtype: torch.dtype | None = None) -> None:
        """Write the encoder in the Hugging Face layout any user can load, with
        floating-point weights in ``dtype`` (default: as they are)."""

    def enable_gradient_checkpointing(self) -> bool:
        """Recompute activations in backward to save memory; False if this encoder cannot."""
        return False

    def reload(self, directory: Path) -> "Encoder":
        """A new encoder read from what :meth:`save_pretrained` wrote (the export check)."""
        raise NotImplementedError(f"{type(self).__name__} cannot read its own export back")

    def pretrained_source(self) -> str | None:
        """Where the untouched encoder loads from (a hub id or directory); None for random weights."""
        return None

    def text_tower_source(self) -> str | None:
        """For an encoder saved without a text tower: where a matching one loads from, so that
        image-text evaluators can score the export; None when it has its own or none exists."""
        return None

    def describe(self) -> dict[str, Any]:
        """Facts for plans, model cards and run summaries (family, architecture, sizes), JSON values."""
        return {}


class ImageTokenizer(nn.Module, ABC):
    """A frozen map from images to the denoiser's target space and back (a VAE or VQ-GAN;
    not a text tokenizer, which belongs to an encoder's text tower)."""

    #: The side, in pixels, of the images this tokenizer encodes; None: the encoder's. The data
    #: are cropped at the larger of the two and each component reads the same crop at its own size.
    input_size: int | None = None

    @abstractmethod
    def target_spec(self, image_size: int) -> TargetSpec:
        """The target space for square images of ``image_size`` pixels."""

    @abstractmethod
    def encode(self, images: Tensor) -> Tensor:
        """Images in [0, 1] -> targets."""

    @abstractmethod
    def decode(self, targets: Tensor) -> Tensor:
        """Targets -> images in [0, 1]."""

    def encode_parameters(self, images: Tensor) -> Tensor:
        """What the frozen-work cache stores per image: everything :meth:`encode` computes
        before its random draw (a VAE's latent mean and log-variance). Default: the targets
        themselves, right for a deterministic tokenizer."""
        return self.encode(images)

    def targets_from_parameters(self, parameters: Tensor) -> Tensor:
        """Targets from :meth:`encode_parameters`' output, drawing fresh noise where :meth:`encode` would."""
        return parameters

    def pretrained_source(self) -> str | None:
        """Where its weights load from (a hub id, directory or file); None for random weights (plans show it)."""
        return None


class Denoiser(nn.Module, ABC):
    """A generative model of targets given a condition."""

    condition_spec: ConditionSpec

    @abstractmethod
    def loss(self, targets: Tensor, condition: Condition) -> Tensor:
        """Training loss (a scalar) for a batch of targets."""

    @abstractmethod
    def sample(self, condition: Condition, steps: int = 20) -> Tensor:
        """Generate a batch of targets for the given condition."""

    def enable_gradient_checkpointing(self) -> bool:
        """Recompute activations in backward to save memory; False if this denoiser cannot."""
        return False

    def compile_network(self) -> bool:
        """``torch.compile`` the network in place (parameter names unchanged); False if this denoiser cannot."""
        return False

    def pretrained_source(self) -> str | None:
        """Where its pretrained weights load from (a hub id, directory or file); None: randomly
        initialised, the paper's lightweight denoiser (plans show it)."""
        return None

    def frozen_parameters(self) -> list[nn.Parameter]:
        """Parameters that never train, in any stage (a pretrained network kept frozen: only the
        projector learns to speak to it). Default: none; everything trains when the stage trains the denoiser."""
        return []

    def save_pretrained(self, directory: Path) -> None:
        """Write the trained denoiser in its library's own layout (default: its
        parameters as ``model.safetensors``)."""
        from genhancer_plugins.util.files import save_tensors

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_tensors({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}, directory / "model.safetensors")


class Conditioner(nn.Module, ABC):
    """Turns encoder output into the denoiser's condition (holds projector h)."""

    #: Whether :meth:`forward` reads ``local_tokens`` (the frozen-work cache stores them only then).
    uses_local_tokens: bool = True

    @abstractmethod
    def forward(self, encoded: EncoderOutput) -> Condition:
        """Project encoder output into the denoiser's condition inputs."""


class ImageDataset(Protocol):
    """A map-style dataset of images (the engine shards it with a sampler).

    ``__getitem__`` returns a dict with at least ``pixel_values`` (float
    tensor [3, H, W] in [0, 1] at the requested size) and ``key`` (str), and
    optionally ``skipped``: keys of unreadable samples passed over to find
    this one (counted and reported, never a crash).

    Random augmentation: a dataset with a ``set_epoch(epoch)`` method (the
    shipped ones) is told the epoch before each, and should draw from a
    generator keyed by (seed, epoch, index), so that a sample is the same crop
    however many processes or loader workers read it, and a new one each
    epoch; ``data.fixed_crops`` takes crop ``c`` as its epoch ``c``. (Loader
    workers are then started anew each epoch, or they would keep a stale copy.)
    Without ``set_epoch``, draw from torch's global RNG, which the engine
    seeds per step.
    """

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Mapping[str, Any]: ...


class StreamingImageDataset(Protocol):
    """An iterable dataset (a ``torch.utils.data.IterableDataset``) that shards
    itself across processes and workers and yields items as above, forever
    (each process's stream repeats, so all take the same number of steps)."""

    def __len__(self) -> int:
        """Images in one epoch over all processes (the engine's epoch length)."""

    def __iter__(self) -> Any: ...

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch`` (called before each epoch and on resume)."""


class ImageTextModel(Protocol):
    """What encoder evaluators score: an image-text model (CLIP, SigLIP, ...)."""

    name: str

    def image_embeddings(self, images: Sequence[Any], normalize: bool = True) -> Tensor:
        """Global-token embeddings [N, D] of PIL images (the model's own preprocessing),
        L2-normalised unless ``normalize`` is False."""

    def text_embeddings(self, texts: Sequence[str]) -> Tensor:
        """L2-normalised embeddings [M, D]."""

    def logits(self, image_embeddings: Tensor, text_embeddings: Tensor) -> Tensor:
        """[M texts, N images] logits with the model's own scale (and bias, for SigLIP)."""


class MultipleChoiceModel(Protocol):
    """What downstream-model benchmarks score: a model that picks one of several answers."""

    name: str

    def choose(self, image: Any, question: str, options: Sequence[str]) -> tuple[int, list[float]]:
        """The chosen option's index and a score per option (e.g. mean negative log-likelihood)."""


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (works on meta-device modules too)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


@dataclass
class PhaseContext:
    """What a downstream phase receives from the run it follows."""

    recipe: Any  #: the validated recipe
    output_dir: Path  #: the run directory; a phase writes under ``output_dir / <phase name>``
    enhanced_encoder: Path | None  #: this run's export (None when the run trained nothing)
    original_encoder: Any  #: () -> str: where the untouched encoder loads from (a copy is written if needed)
    build_evaluators: Any  #: (section, refs, scores) -> list of (label, Evaluator), errors naming the section
    seed: int
    resume: bool
    is_main_process: bool
    log: Any  #: (message) -> None
    wait_for_everyone: Any  #: () -> None
    #: the loaded plugins: ``load_vision_tower(context.plugins, source)``, ``plugins.get(kind, name)``
    plugins: Any = None
    #: False under ``genhancer run --no-progress``: plain log lines through ``log``, no progress bars
    show_progress: bool = True


@dataclass
class VisionTower:
    """An exported (or hub) encoder loaded as a downstream model's vision tower: the plain
    vision model of its library (hidden states of every layer), its image processor, and
    whether its token sequence starts with a class token (LLaVA drops it)."""

    model: nn.Module
    image_processor: Any
    has_class_token: bool
    family: str = ""  #: e.g. "clip", "siglip": for messages and model cards
    register_tokens: int = 0  #: tokens after the class token and before the patches (DINOv3's registers)


class DownstreamPhase(ABC):
    """A phase after the export that uses the enhanced encoder (component kind ``phase``)."""

    @abstractmethod
    def run(self, context: PhaseContext) -> dict[str, Any]:
        """Run (every process calls it; resume when ``context.resume``); return the phase's part of run.json."""

    def plan(self) -> dict[str, Any]:
        """What ``genhancer validate`` shows for this phase (plain JSON values)."""
        return {}

    def check(self, context: PhaseContext) -> list[str]:
        """Before the run starts (``genhancer run`` refuses, ``genhancer validate`` exits 1): what is
        missing or wrong in this phase's inputs (data files, image folders, benchmarks, models and
        tokenizers that will not resolve), one line each naming the field and the path or id. Nothing
        is trained yet: ``context.enhanced_encoder`` is None. Default: nothing to check."""
        return []

    def forecast(self, gpus: int, encoder: EncoderSpec, encoder_parameters: int) -> list[dict[str, Any]]:
        """For ``genhancer rehearse``: the real job's cost, one row per training phase, as
        ``{"phase", "steps", "global_batch", "flops_per_step", "memory_per_gpu_gb", "parallelism", "note"}``
        (``encoder``: the enhanced tower's shapes; ``memory_estimates`` gives the memory). Default: none."""
        return []


class Pretrainer:
    """A recipe phase that produces the encoder to enhance (``pretrain:``).

    It runs before the encoder is built, on the main process, and is cached
    by its parameters so it runs once per machine. Its answer is merged into
    the encoder's parameters (typically ``{"source": directory}``).
    """

    def encoder_params(self, cache_dir: "Path", log: "Callable[[str], None]", train: bool = True) -> dict[str, Any]:
        """Train (or find in ``cache_dir``) and return encoder parameter overrides. With
        ``train=False`` (reloading a finished run) a missing cache entry is an error, not minutes of training."""
        raise NotImplementedError

    def planned_encoder_params(self) -> dict[str, Any]:
        """Overrides that describe the architecture without training (for ``validate``)."""
        raise NotImplementedError


@dataclass
class EvalResult:
    metrics: dict[str, float]  #: flat, e.g. {"average": 31.9, "Color and Appearance": 40.0}
    primary: str  #: the headline metric's key
    rows: list[dict[str, Any]] = field(default_factory=list)  #: per-item predictions for the CSV
    info: dict[str, Any] = field(default_factory=dict)  #: counts and other facts


class Evaluator(ABC):
    """A benchmark. Deterministic: the same model gives the same numbers."""

    name: str = "evaluator"
    #: Image-text evaluators that embed text: a model without a text tower is refused before any image is embedded.
    needs_text: bool = False

    @abstractmethod
    def evaluate(self, model: Any) -> EvalResult:
        """Score one model: an :class:`ImageTextModel` for evaluators registered with
        ``scores="encoder"``, a :class:`MultipleChoiceModel` for ``scores="mllm"``."""

    def legend(self, results: Mapping[str, EvalResult], reference: str | None = None) -> str:
        """Optionally, text printed under the side-by-side table: what the columns mean and
        what a reader should notice (the comparison is ``results``, ``reference`` first)."""
        return ""

    def plot(self, results: Mapping[str, EvalResult], path: Path) -> Path | None:
        """Optionally draw the models' results side by side; return the file written."""
        return None
