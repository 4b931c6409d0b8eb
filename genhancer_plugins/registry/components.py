"""What a plugin registers: a named, typed component factory.

Each kind's factory is called with the validated parameters and, by keyword,
what it needs from the components built before it:

============  ==============================================  =================
kind          factory(params, ...)                            returns
============  ==============================================  =================
encoder       ``meta``                                        :class:`Encoder`
tokenizer     ``meta``                                        :class:`ImageTokenizer`
denoiser      ``target: TargetSpec, meta``                    :class:`Denoiser`
conditioner   ``encoder: EncoderSpec, condition: ConditionSpec, meta``
                                                              :class:`Conditioner`
dataset       ``image_size: int, seed: int``                  :class:`ImageDataset`
evaluator     (nothing else)                                  :class:`~genhancer_plugins.evaluation.runner.Evaluator`
pretrainer    ``seed: int``                                   :class:`Pretrainer`
phase         (nothing else)                                  :class:`~genhancer_plugins.interfaces.DownstreamPhase`
============  ==============================================  =================

A ``phase`` runs after the export (LLaVA-1.5 training is one). A recipe selects it
with a top-level section named like the phase (``llava:``), validated by its
``params``.

``meta=True`` asks for the architecture only, built on the ``meta`` device
with no weights loaded and nothing downloaded: ``genhancer validate`` uses it
to count parameters offline. A factory that cannot know its architecture
offline raises :class:`OfflineUnknown`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping

from pydantic import BaseModel, ConfigDict

ComponentKind = Literal["encoder", "conditioner", "tokenizer", "denoiser", "dataset", "evaluator", "pretrainer", "phase"]
COMPONENT_KINDS: tuple[str, ...] = ("encoder", "conditioner", "tokenizer", "denoiser", "dataset", "evaluator", "pretrainer", "phase")


class Params(BaseModel):
    """Base class of every component's parameters: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class OfflineUnknown(Exception):
    """Raised by a factory asked for ``meta=True`` when the architecture needs a download."""


def construction_device(meta: bool) -> Any:
    """Where a factory builds its modules: on the ``meta`` device (architecture only,
    no memory, no weights) when ``meta`` is asked for, else as usual."""
    import contextlib

    if not meta:
        return contextlib.nullcontext()
    import torch

    return torch.device("meta")


def load_presets(package: str) -> dict[str, Any]:
    """The ``presets.yaml`` shipped inside ``package`` (presets are data, not code)."""
    from importlib import resources

    import yaml

    return yaml.safe_load(resources.files(package).joinpath("presets.yaml").read_text())


@dataclass(frozen=True)
class ComponentSpec:
    """A component a plugin provides.

    Attributes:
        kind: one of :data:`COMPONENT_KINDS`.
        name: the name recipes select it by (unique per kind).
        factory: builds the component; see the module docstring for its arguments.
        params: the pydantic model validating the recipe's ``params``.
        presets: named parameter sets (data, not code); a recipe's ``preset``
            picks one and its ``params`` override single fields.
        default_preset: preset applied when a recipe names none.
        description: one line for ``genhancer plugins``.
        check: ``check(params) -> [problem, ...]``: what ``validate`` can see is
            wrong before a run starts (a data directory that does not exist).
        scores: evaluators only: the kind of model they score, ``"encoder"``
            (an :class:`~genhancer_plugins.interfaces.ImageTextModel`: recipe
            ``eval:``, ``genhancer eval``) or ``"mllm"`` (a
            :class:`~genhancer_plugins.interfaces.MultipleChoiceModel`: the
            evaluation sections and commands of downstream phases).
    """

    kind: ComponentKind
    name: str
    factory: Callable[..., Any]
    params: type[Params] = Params
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    default_preset: str | None = None
    description: str = ""
    scores: Literal["encoder", "mllm"] = "encoder"
    #: Optional offline check of validated params (data that is not there, say), shown by ``genhancer validate``.
    check: Callable[[Any], list[str]] | None = None
    #: Dotted paths in the params of the stacks of repeated blocks (encoder layers, denoiser blocks):
    #: ``genhancer rehearse --depth D`` shortens each to at most D, keeping every width.
    depth_fields: tuple[str, ...] = ()
    #: ``genhancer rehearse``: params for a rehearsal, reading a small synthetic copy in this component's
    #: own layout written under a directory. dataset: ``rehearsal(params, directory, image_size) -> params``;
    #: evaluator: ``rehearsal(params, directory) -> params``; phase: ``rehearsal(params, directory, depth)
    #: -> (params, notes)`` (random weights at the real widths, stacks shortened to ``depth``).
    rehearsal: Callable[..., Any] | None = None
