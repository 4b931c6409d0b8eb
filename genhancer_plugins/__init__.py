"""GenHancer's public API: everything a plugin (or a notebook) imports.

Plugins import from here, and their tests from :mod:`genhancer_plugins.testing`;
every other module of the package (``util``, ``registry``, ``recipe``,
``training``, ``evaluation``, ``commands``, ``cli``) is internal and may move
between releases. A test fails when a built-in plugin imports anything else.

Names load lazily (PEP 562): ``import genhancer_plugins`` imports neither torch nor
pydantic, so ``genhancer --help`` stays fast, and ``from genhancer_plugins import
Denoiser`` imports the tensor interfaces only then.

- Registering: :func:`hookimpl` (hooks: :mod:`genhancer_plugins.hookspecs`),
  :class:`ComponentSpec`, :class:`Params`, :func:`load_presets`,
  :func:`construction_device`, :class:`OfflineUnknown`, :data:`COMPONENT_KINDS`.
- Contracts (:mod:`genhancer_plugins.interfaces`): :class:`Encoder`,
  :class:`ImageTokenizer`, :class:`Denoiser`, :class:`Conditioner`, the datasets,
  :class:`Evaluator`, :class:`Pretrainer`, :class:`DownstreamPhase`, and the values
  that flow between them.
- Hook payloads (:mod:`genhancer_plugins.events`): :class:`RunInfo`,
  :class:`StageInfo`, :class:`StepInfo`, :class:`ExportInfo`.
- Helpers a plugin needs to behave like the built-ins: errors that reach the user as
  one line, atomic and umask-respecting files, safetensors checkpoints, the image
  conversion, tables, the evaluation writers, model loaders through the hooks, and
  the side-by-side command helpers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_HOMES = {
    # registering components and hooks
    "COMPONENT_KINDS": "registry.components", "ComponentSpec": "registry.components", "OfflineUnknown": "registry.components",
    "Params": "registry.components", "construction_device": "registry.components", "load_presets": "registry.components",
    "hookimpl": "hookspecs", "hookspec": "hookspecs",
    "PluginManager": "registry.manager", "load_plugins": "registry.manager",
    "load_image_text_model": "registry.loaders", "load_vision_tower": "registry.loaders",
    # the component contracts and the values between them
    **{name: "interfaces" for name in (
        "Condition", "ConditionSpec", "Conditioner", "Denoiser", "DownstreamPhase", "Encoder", "EncoderOutput", "EncoderSpec",
        "EvalResult", "Evaluator", "ImageDataset", "ImageTextModel", "ImageTokenizer", "MultipleChoiceModel", "PhaseContext",
        "Pretrainer", "StreamingImageDataset", "TargetSpec", "VisionTower", "count_parameters")},
    # hook payloads
    **{name: "events" for name in ("RunInfo", "StageInfo", "StepInfo", "ExportInfo")},
    # the recipe reference a phase's section uses for its own component lists
    "ComponentRef": "recipe.schema",
    # helpers
    "RecipeError": "util.errors", "RunError": "util.errors", "first_line": "util.errors",
    "respect_umask": "util.files", "save_tensors": "util.files", "write_json": "util.files", "write_text": "util.files",
    "to_rgb": "util.images", "to_tensor": "util.images", "memory_estimates": "util.memory",
    "loading_from": "util.hub", "model_source_problem": "util.hub", "shared_lock": "util.locks",
    "difference": "util.tables", "markdown_table": "util.tables", "text_table": "util.tables",
    "checkpoint_complete": "training.checkpoint", "list_checkpoints": "training.checkpoint",
    "load_checkpoint": "training.checkpoint", "save_checkpoint": "training.checkpoint",
    "evaluate_or_resume": "evaluation.runner", "write_comparison": "evaluation.runner",
    "add_comparison_args": "cli", "compare_models": "cli",
}

__all__ = sorted(_HOMES) + ["__version__"]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'genhancer_plugins' has no attribute {name!r} (the public names: genhancer_plugins.__all__)")
    value = getattr(importlib.import_module(f"genhancer_plugins.{home}"), name)
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return list(__all__)


if TYPE_CHECKING:  # what type checkers and editors see; at run time the names load lazily
    from genhancer_plugins.cli import add_comparison_args, compare_models
    from genhancer_plugins.evaluation.runner import evaluate_or_resume, write_comparison
    from genhancer_plugins.events import ExportInfo, RunInfo, StageInfo, StepInfo
    from genhancer_plugins.hookspecs import hookimpl, hookspec
    from genhancer_plugins.interfaces import (
        Condition,
        Conditioner,
        ConditionSpec,
        Denoiser,
        DownstreamPhase,
        Encoder,
        EncoderOutput,
        EncoderSpec,
        EvalResult,
        Evaluator,
        ImageDataset,
        ImageTextModel,
        ImageTokenizer,
        MultipleChoiceModel,
        PhaseContext,
        Pretrainer,
        StreamingImageDataset,
        TargetSpec,
        VisionTower,
        count_parameters,
    )
    from genhancer_plugins.recipe.schema import ComponentRef
    from genhancer_plugins.registry.components import (
        COMPONENT_KINDS,
        ComponentSpec,
        OfflineUnknown,
        Params,
        construction_device,
        load_presets,
    )
    from genhancer_plugins.registry.loaders import load_image_text_model, load_vision_tower
    from genhancer_plugins.registry.manager import PluginManager, load_plugins
    from genhancer_plugins.training.checkpoint import checkpoint_complete, list_checkpoints, load_checkpoint, save_checkpoint
    from genhancer_plugins.util.errors import RecipeError, RunError, first_line
    from genhancer_plugins.util.files import respect_umask, save_tensors, write_json, write_text
    from genhancer_plugins.util.hub import loading_from, model_source_problem
    from genhancer_plugins.util.images import to_rgb, to_tensor
    from genhancer_plugins.util.locks import shared_lock
    from genhancer_plugins.util.memory import memory_estimates
    from genhancer_plugins.util.tables import difference, markdown_table, text_table
