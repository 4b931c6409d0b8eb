"""Hook specifications: the whole contract between GenHancer and its plugins.

A plugin is a module (or object) with functions marked ``@hookimpl`` and named
like the specifications below, exposed through the ``genhancer`` entry-point
group of its distribution::

    [project.entry-points.genhancer]
    my_denoiser = "my_package.plugin"

Every hook is optional. The built-in plugins register exactly this way, and the
engine's own progress bar, log lines, trackers and previews are implementations of
the lifecycle hooks below that use nothing but their payloads.

Each plugin is called on its own: one that raises (in any hook) is reported once
and left out from then on; every other plugin, and the run, go on. A hook may stop
the command on purpose by raising ``RunError`` or ``RecipeError`` (one line, exit 2).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import argparse

    from genhancer_plugins.events import ExportInfo, RunInfo, StageInfo, StepInfo
    from genhancer_plugins.registry.components import ComponentSpec
    from genhancer_plugins.registry.manager import PluginManager

PROJECT = "genhancer"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec(historic=True)
def genhancer_addhooks(pluginmanager: "PluginManager") -> None:
    """Add hook specifications of your own with ``pluginmanager.add_hookspecs(module)``
    (as pytest's ``pytest_addhooks``). Historic: every plugin is asked when it registers,
    so the new hooks are known before any plugin is checked for misspelled ones."""


@hookspec
def genhancer_components() -> list["ComponentSpec"]:
    """Return the components (encoders, conditioners, tokenizers, denoisers,
    datasets, evaluators, pretrainers, phases) this plugin provides.

    Called once when the plugin manager loads, built-ins first. A name that two
    distributions register is ambiguous: both are listed as ``distribution:name``
    and a recipe must name one that way (the plain name is an error naming both).
    """


@hookspec(firstresult=True)
def genhancer_load_image_text_model(source: str, text_from: "str | None", device: str) -> "object | None":
    """Load ``source`` (a directory or hub id) as an
    :class:`~genhancer_plugins.evaluation.runner.ImageTextModel` for evaluators, or
    return None if this plugin does not handle it. The first non-None answer
    wins. ``text_from`` names the text tower to pair with a vision-only model."""


@hookspec(firstresult=True)
def genhancer_load_vision_tower(source: str) -> "object | None":
    """Load ``source`` (an export, a local directory or a hub id) as a
    :class:`~genhancer_plugins.interfaces.VisionTower` for downstream models
    (LLaVA's ``--vision_tower``), or return None if this plugin does not handle
    it. The first non-None answer wins."""


@hookspec
def genhancer_run_start(run: "RunInfo") -> None:
    """Called once per process after the components are built, before the
    first stage trains. ``run`` holds what the engine's own callbacks use: the
    recipe, the output directory, the live modules, the accelerator, probe images."""


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
    """Called on every process whenever the export step ends: after the enhanced
    encoder was written (by the main process only; ``export.written``), or when it was
    skipped (``export.written`` False, ``export.reason`` says why)."""


@hookspec
def genhancer_run_end(run: "RunInfo", completed: bool, error: "BaseException | None") -> None:
    """Called on every process when a run ends, completed or not (``error``: the exception
    that ended it, Ctrl-C included, or None). ``run.modules`` is empty when the run failed
    before its components were built."""


@hookspec
def genhancer_add_commands(subparsers: "argparse._SubParsersAction") -> None:
    """Add subcommands to the ``genhancer`` command line. Each parser sets its
    handler with ``parser.set_defaults(handler=function)``; the function takes
    the parsed ``argparse.Namespace`` (its ``manager`` is the loaded plugin manager)
    and returns the exit status; a ``RecipeError`` or ``RunError`` becomes one line. Import heavy
    libraries inside the handler, not here: ``genhancer --help`` stays fast."""
