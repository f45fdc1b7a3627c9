"""Number formats and Markdown tables, shared by the leaderboard and the README renderer."""

from __future__ import annotations


def sig3(value: float) -> str:
    """Three significant digits, trailing zeros kept: 2.0 -> "2.00", 166.5 -> "167"."""
    return f"{value:#.3g}".rstrip(".")


def sig3_wide(value: float) -> str:
    """sig3, but 1,000 and above as a plain number with separators: 91257.2 -> "91,300"."""
    if abs(value) < 1000:
        return sig3(value)
    return thousands(float(f"{value:.3g}"))


def thousands(value: float) -> str:
    """A count with thousands separators: 12894 -> "12,894"."""
    return f"{round(value):,}"


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """A Markdown table."""
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(row) + " |" for row in rows])
