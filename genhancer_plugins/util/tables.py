"""The one table and difference helper every report, evaluation and command uses."""

from __future__ import annotations

from typing import Any, Mapping, Sequence


def format_value(value: Any) -> str:
    """Floats with two decimals, small ones (learning rates) in scientific form; '-' for None."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2e}" if value != 0 and abs(value) < 0.01 else f"{value:.2f}"
    return str(value)


def difference(reference: Mapping[str, float], other: Mapping[str, float]) -> dict[str, float]:
    """``other - reference`` for every metric both have."""
    return {key: other[key] - value for key, value in reference.items() if key in other and value is not None and other[key] is not None}


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        return format_value(value).replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def text_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Aligned plain text: the first column left, the others right."""
    table = [list(header), *[[format_value(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def comparison_rows(results: Mapping[str, Mapping[str, float]], reference: str | None = None) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of one metric per row, one model per column, and ``other - reference``
    when exactly two models are compared."""
    labels = list(results)
    metrics = list(dict.fromkeys(key for metrics in results.values() for key in metrics))
    compare = reference in results and len(labels) == 2
    other = next((label for label in labels if label != reference), None)
    delta = difference(results[reference], results[other]) if compare else {}
    header = ["metric", *labels] + (["difference"] if compare else [])
    rows = []
    for key in metrics:
        row: list[Any] = [key, *(results[label].get(key) for label in labels)]
        if compare:
            row.append(f"{delta[key]:+.2f}" if key in delta else "-")
        rows.append(row)
    return header, rows
