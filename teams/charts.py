"""Bar charts as server-rendered SVG geometry: the console works offline, with no chart library."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: str


@dataclass(frozen=True, slots=True)
class BarChart:
    title: str
    width: int
    height: int
    bars: list[Bar]
    peak: str
    first_label: str
    last_label: str
    colour: str
    total: str = ""  # the sum of the bars, shown with the title


def bar_chart(
    points: list[tuple[str, float | int | Decimal]],
    *,
    title: str,
    unit: str = "",
    colour: str = "#417690",
    width: int = 560,
    height: int = 120,
    decimals: int = 0,
) -> BarChart:
    """Geometry for `templates/admin/synapse/bar_chart.html`; each bar's tooltip gives its value."""
    top = max((float(value) for _, value in points), default=0.0) or 1.0
    slot = width / max(1, len(points))
    plot = height - 4
    bars = []
    for index, (label, value) in enumerate(points):
        bar_height = plot * float(value) / top
        bars.append(
            Bar(
                x=round(index * slot + slot * 0.1, 2),
                y=round(height - bar_height, 2),
                width=round(slot * 0.8, 2),
                height=round(bar_height, 2),
                label=label,
                value=f"{unit}{float(value):,.{decimals}f}",
            )
        )
    return BarChart(
        title=title,
        width=width,
        height=height,
        bars=bars,
        peak=f"{unit}{top if any(float(v) for _, v in points) else 0:,.{decimals}f}",
        first_label=points[0][0] if points else "",
        last_label=points[-1][0] if points else "",
        colour=colour,
        total=f"{unit}{sum(float(v) for _, v in points):,.{decimals}f}",
    )
