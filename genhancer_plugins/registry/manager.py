"""Plugin discovery: entry points of the ``genhancer`` group, loaded one by one.

A plugin that fails to import or to register is recorded with its entry
point and the error; every other plugin keeps working.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Iterable

import pluggy

from genhancer_plugins import hookspecs
from genhancer_plugins.registry.components import COMPONENT_KINDS, ComponentSpec

ENTRY_POINT_GROUP = "genhancer"


class ComponentNotFound(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0])


@dataclass(frozen=True)
class PluginSource:
    """Where a plugin came from."""

    plugin: str  #: entry-point name (or the name given to ``register``)
    entry_point: str  #: ``module`` or ``module:attr``
    distribution: str
    version: str


@dataclass(frozen=True)
class RegisteredComponent:
    spec: ComponentSpec
    source: PluginSource


@dataclass(frozen=True)
class PluginFailure:
    source: PluginSource
    stage: str  #: "import" or "register"
    error: str
    details: str

    def message(self) -> str:
        return (
            f"plugin {self.source.plugin!r} (entry point {self.source.entry_point!r} "
            f"from {self.source.distribution} {self.source.version}) failed to {self.stage}: {self.error}"
        )


@dataclass
class PluginManager:
    """Holds the pluggy manager and the component registry built from it."""

    pm: pluggy.PluginManager
    components: dict[str, dict[str, RegisteredComponent]] = field(
        default_factory=lambda: {kind: {} for kind in COMPONENT_KINDS}
    )
    failures: list[PluginFailure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)  #: plugins left out on request

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def register(self, plugin: Any, source: PluginSource) -> None:
        """Register a plugin object/module and its components, isolating failures.

        A hook implementation whose name matches no hook (a misspelling, which
        would otherwise silently never run) fails the plugin, naming the hook."""
        try:
            self.pm.register(plugin, name=source.plugin)
        except Exception as exc:  # a bad hookimpl signature, a duplicate name
            self.failures.append(_failure(source, "register", exc))
            return
        unknown = [name for name in _implemented_hooks(self.pm, plugin) if name not in KNOWN_HOOKS]
        if unknown:
            self.pm.unregister(plugin)
            error = ValueError(
                f"implements {', '.join(unknown)}, which is no genhancer hook (misspelled?); hooks: {', '.join(sorted(KNOWN_HOOKS))}"
            )
            self.failures.append(PluginFailure(source, "register", str(error), ""))
            return
        impl = getattr(plugin, "genhancer_components", None)
        if impl is None:
            return
        try:
            specs = list(impl() or [])
        except Exception as exc:
            self.pm.unregister(plugin)
            self.failures.append(_failure(source, "register", exc))
            return
        for spec in specs:
            self._add(spec, source)

    def _add(self, spec: ComponentSpec, source: PluginSource) -> None:
        if not isinstance(spec, ComponentSpec) or spec.kind not in self.components:
            self.warnings.append(f"plugin {source.plugin!r} returned an invalid component: {spec!r}; ignored")
            return
        existing = self.components[spec.kind].get(spec.name)
        if existing is not None:
            self.warnings.append(
                f"{spec.kind} {spec.name!r} from plugin {source.plugin!r} clashes with the one from "
                f"{existing.source.plugin!r} ({existing.source.distribution}); keeping the first"
            )
            return
        self.components[spec.kind][spec.name] = RegisteredComponent(spec, source)

    def get(self, kind: str, name: str) -> RegisteredComponent:
        """The component ``name`` of ``kind``, or an error listing what exists."""
        if kind not in self.components:
            raise ComponentNotFound(f"unknown component kind {kind!r}; kinds: {', '.join(COMPONENT_KINDS)}")
        found = self.components[kind].get(name)
        if found is None:
            known = ", ".join(sorted(self.components[kind])) or "none"
            hint = ""
            if self.failures:
                hint = " (some plugins failed to load: run `genhancer plugins` for details)"
            raise ComponentNotFound(f"no {kind} named {name!r} is registered; registered {kind}s: {known}{hint}")
        return found


KNOWN_HOOKS = frozenset(name for name in dir(hookspecs) if name.startswith("genhancer_"))
#: Environment variable: comma-separated plugin names to leave out (as ``--disable-plugin``).
DISABLE_ENV = "GENHANCER_DISABLE_PLUGINS"


def _implemented_hooks(pm: pluggy.PluginManager, plugin: Any) -> list[str]:
    return sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])


def _failure(source: PluginSource, stage: str, exc: BaseException) -> PluginFailure:
    return PluginFailure(source, stage, f"{type(exc).__name__}: {exc}", traceback.format_exc())


def _entry_points() -> Iterable[metadata.EntryPoint]:
    seen: set[tuple[str, str]] = set()
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        # Editable installs can expose the same distribution twice on sys.path.
        key = (ep.name, ep.value)
        if key not in seen:
            seen.add(key)
            yield ep


def disabled_plugins(names: Iterable[str] = ()) -> set[str]:
    """Plugin names to leave out: ``names`` plus those in $GENHANCER_DISABLE_PLUGINS."""
    import os

    from_env = [n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",")]
    return {n for n in [*names, *from_env] if n}


def load_plugins(extra: Iterable[tuple[Any, str]] = (), disable: Iterable[str] = ()) -> PluginManager:
    """Discover every plugin of the ``genhancer`` entry-point group.

    ``extra`` registers additional in-process plugins as ``(object, name)``,
    which is how tests and notebooks add hooks without packaging them.
    ``disable`` (and $GENHANCER_DISABLE_PLUGINS) names entry points to skip.
    """
    manager = PluginManager(pluggy.PluginManager(hookspecs.PROJECT))
    manager.pm.add_hookspecs(hookspecs)
    skip = disabled_plugins(disable)
    manager.disabled = sorted(skip)
    for ep in _entry_points():
        if ep.name in skip:
            continue
        dist = getattr(ep, "dist", None)
        source = PluginSource(
            plugin=ep.name,
            entry_point=ep.value,
            distribution=dist.name if dist is not None else "unknown",
            version=dist.version if dist is not None else "unknown",
        )
        try:
            plugin = ep.load()
        except Exception as exc:
            manager.failures.append(_failure(source, "import", exc))
            continue
        manager.register(plugin, source)
    for plugin, name in extra:
        module = getattr(plugin, "__module__", None) or getattr(plugin, "__name__", "")
        manager.register(plugin, PluginSource(name, str(module), "in-process", "-"))
    return manager
