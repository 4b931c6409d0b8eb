"""``genhancer plugins``: the registered components and where they come from."""

from __future__ import annotations

import json
import sys
from typing import Any


def list_plugins(manager: Any, as_json: bool) -> int:
    """`genhancer plugins`: every component by kind, with where it comes from; failures and warnings on stderr."""
    rows = [
        {"kind": kind, "name": name, "plugin": reg.source.plugin, "entry_point": reg.source.entry_point,
         "distribution": reg.source.distribution, "version": reg.source.version, "presets": sorted(reg.spec.presets),
         "description": reg.spec.description, **({"scores": reg.spec.scores} if kind == "evaluator" else {})}
        for kind, entries in manager.components.items()
        for name, reg in sorted(entries.items())
    ]
    failures = [{"plugin": f.source.plugin, "entry_point": f.source.entry_point, "distribution": f.source.distribution,
                 "stage": f.stage, "error": f.error} for f in manager.failures]
    if as_json:
        print(json.dumps({"components": rows, "failures": failures, "warnings": manager.warnings, "disabled": manager.disabled}, indent=2))
        return 0
    current = None
    for row in rows:
        if row["kind"] != current:
            current = row["kind"]
            print(f"{current}s:")
        presets = f" [presets: {', '.join(row['presets'])}]" if row["presets"] else ""
        presets += f" [scores {row['scores']} models]" if row.get("scores", "encoder") != "encoder" else ""
        print(f"  {row['name']:<16} {row['distribution']} {row['version']} ({row['plugin']}: {row['entry_point']}){presets}")
        if row["description"]:
            print(f"  {'':<16} {row['description']}")
    if manager.disabled:
        print(f"disabled: {', '.join(manager.disabled)}")
    for warning in manager.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for failure in manager.failures:
        print(f"error: {failure.message()}", file=sys.stderr)
    return 0
