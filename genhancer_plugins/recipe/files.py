"""Recipe files as mappings: YAML 1.2 booleans, ``extends`` chains merged key by key
with the file that set each field remembered, and ``--set`` overrides."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Mapping

import yaml

from genhancer_plugins.util.errors import RecipeError


class _Loader(yaml.SafeLoader):
    """YAML 1.2's booleans: only true/false. YAML 1.1 also reads yes/no/on/off as
    booleans, which turns `mixed_precision: no` into False; here they stay strings
    (and pydantic still reads them as booleans where a field is one)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506  (a SafeLoader subclass)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise RecipeError(f"{path}: recipe file not found")
    try:
        data = load_yaml(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise RecipeError(f"{path}: not a text file (a recipe is UTF-8 YAML)") from None
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe must be a mapping at the top level, got {type(data).__name__}")
    return data


def _forget_component_settings(section: dict[str, Any], origins: dict[str, str], path: str) -> None:
    """``preset`` and ``params`` belong to the named component: when a child
    recipe or --set names another one, the old component's settings go."""
    for key in ("preset", "params"):
        if key in section:
            del section[key]
            for stale in [p for p in origins if p == f"{path}.{key}" or p.startswith(f"{path}.{key}.")]:
                del origins[stale]


def same_component(a: Any, b: Any) -> bool:
    """Whether two component names select the same component: ``genhancer:clip`` (a
    distribution named, as a name clash needs) is ``clip``."""
    return str(a).rpartition(":")[2] == str(b).rpartition(":")[2]


def _merge(base: dict[str, Any], child: Mapping[str, Any], origins: dict[str, str], source: str, prefix: str = "") -> None:
    if "name" in child and "name" in base and not same_component(child["name"], base["name"]):
        _forget_component_settings(base, origins, prefix.rstrip("."))
    for key, value in child.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            origins.setdefault(path, source)
            _merge(base[key], value, origins, source, path + ".")
        else:
            base[key] = copy.deepcopy(value)
            _mark(origins, path, value, source)


def _mark(origins: dict[str, str], path: str, value: Any, source: str) -> None:
    for stale in [p for p in origins if p == path or p.startswith(path + ".")]:
        del origins[stale]
    origins[path] = source
    if isinstance(value, Mapping):
        for key, sub in value.items():
            _mark(origins, f"{path}.{key}", sub, source)


def load_chain(path: Path, seen: tuple[Path, ...] = ()) -> tuple[dict[str, Any], dict[str, str], list[Path]]:
    path = path.resolve()
    if path in seen:
        chain = " -> ".join(str(p) for p in (*seen, path))
        raise RecipeError(f"{path}: extends: circular chain {chain}")
    data = _read_yaml(path)
    if data.pop("abstract", False) and not seen:
        children = sorted(p.name for p in path.parent.glob("*.yaml") if p != path and _extends(p) == (path.name, False))
        raise RecipeError(f"{path}: a base recipe to extend (abstract: true), not one to run"
                          + (f"; run one that extends it, e.g. {', '.join(children[:4])} in {path.parent}" if children else ""))
    parent = data.pop("extends", None)
    merged: dict[str, Any] = {}
    origins: dict[str, str] = {}
    files = [path]
    if parent is not None:
        if not isinstance(parent, str):
            raise RecipeError(f"{path}: extends: expected a path to a recipe, got {parent!r}")
        parent_path = (path.parent / parent).resolve()
        if not parent_path.is_file():
            raise RecipeError(f"{path}: extends: base recipe {parent_path} not found")
        merged, origins, parent_files = load_chain(parent_path, (*seen, path))
        files += parent_files
    _merge(merged, data, origins, str(path))
    return merged, origins, files


def _extends(path: Path) -> tuple[str | None, bool]:
    """(the ``extends:`` value, whether abstract) of a sibling recipe, for the message above; (None, False) if unreadable."""
    try:
        data = _read_yaml(path)
    except RecipeError:
        return None, False
    return data.get("extends"), bool(data.get("abstract", False))


def parse_override(text: str, option: str = "--set", example: str = "stage1.steps=100") -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a", "b", "c"], parsed value); errors name ``option``, the flag it came from."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"{option} {text!r}: expected KEY=VALUE, for example {example}")
    try:
        parsed = load_yaml(value) if value.strip() else ""
    except yaml.YAMLError as exc:
        raise RecipeError(f"{option} {text!r}: value is not valid YAML: {exc}") from None
    return key.strip().split("."), parsed


def apply_override(data: dict[str, Any], origins: dict[str, str], keys: list[str], value: Any, option: str = "--set") -> None:
    """Set ``keys`` (a dotted path; list items by index, e.g. ``eval.0.params.root``) to ``value``."""
    node: Any = data
    for i, key in enumerate(keys[:-1]):
        where = ".".join(keys[: i + 1])
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise RecipeError(f"{option} {'.'.join(keys)}: {where}: no list item {key} (the list has {len(node)})")
            node = node[int(key)]
            continue
        child = node.setdefault(key, {})
        if not isinstance(child, (dict, list)):
            raise RecipeError(f"{option} {'.'.join(keys)}: {where} is not a mapping")
        node = child
    last = keys[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise RecipeError(f"{option} {'.'.join(keys)}: no list item {last} (the list has {len(node)})")
        node[int(last)] = value
    else:
        if last == "name" and len(keys) > 1 and not same_component(node.get("name", value), value):
            _forget_component_settings(node, origins, ".".join(keys[:-1]))
        node[last] = value
    _mark(origins, ".".join(keys), value, option)


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """A nested mapping as ``{"dotted.path": leaf}`` (an empty mapping is a leaf)."""
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): data}


def deep_update(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def dump_yaml(data: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=False)
