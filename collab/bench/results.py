"""Scenario results: named metrics with units, rendered as a text table, JSON or Markdown.

A result knows nothing about where it came from; the report puts results of the same scenario
side by side (one column per server), so a reference server can be added as a second column.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

Value = float | int | str | bool | None


@dataclass(frozen=True, slots=True)
class Metric:
    key: str  # stable name for JSON consumers
    label: str  # what a reader of the table sees
    value: Value
    unit: str = ""


@dataclass(slots=True)
class ScenarioResult:
    scenario: str
    title: str
    params: dict[str, Value]
    metrics: list[Metric] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # the server misbehaved: exit 1
    warnings: list[str] = field(default_factory=list)  # the figures may be skewed

    def add(self, key: str, label: str, value: Value, unit: str = "") -> None:
        self.metrics.append(Metric(key, label, value, unit))

    def problem(self, text: str) -> None:
        self.problems.append(text)

    def warn(self, text: str) -> None:
        self.warnings.append(text)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, object]:
        return {
            "scenario": self.scenario,
            "params": self.params,
            "metrics": {m.key: _json_value(m.value) for m in self.metrics},
            "units": {m.key: m.unit for m in self.metrics if m.unit},
            "ok": self.ok,
            "problems": self.problems,
            "warnings": self.warnings,
        }


def _json_value(value: Value) -> Value:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, float):
        return round(value, 4)
    return value


def format_value(value: Value, unit: str = "") -> str:
    """Human form: thousands separators, precision that suits the unit, n/a for unknown."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, str):
        return value
    if unit == "ms":
        text = f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    elif unit in ("%", "msg/s", "updates/s", "conn/s"):
        text = f"{value:,.0f}"
    elif unit in ("KiB", "MiB", "s"):
        text = f"{value:,.1f}"
    elif isinstance(value, int):
        text = f"{value:,}"
    else:
        text = f"{value:,.2f}"
    if unit == "B/s":
        return _bytes_rate(float(value))
    return f"{text} {unit}".rstrip()


def _bytes_rate(value: float) -> str:
    for unit, size in (("MiB/s", 1024 * 1024), ("KiB/s", 1024)):
        if value >= size:
            return f"{value / size:,.2f} {unit}"
    return f"{value:,.0f} B/s"


def text_table(result: ScenarioResult) -> str:
    """Aligned two-column table for a terminal."""
    params = ", ".join(f"{k}={v}" for k, v in result.params.items())
    rows = [(m.label, format_value(m.value, m.unit)) for m in result.metrics]
    width = max((len(label) for label, _ in rows), default=0)
    lines = [f"{result.title} ({params})"]
    lines += [f"  {label.ljust(width)}  {value}" for label, value in rows]
    lines += [f"  PROBLEM: {text}" for text in result.problems]
    lines += [f"  WARNING: {text}" for text in result.warnings]
    return "\n".join(lines)


_LOWER_IS_BETTER_UNITS = ("ms", "s", "KiB", "MiB")
_HIGHER_IS_BETTER_UNITS = ("msg/s", "updates/s", "conn/s", "B/s")
_LOWER_IS_BETTER_KEYS = (
    "server_cpu_percent",
    "server_idle_cpu_percent",
    "missing",
    "join_failed",
    "join_reconnects",
    "barriers_failed",
)
_READINGS = ("bench_", "rss_before", "rss_after", "rss_loaded", "rss_released")  # not scores


def better(metric: Metric) -> str:
    """Whether a higher or a lower value is better ("" when neither: counts, client-side CPU)."""
    if metric.key.startswith(_READINGS):
        return ""
    if metric.unit in _LOWER_IS_BETTER_UNITS or metric.key in _LOWER_IS_BETTER_KEYS:
        return "lower"
    if metric.unit in _HIGHER_IS_BETTER_UNITS:
        return "higher"
    return ""


def ratio(ours: Metric | None, theirs: Metric | None) -> str:
    """``ours / theirs`` as ``1.23×`` for comparable figures, "" otherwise."""
    if ours is None or theirs is None or not better(ours):
        return ""
    a, b = ours.value, theirs.value
    numeric = (int, float)
    if isinstance(a, bool) or not isinstance(a, numeric) or not isinstance(b, numeric):
        return ""
    if not (math.isfinite(a) and math.isfinite(b)) or b == 0:
        return ""
    return f"{a / b:,.2f}×"


def markdown_table(columns: Sequence[tuple[str, ScenarioResult]]) -> str:
    """One row per metric, one column per server (the first result fixes the rows).

    With several servers, ratio columns follow (each server / the last one, the reference
    when there is one) and which direction is better.
    """
    if not columns:
        return ""
    names = [name for name, _ in columns]
    compare = len(columns) >= 2
    if compare:
        names += [f"{name} / {names[-1]}" for name in names[:-1]] + ["better"]
    lines = [
        "| metric | " + " | ".join(names) + " |",
        "| --- | " + " | ".join("---:" for _ in names) + " |",
    ]
    for metric in columns[0][1].metrics:
        found = [next((m for m in r.metrics if m.key == metric.key), None) for _, r in columns]
        cells = [format_value(m.value, m.unit) if m else "" for m in found]
        if compare:
            cells += [ratio(m, found[-1]) for m in found[:-1]] + [better(metric)]
        lines.append(f"| {metric.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
