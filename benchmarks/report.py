"""How the benchmark suite shows its figures: tables as plain text and as markdown, goals, and RESULTS.md."""

from __future__ import annotations

from dataclasses import dataclass, field

from figures import Figure


@dataclass
class Table:
    """A titled table of already formatted cells, with notes printed under it."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        """The table for a terminal: first column left-aligned, the others right-aligned."""
        widths = [max(len(row[i]) for row in [self.columns, *self.rows]) for i in range(len(self.columns))]
        lines = [f"\n{self.title}"]
        for row in [self.columns, *self.rows]:
            cells = [row[0].ljust(widths[0])] + [
                cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)
            ]
            lines.append("  " + "  ".join(cells).rstrip())
        lines += [f"  {note}" for note in self.notes]
        return "\n".join(lines)

    def markdown(self) -> str:
        """The table as a markdown section."""
        lines = [f"## {self.title}", ""]
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("| --- |" + " ---: |" * (len(self.columns) - 1))
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        if self.notes:
            lines.append("")
            lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines)


@dataclass(frozen=True)
class Goal:
    """A target a figure should meet; a missed goal is reported, never an error."""

    label: str
    key: str
    target: float
    at_least: bool
    unit: str
    scale: float = 1.0

    def check(self, figures: dict[str, Figure]) -> dict[str, object]:
        """The goal against the figures: measured value (None when not measured) and passed (None likewise)."""
        figure = figures.get(self.key)
        measured = None if figure is None else figure.value * self.scale
        passed = None if measured is None else (measured >= self.target if self.at_least else measured <= self.target)
        sign = ">=" if self.at_least else "<="
        return {
            "goal": f"{self.label} {sign} {self.target:g} {self.unit}",
            "key": self.key,
            "measured": measured,
            "passed": passed,
        }


def goal_line(result: dict[str, object], unit: str) -> str:
    """PASS/FAIL/NOT MEASURED, the goal and the measured value, on one line."""
    verdict = {True: "PASS", False: "FAIL", None: "NOT MEASURED"}[result["passed"]]
    measured = "" if result["measured"] is None else f": measured {number(result['measured'])} {unit}"
    return f"{verdict:<4}  {result['goal']}{measured}"


def number(value: float) -> str:
    """A figure with about three significant digits, without exponents."""
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def median_cell(figure: Figure | None, scale: float = 1.0) -> str:
    return "n/a" if figure is None else number(figure.value * scale)


def spread_cell(figure: Figure | None, scale: float = 1.0) -> str:
    if figure is None or figure.p10 is None or figure.p90 is None:
        return ""
    return f"{number(figure.p10 * scale)}-{number(figure.p90 * scale)}"


def results_markdown(payload: dict[str, object], tables: list[Table], goals: list[str]) -> str:
    """RESULTS.md: how the figures were made, on what, the goals, then every table."""
    lines = [
        "# edge_facenet benchmark results",
        "",
        f"Written by `{payload['command']}` on {payload['date']} ({payload['mode']} mode, about "
        f"{payload['seconds']:.0f} s). Figures are medians of repeated runs; the spread in brackets or in the p10-p90 "
        "column is the 10th-90th percentile range. Ratios compare variants measured in the same run, taking turns "
        "call by call. Regenerate with the same command; `--json` prints every figure as one JSON object.",
        "",
        "## Machine",
        "",
        "| | |",
        "| --- | --- |",
    ]
    lines += [f"| {key.replace('_', ' ')} | {value} |" for key, value in payload["machine"].items()]
    lines += ["", "## Versions", "", "| | |", "| --- | --- |"]
    lines += [f"| {key} | {value} |" for key, value in payload["versions"].items()]
    lines += ["", "## Goals", "", "```", *goals, "```", ""]
    for table in tables:
        lines += [table.markdown(), ""]
    return "\n".join(lines)
