"""Every phase's inputs, checked before the first phase starts.

``genhancer run`` refuses to start, and ``genhancer validate`` exits 1, when a
recipe's inputs are not ready: one line per problem, naming the phase (recipe
section), the field and the path or id. What is checked:

- each component's own ``ComponentSpec.check`` (a data directory, shards);
- every model a component, or a phase, loads from ``source`` (a local
  directory, or a hub id in the cache or reachable: :mod:`genhancer_plugins.util.hub`);
- every evaluator, of ``eval:`` and of each phase, is built (it reads its
  benchmark's files and layout, which is all it needs before a model);
- each downstream phase's :meth:`~genhancer_plugins.interfaces.DownstreamPhase.check`
  (LLaVA: its data files, image folders, DeepSpeed configs and language model);
- the places a run writes: the output directory, the frozen-work cache, the
  pretrainer's cache (``$GENHANCER_CACHE``);
- the trackers of ``train.report_to`` are installed, and (``environment=True``,
  the run itself) a precision the device has.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, Callable

from genhancer_plugins.interfaces import PhaseContext
from genhancer_plugins.recipe.build import cache_root, resolve_components, resolve_evaluators
from genhancer_plugins.recipe.schema import LoadedRecipe
from genhancer_plugins.util.errors import RecipeError, RunError
from genhancer_plugins.util.hub import model_source_problem

#: tracker -> (module to import, pip package)
TRACKERS = {"wandb": ("wandb", "wandb"), "tensorboard": ("tensorboard", "tensorboard")}


def writable_problem(path: Path, what: str) -> str | None:
    """None when ``path`` is (or can be made) a directory this process may write in."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        return f"{what} {path} exists and is not a directory"
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        return f"{what} {path}: {existing} is not a directory"
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        return f"{what} {path}: {existing} is not writable"
    return None


def source_problem(params: Any) -> str | None:
    """The ``source`` convention: a component whose params have ``source`` (hub id or path) loads from it."""
    source = getattr(params, "source", None)
    if not isinstance(source, str) or not source:
        return None
    problem = model_source_problem(source, getattr(params, "revision", None), getattr(params, "subfolder", None))
    return f"params.source: {problem}" if problem else None


def check_inputs(loaded: LoadedRecipe, manager: Any, output_dir: str | Path | None, environment: bool = False,
                 built: Callable[[str, Any], None] = lambda section, evaluator: None) -> list[str]:
    """The problems in ``loaded``'s inputs, one line each (empty: ready). ``built(section, evaluator)``
    receives each recipe evaluator built here, so a run need not build it twice."""
    recipe = loaded.recipe
    problems: list[str] = []

    def add(where: str, problem: str | None) -> None:
        if problem:
            problems.append(f"{where}: {problem}")

    active = bool(recipe.active_stages())
    for section, comp in resolve_components(loaded, manager).items():
        if not active:
            break
        where = f"{section} ({comp.ref.name})"
        if comp.registered.spec.check is not None:
            for problem in comp.registered.spec.check(comp.params):
                add(where, problem)
        add(where, source_problem(comp.params))
    if active:
        for spec in resolve_evaluators(loaded, manager):
            add(f"{spec.section} ({spec.ref.name})", _build_evaluator(spec, built))
    for name, params in recipe.phases().items():
        phase = manager.get("phase", name).spec.factory(params)
        for problem in phase.check(_check_context(loaded, manager, output_dir)):
            add(name, problem)
    if output_dir:
        add("output_dir", writable_problem(Path(output_dir), "output directory"))
    if active and recipe.pretrain is not None:
        add(f"pretrain ({recipe.pretrain.name})", writable_problem(cache_root() / "pretrained", "cache (GENHANCER_CACHE)"))
    if active and recipe.cache.enabled and recipe.cache.directory:
        add("cache.directory", writable_problem(Path(recipe.cache.directory), "frozen-work cache"))
    for tracker in recipe.train.report_to:
        module, package = TRACKERS[tracker]
        if importlib.util.find_spec(module) is None:
            add("train.report_to", f"{tracker} is not installed: `pip install {package}`, or remove it from report_to")
    if environment and active:
        add("train.mixed_precision", precision_problem(recipe.train.mixed_precision))
    return problems


def precision_problem(precision: str) -> str | None:
    import torch

    if precision == "fp16" and not torch.cuda.is_available():
        return "fp16 needs a CUDA GPU and none is available: use bf16, no or auto"
    if precision == "bf16" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        return "bf16 is not supported by this GPU: use fp16, no or auto"
    return None


def _build_evaluator(spec: Any, built: Callable[[str, Any], None]) -> str | None:
    try:
        built(spec.section, spec.build())
    except (FileNotFoundError, ValueError, RecipeError, RunError) as exc:
        message = str(exc)
        return message.removeprefix(f"{spec.ref.name}: ")  # the line names the evaluator already
    return None


def _check_context(loaded: LoadedRecipe, manager: Any, output_dir: str | Path | None) -> PhaseContext:
    """What a phase's ``check`` sees: nothing trained yet, evaluators built on request."""

    def build_evaluators(section: str, refs: list[Any], scores: str) -> list[Any]:
        return [spec.build() for spec in resolve_evaluators(loaded, manager, section, refs, scores)]

    def no_original() -> str:
        raise RunError("a phase's check cannot ask for the original encoder: nothing is written before the run")

    return PhaseContext(recipe=loaded.recipe, output_dir=Path(output_dir or "."), enhanced_encoder=None, original_encoder=no_original,
                        build_evaluators=build_evaluators, seed=loaded.recipe.train.seed, resume=False, is_main_process=True,
                        log=lambda message: None, wait_for_everyone=lambda: None, plugins=manager)


def require_inputs(loaded: LoadedRecipe, manager: Any, output_dir: str | Path | None, **kwargs: Any) -> None:
    """Raise one :class:`RunError` listing every problem of :func:`check_inputs`."""
    problems = check_inputs(loaded, manager, output_dir, **kwargs)
    if problems:
        count = f"{len(problems)} input{'s are' if len(problems) > 1 else ' is'}"
        raise RunError(f"{loaded.files[0]}: {count} not ready, nothing was started:\n  " + "\n  ".join(problems))
