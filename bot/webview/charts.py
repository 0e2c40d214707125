"""Bar charts as SVG text, drawn on the server: no chart library, no script, no CDN.

Pure functions, no Flask and no database: numbers and labels in, `Markup` out (every label
is escaped here, so a template prints the chart as it is). The page's CSP is
`style-src 'self'`, so nothing here writes a `style` attribute: colours come from classes
(`bar s0` ... `s5`, one per series, styled in static/style.css) and sizes from
presentation attributes.

Each chart says what it shows in `<title>` and `<desc>` (the SVG is `role="img"` labelled
by them), and each bar carries its figure in a `<title>` (a tooltip) and in `data-value`;
the page prints the same numbers in a table beside it. A bar's height (or width) is its
value over the axis' top, a "nice" number at or above the largest value, so bars are
exactly proportional to their values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from markupsafe import Markup

SERIES_CLASSES = 6  # s0 ... s5 in style.css; more series reuse them in turn
CHAR = 7.2  # a label character's width at FONT, to lay out legends and margins
FONT = 12
WIDE = 720.0  # wider charts keep their size and scroll sideways on a phone ("chart wide")
MAX_LABEL = 28  # longer labels are cut with an ellipsis (the whole one is in the bar's title)


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten at or above `value` (1 for 0)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value * (1 - 1e-12):
            return float(step * power)
    return float(10 * power)  # pragma: no cover  (the loop always returns)


def ticks(top: float) -> list[float]:
    """Axis values from 0 to `top` (a `nice_ceiling`) at round steps: 0, 5, 10, 15, 20;
    0, 1, 2, 3, 4, 5; 0, 0.5, 1, 1.5, 2, 2.5."""
    mantissa = top / 10 ** math.floor(math.log10(top))
    count = 4 if abs(mantissa - 2) < 1e-9 else 5
    return [top * index / count for index in range(count + 1)]


def number(value: float) -> str:
    """An axis or bar figure: `20`, `7.5`, `0.25` (at most two decimals)."""
    return f"{value:.2f}".rstrip("0").rstrip(".") or "0"


def _shorten(label: str) -> str:
    return label if len(label) <= MAX_LABEL else label[: MAX_LABEL - 1] + "…"


def _f(value: float) -> str:
    """A coordinate, to two places (enough for a screen, short in the page)."""
    return f"{value:.2f}".rstrip("0").rstrip(".") or "0"


@dataclass(frozen=True)
class Bar:
    """One bar as drawn: where, how big, and the numbers it stands for (for tests too)."""

    group: str
    series: str
    value: float
    x: float
    y: float
    width: float
    height: float


def _svg(
    chart_id: str, width: float, height: float, title: str, desc: str, body: list[Markup]
) -> Markup:
    """The chart's outer element around `body`; every value is escaped by `Markup.format`."""
    return Markup(
        '<svg xmlns="http://www.w3.org/2000/svg" class="{kind}" id="{id}" '
        'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        'role="img" aria-labelledby="{id}-title {id}-desc">'
        '<title id="{id}-title">{title}</title><desc id="{id}-desc">{desc}</desc>'
        "{body}</svg>"
    ).format(
        kind="chart wide" if width > WIDE else "chart",
        id=chart_id,
        width=_f(width),
        height=_f(height),
        title=title,
        desc=desc,
        body=Markup("").join(body),
    )


def _legend(series: Sequence[str], x: float, y: float, width: float) -> tuple[Markup, float]:
    """Swatches and names in rows from (x, y), wrapping at `width`; the height used."""
    parts: list[Markup] = []
    left, top = x, y
    for index, name in enumerate(series):
        shown = _shorten(name)
        span = 14 + 6 + len(shown) * CHAR + 16
        if left > x and left + span > x + width:
            left, top = x, top + 18
        parts.append(
            Markup(
                '<rect class="swatch s{kind}" x="{x}" y="{y}" width="12" height="12"/>'
                '<text class="label" x="{text_x}" y="{text_y}" font-size="{font}">{name}</text>'
            ).format(
                kind=index % SERIES_CLASSES,
                x=_f(left),
                y=_f(top),
                text_x=_f(left + 18),
                text_y=_f(top + 10.5),
                font=FONT,
                name=shown,
            )
        )
        left += span
    legend = Markup('<g class="legend">{}</g>').format(Markup("").join(parts))
    return legend, top + 18 - y


def grouped_bars(
    *,
    chart_id: str,
    title: str,
    desc: str,
    groups: Sequence[str],
    series: Sequence[str],
    values: Mapping[tuple[str, str], float],
    unit: str = "",
    describe: Callable[[str, str, float], str] | None = None,
) -> Markup:
    """Vertical bars: for each group (a month) one bar per series (a severity) that has a
    value in `values[(group, series)]`; a missing pair leaves a gap, never a zero bar.

    `unit` names the axis (`minutes`); `describe(group, series, value)` is each bar's
    tooltip (default `group series: value unit`).
    """
    drawn = layout_grouped(groups, series, values)
    legend, legend_height = _legend(series, drawn.left, 8, drawn.plot_width)
    plot_top = legend_height + 28  # below the legend and the unit
    plot_bottom = plot_top + drawn.plot_height
    right = drawn.left + drawn.plot_width
    body: list[Markup] = [legend, Markup('<g class="axis">')]
    for tick in ticks(drawn.top):
        y = plot_bottom - tick / drawn.top * drawn.plot_height
        body.append(
            Markup(
                '<line class="grid" x1="{left}" x2="{right}" y1="{y}" y2="{y}"/>'
                '<text class="tick" x="{text_x}" y="{text_y}" text-anchor="end" '
                'font-size="{font}">{tick}</text>'
            ).format(
                left=_f(drawn.left),
                right=_f(right),
                y=_f(y),
                text_x=_f(drawn.left - 6),
                text_y=_f(y + 4),
                font=FONT,
                tick=number(tick),
            )
        )
    if unit:
        body.append(
            Markup('<text class="unit" x="{x}" y="{y}" font-size="{font}">{unit}</text>').format(
                x=4, y=_f(plot_top - 12), font=FONT - 1, unit=unit
            )
        )
    body.append(Markup("</g>"))
    for index, group in enumerate(groups):
        body.append(
            Markup(
                '<text class="label" x="{x}" y="{y}" text-anchor="middle" '
                'font-size="{font}">{group}</text>'
            ).format(
                x=_f(drawn.left + (index + 0.5) * drawn.group_width),
                y=_f(plot_bottom + 16),
                font=FONT,
                group=_shorten(group),
            )
        )
    body.append(Markup('<g class="bars">'))
    for bar in drawn.bars:
        text = (
            describe(bar.group, bar.series, bar.value)
            if describe is not None
            else f"{bar.group} {bar.series}: {number(bar.value)} {unit}".rstrip()
        )
        body.append(
            Markup(
                '<rect class="bar s{kind}" x="{x}" y="{y}" width="{width}" height="{height}" '
                'data-group="{group}" data-series="{series}" data-value="{value}">'
                "<title>{text}</title></rect>"
            ).format(
                kind=series.index(bar.series) % SERIES_CLASSES,
                x=_f(bar.x),
                y=_f(bar.y + plot_top),
                width=_f(bar.width),
                height=_f(bar.height),
                group=bar.group,
                series=bar.series,
                value=repr(bar.value),
                text=text,
            )
        )
    body.append(Markup("</g>"))
    body.append(
        Markup('<line class="baseline" x1="{left}" x2="{right}" y1="{y}" y2="{y}"/>').format(
            left=_f(drawn.left), right=_f(right), y=_f(plot_bottom)
        )
    )
    return _svg(chart_id, right + 8, plot_bottom + 26, title, desc, body)


@dataclass(frozen=True)
class GroupedLayout:
    """Where `grouped_bars` puts things; a bar's `y` is from the plot's top edge."""

    top: float  # the axis' largest value
    left: float
    plot_width: float
    plot_height: float
    group_width: float
    bars: list[Bar]


PLOT_HEIGHT = 180.0  # the vertical bars' plot
HORIZONTAL_PLOT = 240.0  # the horizontal bars' longest possible bar


def layout_grouped(
    groups: Sequence[str], series: Sequence[str], values: Mapping[tuple[str, str], float]
) -> GroupedLayout:
    """Bars of `grouped_bars`: each is `value / top * PLOT_HEIGHT` high, on one baseline."""
    top = nice_ceiling(max((max(value, 0.0) for value in values.values()), default=0.0))
    left = 12 + max(len(number(tick)) for tick in ticks(top)) * CHAR
    bar_width = 14.0 if len(series) > 2 else 22.0
    widest_label = max((len(_shorten(group)) for group in groups), default=4) * CHAR
    group_width = max(len(series) * bar_width + 14, widest_label + 8)
    plot_width = max(len(groups) * group_width, 240.0)
    group_width = plot_width / max(len(groups), 1)
    bars: list[Bar] = []
    for index, group in enumerate(groups):
        start = left + index * group_width + (group_width - len(series) * bar_width) / 2
        for position, name in enumerate(series):
            value = values.get((group, name))
            if value is None:
                continue
            height = max(value, 0.0) / top * PLOT_HEIGHT
            x = start + position * bar_width
            bars.append(Bar(group, name, value, x, PLOT_HEIGHT - height, bar_width - 2, height))
    return GroupedLayout(top, left, plot_width, PLOT_HEIGHT, group_width, bars)


def horizontal_bars(
    *,
    chart_id: str,
    title: str,
    desc: str,
    items: Sequence[tuple[str, float]],
    unit: str = "",
) -> Markup:
    """One horizontal bar per (label, value), in the order given, the value at its end;
    each is `value / top` of the plot's width."""
    label_width = max((len(_shorten(label)) for label, _ in items), default=4) * CHAR + 12
    value_width = max((len(number(value)) for _, value in items), default=1) * CHAR + 10
    plot_width = HORIZONTAL_PLOT
    row = 24.0
    top = nice_ceiling(max((value for _, value in items), default=0.0))
    body: list[Markup] = [Markup('<g class="bars">')]
    for index, (label, value) in enumerate(items):
        y = 8 + index * row
        length = max(value, 0.0) / top * plot_width
        body.append(
            Markup(
                '<text class="label" x="{label_x}" y="{text_y}" text-anchor="end" '
                'font-size="{font}">{short}</text>'
                '<rect class="bar s0" x="{x}" y="{y}" width="{length}" height="{height}" '
                'data-group="{label}" data-value="{value}"><title>{label}: {figure} {unit}</title>'
                "</rect>"
                '<text class="figure" x="{figure_x}" y="{text_y}" font-size="{font}">'
                "{figure}</text>"
            ).format(
                label_x=_f(label_width - 8),
                text_y=_f(y + 13),
                font=FONT,
                short=_shorten(label),
                x=_f(label_width),
                y=_f(y),
                length=_f(length),
                height=_f(row - 6),
                label=label,
                value=repr(value),
                figure=number(value),
                unit=unit,
                figure_x=_f(label_width + length + 6),
            )
        )
    body.append(Markup("</g>"))
    height = 8 + len(items) * row + 4
    body.append(
        Markup('<line class="baseline" x1="{x}" x2="{x}" y1="4" y2="{y}"/>').format(
            x=_f(label_width), y=_f(height - 4)
        )
    )
    return _svg(chart_id, label_width + plot_width + value_width, height, title, desc, body)
