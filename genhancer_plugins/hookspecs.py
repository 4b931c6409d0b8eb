"""Hook specifications: the whole contract between GenHancer and its plugins.

A plugin is a module (or object) with functions marked ``@hookimpl`` and named
like the specifications below, exposed through the ``genhancer`` entry-point
group of its distribution::

    [project.entry-points.genhancer]
    my_denoiser = "my_package.plugin"

Every hook is optional. The built-in plugins register exactly this way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import argparse

    from genhancer_plugins.registry.components import ComponentSpec
    from genhancer_plugins.events import ExportInfo, RunInfo, StageInfo, StepInfo

PROJECT = "genhancer"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def genhancer_components() -> list["ComponentSpec"]:
    """Return the components (encoders, conditioners, tokenizers, denoisers,
    datasets, evaluators) this plugin provides.

    Called once when the plugin manager loads. Names must be unique per kind;
    a clash is reported and the later registration is ignored.
    """


@hookspec(firstresult=True)
def genhancer_load_image_text_model(source: str, text_from: "str | None", device: str) -> "object | None":
    """Load ``source`` (a directory or hub id) as an
    :class:`~genhancer_plugins.evaluation.runner.ImageTextModel` for evaluators, or
    return None if this plugin does not handle it. The first non-None answer
    wins. ``text_from`` names the text tower to pair with a vision-only model."""


@hookspec
def genhancer_run_start(run: "RunInfo") -> None:
    """Called once per process after the components are built, before the
    first stage trains. ``run.modules`` holds the live modules."""


@hookspec
def genhancer_stage_start(stage: "StageInfo") -> None:
    """Called on every process when a stage starts training (``stage.steps`` is
    the step it starts from: 0, or the checkpoint's when resuming)."""


@hookspec
def genhancer_step_end(step: "StepInfo") -> None:
    """Called after every optimisation step (not every micro-batch) on every
    process, with the step's loss, learning rate and throughput."""


@hookspec
def genhancer_stage_end(stage: "StageInfo") -> None:
    """Called on every process when a stage finishes, after its final
    weights are saved."""


@hookspec
def genhancer_export_end(export: "ExportInfo") -> None:
    """Called on every process after the enhanced encoder was exported (the
    directory is written by the main process only)."""


@hookspec
def genhancer_add_commands(subparsers: "argparse._SubParsersAction") -> None:
    """Add subcommands to the ``genhancer`` command line. Each parser sets its
    handler with ``parser.set_defaults(handler=function)``; the function takes
    the parsed ``argparse.Namespace`` (its ``manager`` is the loaded plugin manager)
    and returns the exit status; a ``RecipeError`` or ``RunError`` becomes one line. Import heavy
    libraries inside the handler, not here: ``genhancer --help`` stays fast."""
