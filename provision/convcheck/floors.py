"""Detection floors per dtype and pass, for summaries (torch-free).

Every checked pass in a report carries ``detection_floor``: the smallest uniform relative error of
its result that its check flags (``compare.Check.floor``). Here: the worst (largest) floor per dtype
and pass over a run's cases, which is what the suite could still miss.
"""

from __future__ import annotations

from typing import Any

from provision.convcheck.cases import DTYPES, PASSES
from provision.convcheck.tolerances import FLOOR_GOAL

__all__ = ["FLOOR_GOAL", "PASSES", "fmt", "markdown_lines", "over_goal", "text_lines", "worst"]


def worst(cases: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """{dtype: {pass: {"worst", "case", "checked", "finite_only", "blind"}}} over the case records.

    ``checked``: passes compared with a reference; ``finite_only``: big passes only checked for
    NaN/Inf (no floor); ``blind``: checked passes no uniform error can fail (an all-zero result)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for case in cases:
        dtype = (case.get("params") or {}).get("dtype")
        if dtype is None:
            continue
        for pass_name, rec in (case.get("passes") or {}).items():
            if "ok" not in rec or "detection_floor" not in rec:
                continue
            cell = out.setdefault(dtype, {}).setdefault(
                pass_name, {"worst": None, "case": None, "checked": 0, "finite_only": 0, "blind": 0})
            floor = rec["detection_floor"]
            if rec.get("mode") == "finite-only":
                cell["finite_only"] += 1
                continue
            cell["checked"] += 1
            if floor is None:
                cell["blind"] += 1
            elif cell["worst"] is None or floor > cell["worst"]:
                cell["worst"], cell["case"] = floor, case["name"]
    return {dt: {p: out[dt][p] for p in PASSES if p in out[dt]} for dt in DTYPES if dt in out}


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.3g} %"


def over_goal(floors: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """'dtype pass' of every cell whose worst floor is above the dtype's goal (or that has a blind pass)."""
    return [f"{dt} {p}" for dt, row in floors.items() for p, cell in row.items()
            if cell["blind"] or (cell["worst"] is not None and cell["worst"] > FLOOR_GOAL[dt])]


def text_lines(floors: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """A few lines for the end of a run: worst floor per dtype and pass."""
    if not floors:
        return []
    lines = ["detection floor (largest uniform relative error a checked pass could miss), worst per dtype:"]
    for dt, row in floors.items():
        parts = [f"{p} {fmt(cell['worst'])}" for p, cell in row.items()]
        unchecked = sum(cell["finite_only"] for cell in row.values())
        note = f" ({unchecked} pass(es) checked finite only)" if unchecked else ""
        lines.append(f"  {dt} (goal ≤ {fmt(FLOOR_GOAL[dt])}): " + ", ".join(parts) + note)
    bad = over_goal(floors)
    if bad:
        lines.append("  above goal: " + ", ".join(bad))
    return lines


def markdown_lines(floors: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """A Markdown table: one row per dtype, one column per pass, the worst floor in each cell."""
    if not floors:
        return []
    lines = ["| dtype | goal | " + " | ".join(PASSES) + " |", "|---|---|" + "---|" * len(PASSES)]
    for dt, row in floors.items():
        cells = [fmt(row[p]["worst"]) if p in row else "-" for p in PASSES]
        lines.append(f"| {dt} | ≤ {fmt(FLOOR_GOAL[dt])} | " + " | ".join(cells) + " |")
    return lines
