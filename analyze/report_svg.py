"""The timeline chart of `analyze run --html`: alerts per time slice, stacked by priority, as an
inline SVG string.

No script and no external reference: the chart is drawn once, in Python, so the page shows it
where scripts are off (ticket systems, mail clients) and stays one self-contained file. Each bar
segment carries a `<title>`, which browsers show on hover, with its slice and count. `esc` is the
one escaping function of the HTML report too: every text from a trace or a rule file goes through
it, in SVG as in HTML.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from analyze.alert_stats import AlertStats, slice_counts
from analyze.alerts import Alert
from analyze.engine_api import priority_rank
from analyze.run_render import format_duration

WIDTH, HEIGHT = 960, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 14, 40  # margins: y labels left, x labels below
X_LABELS = 6  # at most this many (+1) offsets under the axis
Y_TICKS = 4

# C0/C1 controls, lone surrogates (cannot be written as UTF-8) and bidirectional overrides (they
# reorder what follows, so a cmdline could display as something it is not): shown as escapes.
_INVISIBLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069"
                        "\ud800-\udfff]")


def esc(text: str) -> str:
    """`text` safe in HTML or SVG text and in a quoted attribute, controls made visible."""
    return html.escape(_INVISIBLE.sub(_visible, text), quote=True)


def _visible(m: re.Match[str]) -> str:
    code = ord(m.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


@dataclass(frozen=True)
class StackedSlice:
    start_ns: int  # offset from the timeline's start, as in run_render.Slice
    counts: tuple[tuple[str, int], ...]  # (priority, alerts), most severe first, no zeros

    @property
    def total(self) -> int:
        return sum(n for _, n in self.counts)


def stack_by_priority(alerts: Sequence[Alert], stats: AlertStats) -> tuple[StackedSlice, ...]:
    """The slices of `stats.timeline` split by priority (the same counts: a run's alerts count
    them once for both, see `alert_stats.slice_counts`)."""
    count = len(stats.timeline)
    per: dict[str, list[int]] = {}
    counts = slice_counts(alerts, stats.timeline_start_ns, stats.slice_ns, count)
    for (index, priority), n in counts.items():
        per.setdefault(priority, [0] * count)[index] += n
    order = sorted(per, key=priority_rank)
    return tuple(
        StackedSlice(s.start_ns, tuple((p, per[p][i]) for p in order if per[p][i]))
        for i, s in enumerate(stats.timeline)
    )


def timeline_svg(slices: Sequence[StackedSlice], slice_ns: int,
                 colors: Mapping[str, str]) -> str:
    """A stacked bar chart: one bar per slice, most severe priority at the bottom."""
    peak = max((s.total for s in slices), default=0)
    top = _nice_top(peak)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    bar_w = plot_w / max(1, len(slices))
    gap = 1.0 if bar_w > 4 else 0.0
    parts = [
        f'<svg class="timeline" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="timeline-title" preserveAspectRatio="xMidYMid meet">',
        '<title id="timeline-title">Alerts over time, by priority</title>',
        *_y_axis(top, plot_w, plot_h),
        *_x_axis(len(slices), slice_ns, bar_w, plot_h),
    ]
    for i, s in enumerate(slices):
        y: float = TOP + plot_h
        label = f"+{format_duration(s.start_ns)} to +{format_duration(s.start_ns + slice_ns)}"
        for priority, n in s.counts:
            h = plot_h * n / top
            y -= h
            parts.append(
                f'<rect class="bar" x="{LEFT + i * bar_w + gap / 2:.2f}" y="{y:.2f}" '
                f'width="{max(bar_w - gap, 0.5):.2f}" height="{max(h, 0.5):.2f}" '
                f'fill="{esc(colors.get(priority, "#888888"))}" data-priority="{esc(priority)}" '
                f'data-count="{n}"><title>{esc(label)}: {esc(priority)} {n:,}</title></rect>'
            )
    parts.append("</svg>")
    return "\n".join(parts)


def _y_axis(top: int, plot_w: float, plot_h: float) -> list[str]:
    """Grid lines with their counts, from 0 to `top`."""
    lines = []
    for k in range(Y_TICKS + 1):
        value = top * k // Y_TICKS
        y = TOP + plot_h - plot_h * k / Y_TICKS
        lines.append(f'<line class="grid" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.2f}" '
                     f'y2="{y:.2f}" stroke="#dddddd"/>')
        lines.append(f'<text x="{LEFT - 6}" y="{y + 4:.2f}" text-anchor="end">{value:,}</text>')
    return lines


def _x_axis(count: int, slice_ns: int, bar_w: float, plot_h: float) -> list[str]:
    """Offsets from the start under a few slice boundaries (the last one always)."""
    step = max(1, -(-count // X_LABELS))
    marks = sorted({*range(0, count, step), count})
    y = TOP + plot_h
    out = [f'<line class="axis" x1="{LEFT}" x2="{LEFT + bar_w * count:.2f}" y1="{y}" y2="{y}" '
           'stroke="#555555"/>']
    for i in marks:
        x = LEFT + i * bar_w
        anchor = "end" if i == count and count > 1 else "middle"
        out.append(f'<text x="{x:.2f}" y="{y + 16}" text-anchor="{anchor}">'
                   f"+{esc(format_duration(i * slice_ns))}</text>")
    out.append(f'<text x="{LEFT + bar_w * count / 2:.2f}" y="{HEIGHT - 4}" text-anchor="middle" '
               f'class="axis-title">time from start ({esc(format_duration(slice_ns))} per bar)'
               "</text>")
    return out


def _nice_top(peak: int) -> int:
    """The smallest 1, 2 or 5 x 10^k step that puts `peak` under Y_TICKS grid lines, times them."""
    if peak <= 0:
        return Y_TICKS
    magnitude = 1
    while True:
        for unit in (1, 2, 5):
            step = unit * magnitude
            if step * Y_TICKS >= peak:
                return step * Y_TICKS
        magnitude *= 10
