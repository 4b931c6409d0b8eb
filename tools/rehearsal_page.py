"""docs/rehearsal.md from the JSON reports of `genhancer rehearse` (benchmarks/rehearse_all.sh)."""

from __future__ import annotations

import argparse
import json
import os
import platform
from datetime import date
from pathlib import Path


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} CPU cores, {memory:.0f} GiB, {platform.machine()}, Python {platform.python_version()}, no GPU"


def page(reports: list[tuple[str, dict | None, str]], depth: int) -> str:
    lines = ["# Rehearsals of every shipped recipe", "",
             f"Made by `bash benchmarks/rehearse_all.sh` on {date.today().isoformat()}, on {_machine()}: "
             f"`genhancer rehearse RECIPE --steps 1 --depth {depth}` for each recipe: random weights at the recipe's "
             "widths, every stack of repeated blocks shortened to the depth, one step per stage, a checkpoint, an "
             "interruption and a resume in each stage, the export with its reload check, every evaluator and "
             "downstream phase on synthetic copies of their inputs. Peak memory is the process's RSS during the phase; "
             "seconds include building and loading.", "",
             "| recipe | result | phase | status | s | steps | s/step | peak GB | disk GB |", "|---|---|---|---|---|---|---|---|---|"]
    for name, report, error in reports:
        if report is None:
            last = error.strip().splitlines()[-1] if error.strip() else "no output"
            lines.append(f"| {name} | no report: {last[:160].replace('|', '/')} | - | - | - | - | - | - | - |")
            continue
        total = sum(phase["seconds"] for phase in report["phases"])
        disk = sum(max(phase.get("disk_gb", 0.0), 0.0) for phase in report["phases"])
        result = (f"ok, {total:.0f} s, {disk:.0f} GB written" if not report["failure"]
                  else f"FAILED in {report['failure']['phase']}: {report['failure']['error']}")
        for index, phase in enumerate(report["phases"]):
            first = index == 0
            per_step = f"{phase['seconds_per_step']:.1f}" if phase["seconds_per_step"] else "-"
            lines.append(f"| {name if first else ''} | {result if first else ''} | {phase['phase']} | {phase['status']} | "
                         f"{phase['seconds']:.1f} | {phase['steps'] or '-'} | {per_step} | {_mb(phase['peak_memory_gb'])} | "
                         f"{_mb(phase.get('disk_gb'))} |")
        for downstream, section in (report.get("downstream") or {}).items():
            for tower, info in (section or {}).get("towers", {}).items():
                for sub, summary in info.get("phases", {}).items():
                    lines.append(f"| | | {downstream} {tower} {sub} | ok | - | {summary.get('steps')} | - | - | - |")
    lines += ["", "## Estimated vs measured memory", "",
              "Per stage at the rehearsal's sizes (one process, batch 1): `validate`'s estimate (fp32 weights, gradients and "
              "AdamW states of what trains; nothing for activations) beside the peak RSS measured while the stage trained "
              "(the first, interrupted pass: it holds the optimiser's first states and writes a checkpoint).", "",
              "| recipe | stage | estimate GB | measured GB | measured / estimate |", "|---|---|---|---|---|"]
    for name, report, _ in reports:
        for phase in (report or {}).get("phases", []):
            if phase["phase"] in ("stage1", "stage2") and phase.get("estimated_memory_gb"):
                ratio = phase["peak_memory_gb"] / phase["estimated_memory_gb"]
                lines.append(f"| {name} | {phase['phase']} | {phase['estimated_memory_gb']:.1f} | {phase['peak_memory_gb']:.1f} | {ratio:.2f} |")
    lines += ["", "## Forecast of each real job", "",
              "FLOPs per step counted on the meta device at full depth (recipe batch, 8 GPUs); GPU-hours on H100 at the "
              "MFU the report states; memory per GPU: `validate`'s estimate of weights, gradients and AdamW states.", "",
              "| recipe | stage | steps | PFLOP/step | GPU-hours | memory/GPU GB |", "|---|---|---|---|---|---|"]
    for name, report, _ in reports:
        for stage in (report or {}).get("forecast", {}).get("stages", []):
            hours = f"{stage['gpu_hours']:.1f}" if stage["gpu_hours"] else "-"
            lines.append(f"| {name} | {stage['phase']} | {stage['steps'] or '-'} | {stage['flops_per_step'] / 1e15:.3f} | {hours} | "
                         f"{_mb(stage['memory_per_gpu_gb'])} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("reports", nargs="+", help="JSON reports of `genhancer rehearse --json`")
    parser.add_argument("--depth", type=int, required=True)
    parser.add_argument("--doc", required=True, help="the page to write")
    args = parser.parse_args()
    reports = []
    for path in map(Path, args.reports):
        text = path.read_text() if path.is_file() else ""
        try:
            reports.append((path.stem, json.loads(text), ""))
        except json.JSONDecodeError:
            err = path.with_suffix(".err")
            reports.append((path.stem, None, err.read_text()[-500:] if err.is_file() else ""))
    Path(args.doc).write_text(page(reports, args.depth))


if __name__ == "__main__":
    main()
