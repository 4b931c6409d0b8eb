"""Registers downstream phase ``toy_report`` and the command ``genhancer toy-report``:
a second downstream model, added without touching GenHancer's core. The phase
runs after the export (a recipe selects it with a ``toy_report:`` section),
measures the enhanced encoder's weights and writes a small report; the command
prints a run's report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from genhancer_plugins import ComponentSpec, DownstreamPhase, Params, PhaseContext, RunError, hookimpl, write_json


class ToyReportParams(Params):
    title: str = "toy report"


class ToyReportPhase(DownstreamPhase):
    def __init__(self, params: ToyReportParams):
        self.params = params

    def plan(self) -> dict[str, Any]:
        return {"title": self.params.title, "reads": "the export's model.safetensors"}

    def run(self, context: PhaseContext) -> dict[str, Any]:
        from safetensors import safe_open

        if context.enhanced_encoder is None:
            raise RunError("toy_report needs an exported encoder (stage2 and export enabled)")
        with safe_open(str(Path(context.enhanced_encoder) / "model.safetensors"), "pt") as f:
            tensors = len(list(f.keys()))
        report = {"title": self.params.title, "encoder": str(context.enhanced_encoder), "tensors": tensors,
                  "original": context.original_encoder()}
        if context.is_main_process:
            folder = context.output_dir / "toy_report"
            folder.mkdir(exist_ok=True)
            write_json(folder / "report.json", report)  # atomic, like every JSON the engine writes
        context.log(f"toy_report: {tensors} tensors in the export")
        return report


def _print_report(args: Any) -> int:
    report = json.loads((Path(args.run) / "toy_report" / "report.json").read_text())
    print(f"{report['title']}: {report['tensors']} tensors in {report['encoder']}")
    return 0


@hookimpl
def genhancer_components():
    return [ComponentSpec(kind="phase", name="toy_report", factory=ToyReportPhase, params=ToyReportParams,
                          description="counts the export's tensors (an example downstream phase)")]


@hookimpl
def genhancer_add_commands(subparsers):
    command = subparsers.add_parser("toy-report", help="print a run's toy report")
    command.add_argument("run", help="run directory")
    command.set_defaults(handler=_print_report)
