"""Plugin discovery and every call into plugins, one plugin at a time.

Entry points of the ``genhancer`` group load built-ins first (the ``genhancer``
distribution), then third parties, then in-process plugins. Each hook is called
through pluggy, on one plugin at a time, so that a plugin that fails to import, to
register, to list its components, to add its commands, to load a model or inside a
lifecycle hook is recorded with its entry point and the error and loses only
itself; every other plugin keeps working. Two distributions registering the same
component name make the name ambiguous: a recipe then names one as
``distribution:name``, and the plain name is an error naming both.
"""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Iterable

import pluggy

from genhancer_plugins import hookspecs
from genhancer_plugins.registry.components import COMPONENT_KINDS, ComponentSpec
from genhancer_plugins.util.errors import RecipeError

ENTRY_POINT_GROUP = "genhancer"
BUILTIN_DISTRIBUTION = "genhancer"
#: Environment variable: comma-separated plugin names to leave out (as ``--disable-plugin``).
DISABLE_ENV = "GENHANCER_DISABLE_PLUGINS"
#: Deliberate stops a hook may raise on purpose (they end the command in one line); anything else loses the plugin.
PASS_THROUGH = ("RecipeError", "RunError")


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
    stage: str  #: "import", "register", or the hook that raised
    error: str
    details: str

    def message(self) -> str:
        what = f"failed to {self.stage}" if self.stage in ("import", "register") else f"failed in {self.stage}"
        return (f"plugin {self.source.plugin!r} (entry point {self.source.entry_point!r} "
                f"from {self.source.distribution} {self.source.version}) {what}: {self.error}")


@dataclass
class PluginManager:
    """The pluggy manager, the component registry built from it, and what went wrong."""

    pm: pluggy.PluginManager
    components: dict[str, dict[str, RegisteredComponent]] = field(default_factory=lambda: {kind: {} for kind in COMPONENT_KINDS})
    #: kind -> name -> every registration of a name two distributions claim (selected as ``distribution:name``)
    clashes: dict[str, dict[str, list[RegisteredComponent]]] = field(default_factory=lambda: {kind: {} for kind in COMPONENT_KINDS})
    failures: list[PluginFailure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)  #: plugins left out on request
    sources: dict[str, PluginSource] = field(default_factory=dict)  #: plugin name -> where it came from
    #: when true, a failure inside a lifecycle hook is printed as it happens (a run), not only recorded
    report_failures: bool = False

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def add_hookspecs(self, module_or_class: Any) -> None:
        """New hooks, for plugins that offer hooks of their own (from ``genhancer_addhooks``)."""
        self.pm.add_hookspecs(module_or_class)

    # -- registration --------------------------------------------------------------
    def register(self, plugin: Any, source: PluginSource) -> bool:
        """Register a plugin object or module; False (and a recorded failure) if pluggy refuses it."""
        try:
            self.pm.register(plugin, name=source.plugin)
        except Exception as exc:  # a bad hookimpl signature, a duplicate name, a failing genhancer_addhooks
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            self.failures.append(_failure(source, "register", exc))
            return False
        self.sources[source.plugin] = source
        return True

    def unregister(self, name: str) -> None:
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)

    def _finish_loading(self, names: list[str]) -> None:
        """After every plugin is registered (hookspecs added by plugins are known now): fail
        the plugins implementing a hook that exists nowhere (a misspelling, which would
        otherwise silently never run), then collect every plugin's components in order."""
        for name in names:
            plugin = self.pm.get_plugin(name)
            unknown = sorted(c.name for c in self.pm.get_hookcallers(plugin) or [] if not c.has_spec())
            if unknown:
                self.pm.unregister(plugin)
                known = sorted(n for n in dir(self.pm.hook) if n.startswith("genhancer_"))
                self.failures.append(PluginFailure(self.sources[name], "register", (
                    f"ValueError: implements {', '.join(unknown)}, which is no genhancer hook (misspelled?); hooks: {', '.join(known)}"), ""))
        for name in names:
            if self.pm.get_plugin(name) is None:
                continue
            answers = self._call_one("genhancer_components", name, failed_in="register")
            if answers is _FAILED:
                continue
            for spec in [spec for answer in answers for spec in (answer or [])]:
                self._add(spec, self.sources[name])
        self.warnings += [self._clash_message(kind, name) for kind, names in self.clashes.items() for name in names]

    def _add(self, spec: ComponentSpec, source: PluginSource) -> None:
        if not isinstance(spec, ComponentSpec) or spec.kind not in self.components:
            self.warnings.append(f"plugin {source.plugin!r} returned an invalid component: {spec!r}; ignored")
            return
        table, clashes = self.components[spec.kind], self.clashes[spec.kind]
        new = RegisteredComponent(spec, source)
        if spec.name in clashes:
            clashes[spec.name].append(new)
        elif spec.name in table:
            clashes[spec.name] = [table.pop(spec.name), new]
        else:
            table[spec.name] = new
            return
        for registered in clashes[spec.name]:
            table[f"{registered.source.distribution}:{spec.name}"] = registered

    def _clash_message(self, kind: str, name: str) -> str:
        entries = self.clashes[kind][name]
        who = " and ".join(f"{r.source.distribution} {r.source.version} (plugin {r.source.plugin!r})" for r in entries)
        choices = " or ".join(f"`name: {r.source.distribution}:{name}`" for r in entries)
        return f"{kind} {name!r} is registered by {who}; a recipe must choose one: {choices} (or uninstall one)"

    # -- lookup ----------------------------------------------------------------------
    def get(self, kind: str, name: str) -> RegisteredComponent:
        """The component ``name`` (or ``distribution:name``) of ``kind``, or an error listing what exists."""
        if kind not in self.components:
            raise ComponentNotFound(f"unknown component kind {kind!r}; kinds: {', '.join(COMPONENT_KINDS)}")
        if name in self.clashes[kind]:
            raise ComponentNotFound(self._clash_message(kind, name))
        found = self.components[kind].get(name)
        if found is None and ":" in name:  # a distribution named although the name is unique
            distribution, _, plain = name.partition(":")
            candidate = self.components[kind].get(plain)
            found = candidate if candidate is not None and candidate.source.distribution == distribution else None
        if found is None:
            known = ", ".join(sorted(n for n in self.components[kind] if ":" not in n)) or "none"
            hint = " (some plugins failed to load: run `genhancer plugins` for details)" if self.failures else ""
            raise ComponentNotFound(f"no {kind} named {name!r} is registered; registered {kind}s: {known}{hint}")
        return found

    # -- calling plugins -----------------------------------------------------------------
    def _implementers(self, hook_name: str) -> list[str]:
        """Plugin names implementing ``hook_name``, in the order pluggy calls them."""
        caller = getattr(self.pm.hook, hook_name, None)
        if caller is None:
            return []
        return [impl.plugin_name for impl in reversed(caller.get_hookimpls())]

    def _call_one(self, hook_name: str, name: str, failed_in: str | None = None, drop: bool = True,
                  passing: tuple[type[BaseException], ...] = (), **kwargs: Any) -> Any:
        """``hook_name`` of one plugin, through pluggy. A failure is recorded, the plugin is
        unregistered (unless not ``drop``), and :data:`_FAILED` returned; the deliberate stops
        (and the exceptions in ``passing``) pass through."""
        plugin = self.pm.get_plugin(name)
        others = [p for p in self.pm.get_plugins() if p is not plugin]
        try:
            return self.pm.subset_hook_caller(hook_name, remove_plugins=others)(**kwargs)
        except passing:
            raise
        except Exception as exc:
            if type(exc).__name__ in PASS_THROUGH:
                raise
            source = self.sources.get(name, PluginSource(name, "?", "in-process", "-"))
            failure = _failure(source, failed_in or hook_name, exc)
            self.failures.append(failure)
            if drop:
                self.unregister(name)
            if self.report_failures:
                print(f"warning: {failure.message()}; it is left out from here on", file=sys.stderr, flush=True)
            return _FAILED

    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """A lifecycle hook on every plugin implementing it; a plugin that raises loses only itself."""
        for name in self._implementers(hook_name):
            self._call_one(hook_name, name, **kwargs)

    def first_result(self, hook_name: str, passing: tuple[type[BaseException], ...] = (), **kwargs: Any) -> Any:
        """The first non-None answer of a ``firstresult`` hook, asking one plugin at a time; a plugin
        that raises is left out (exceptions in ``passing`` are answers, and propagate)."""
        for name in self._implementers(hook_name):
            answer = self._call_one(hook_name, name, passing=passing, **kwargs)
            if answer is not None and answer is not _FAILED:
                return answer
        return None

    def add_commands(self, subparsers: Any) -> None:
        """``genhancer_add_commands`` one plugin at a time: a plugin that raises loses the
        commands it was adding (and says so in one line), the others keep theirs."""
        for name in self._implementers("genhancer_add_commands"):
            before = set(subparsers.choices)
            if self._call_one("genhancer_add_commands", name, failed_in="add commands", drop=False, subparsers=subparsers) is _FAILED:
                for added in set(subparsers.choices) - before:
                    del subparsers.choices[added]
                subparsers._choices_actions[:] = [a for a in subparsers._choices_actions if a.dest in subparsers.choices]
                print(f"warning: {self.failures[-1].message()}; its commands are unavailable", file=sys.stderr)


_FAILED = object()


def _failure(source: PluginSource, stage: str, exc: BaseException) -> PluginFailure:
    return PluginFailure(source, stage, f"{type(exc).__name__}: {exc}", traceback.format_exc())


def _entry_points() -> list[tuple[metadata.EntryPoint, PluginSource]]:
    """Every entry point once (editable installs can expose a distribution twice), built-ins first."""
    seen: set[tuple[str, str]] = set()
    found = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if (ep.name, ep.value) in seen:
            continue
        seen.add((ep.name, ep.value))
        dist = getattr(ep, "dist", None)
        found.append((ep, PluginSource(ep.name, ep.value, dist.name if dist is not None else "unknown",
                                       dist.version if dist is not None else "unknown")))
    return sorted(found, key=lambda item: item[1].distribution != BUILTIN_DISTRIBUTION)  # stable: otherwise as found


def disabled_plugins(names: Iterable[str] = ()) -> set[str]:
    """Plugin names to leave out: ``names`` plus those in $GENHANCER_DISABLE_PLUGINS."""
    import os

    from_env = [n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",")]
    return {n for n in [*names, *from_env] if n}


def available_plugins() -> list[str]:
    """Entry-point names of every installed plugin (for messages about unknown ones)."""
    return sorted({ep.name for ep, _ in _entry_points()})


def load_plugins(extra: Iterable[tuple[Any, str]] = (), disable: Iterable[str] = ()) -> PluginManager:
    """Discover every plugin of the ``genhancer`` entry-point group.

    ``extra`` registers additional in-process plugins as ``(object, name)``,
    which is how tests and notebooks add hooks without packaging them.
    ``disable`` (and $GENHANCER_DISABLE_PLUGINS) names entry points to skip.
    """
    manager = PluginManager(pluggy.PluginManager(hookspecs.PROJECT))
    manager.pm.add_hookspecs(hookspecs)
    # historic: every plugin registered from now on is asked at once whether it adds hooks
    manager.pm.hook.genhancer_addhooks.call_historic(kwargs={"pluginmanager": manager})
    skip = disabled_plugins(disable)
    manager.disabled = sorted(skip)
    names = []
    found = _entry_points()
    known = sorted({ep.name for ep, _ in found})
    unknown = sorted(set(disable) - set(known))  # a misspelt name on the command line (the environment may name absent ones)
    if unknown:
        raise RecipeError(f"--disable-plugin {', '.join(unknown)}: no such plugin; installed: {', '.join(known)}")
    for ep, source in found:
        if ep.name in skip:
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            manager.failures.append(_failure(source, "import", exc))
            continue
        if manager.register(plugin, source):
            names.append(source.plugin)
    for plugin, name in extra:
        module = getattr(plugin, "__module__", None) or getattr(plugin, "__name__", "")
        if manager.register(plugin, PluginSource(name, str(module), "in-process", "-")):
            names.append(name)
    manager._finish_loading(names)
    return manager
