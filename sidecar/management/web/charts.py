"""Charts drawn on the server as SVG: no script, no library, nothing fetched by the browser.

Each chart is an ``<svg role="img">`` with a ``<title>`` and a ``<desc>`` that says in words
what it shows (screen readers read those); the pages put the numbers in a table beside it.
Colours keep a 3:1 contrast with the white background (WCAG 1.4.11) and stacked segments are
parted by a white line, so neighbours stay apart without relying on hue alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from markupsafe import Markup, escape

from sidecar.management.schemas import CODES
from sidecar.management.web.usage import ALLOWED, LimitUse, PeriodUse, Slot

# One colour per verification code, allowed first (drawn at the bottom of each bar).
COLOURS = {"VALID": "#1a7f37", "RATE_LIMITED": "#b35900", "QUOTA_EXCEEDED": "#8250df",
           "FORBIDDEN": "#0550ae", "NOT_FOUND": "#57606a", "EXPIRED": "#7d4e00",
           "REVOKED": "#cf222e", "DISABLED": "#24292f"}
ORDER = (ALLOWED, *(code for code in CODES if code != ALLOWED))
WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 8, 12, 28


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5 times 10^n at or above ``value`` (an axis top)."""
    if value <= 1:
        return 1
    magnitude = 1
    while magnitude * 10 < value:
        magnitude *= 10
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def codes_present(slots: Sequence[Slot]) -> list[str]:
    """The codes that occur in ``slots``, in drawing order (allowed always)."""
    seen = {code for slot in slots for code, n in slot.codes.items() if n}
    return [code for code in ORDER if code == ALLOWED or code in seen]


def decisions_chart(slots: Sequence[Slot], title: str,
                    label: Callable[[datetime], str]) -> Markup:
    """Stacked bars of decisions per slot: allowed at the bottom, each refusal code above."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = nice_ceiling(max((sum(s.codes.values()) for s in slots), default=0))
    codes = codes_present(slots)
    allowed = sum(s.allowed for s in slots)
    refused = sum(s.refused for s in slots)
    desc = (f"{len(slots)} bars, one per {_span(slots)}, from {label(slots[0].start)} to "
            f"{label(slots[-1].start)}: {allowed} allowed and {refused} refused in all"
            if slots else "no data")
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-labelledby="{_id(title)}-t {_id(title)}-d" preserveAspectRatio="none">',
             f'<title id="{_id(title)}-t">{escape(title)}</title>',
             f'<desc id="{_id(title)}-d">{escape(desc)}</desc>']
    parts += _y_axis(top, plot_w, plot_h)
    bar_w = plot_w / max(1, len(slots))
    for i, slot in enumerate(slots):
        x = LEFT + i * bar_w
        y: float = TOP + plot_h
        for code in codes:
            n = slot.codes.get(code, 0)
            if not n:
                continue
            h = plot_h * n / top
            y -= h
            parts.append(f'<rect x="{x + 0.5:.1f}" y="{y:.1f}" width="{max(1.0, bar_w - 1):.1f}"'
                         f' height="{h:.1f}" fill="{COLOURS[code]}" stroke="#fff" '
                         f'stroke-width="0.5"><title>{escape(label(slot.start))}: {n} '
                         f'{escape(code)}</title></rect>')
    for i in _x_ticks(len(slots)):
        # The first and last labels line up with the plot's edges, so none is cut off.
        x, anchor = ((LEFT, "start") if i == 0 else
                     (WIDTH - RIGHT, "end") if i == len(slots) - 1 else
                     (LEFT + (i + 0.5) * bar_w, "middle"))
        parts.append(f'<text x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="{anchor}" '
                     f'class="tick">{escape(label(slots[i].start))}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _y_axis(top: int, plot_w: int, plot_h: int) -> list[str]:
    out = []
    for fraction in (0, 0.5, 1) if top % 2 == 0 else (0, 1):  # whole numbers only
        y = TOP + plot_h * (1 - fraction)
        value = top * fraction
        text = f"{value:g}" if value < 10_000 else f"{value / 1000:g}k"
        out.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
                   f'class="grid"/><text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" '
                   f'class="tick">{text}</text>')
    return out


def _x_ticks(count: int) -> list[int]:
    if count == 0:
        return []
    return sorted({0, count // 2, count - 1})


def _span(slots: Sequence[Slot]) -> str:
    if len(slots) < 2:
        return "period"
    seconds = (slots[1].start - slots[0].start).total_seconds()
    return {3600: "hour", 86400: "day"}.get(int(seconds), "period")


def _id(title: str) -> str:
    return "c" + "".join(ch if ch.isalnum() else "-" for ch in title.lower())[:40]


ROW, BAR_LEFT, BAR_RIGHT = 34, 150, 230


@dataclass(frozen=True, slots=True)
class Bar:
    """One horizontal bar: ``used`` of ``capacity`` (None: nothing to fill, the bar is scaled
    to the longest of the chart), with ``note`` after the figures."""

    name: str
    used: int
    capacity: int | None
    note: str

    def ratio(self, scale: int) -> float:
        whole = self.capacity if self.capacity is not None else scale
        return min(1.0, self.used / whole) if whole else (1.0 if self.capacity == 0 else 0.0)


def limit_bars(uses: Sequence[LimitUse]) -> list[Bar]:
    return [Bar(u.name, u.used, u.capacity, "quota" if u.quota else "rate limit")
            for u in uses]


def period_bars(uses: Sequence[PeriodUse]) -> list[Bar]:
    return [Bar(str(u.period), u.requests, u.quota.requests_per_unit if u.quota else None,
                f"{u.quota.name}" if u.quota else "no monthly quota") for u in uses]


def usage_chart(bars: Sequence[Bar], title: str) -> Markup:
    """One horizontal bar per limit or period: the part of its capacity used (amber past
    80 %, red when used up), with the figures written beside it."""
    height = ROW * len(bars) + 8
    track = WIDTH - BAR_LEFT - BAR_RIGHT
    scale = max((b.used for b in bars), default=0)
    summary = "; ".join(f"{b.name}: {b.used} of {b.capacity} used" if b.capacity is not None
                        else f"{b.name}: {b.used} ({b.note})" for b in bars)
    parts = [f'<svg class="chart usage" viewBox="0 0 {WIDTH} {height}" role="img" '
             f'aria-labelledby="{_id(title)}-t {_id(title)}-d">',
             f'<title id="{_id(title)}-t">{escape(title)}</title>',
             f'<desc id="{_id(title)}-d">{escape(summary or "no limits")}</desc>']
    for i, bar in enumerate(bars):
        y = 4 + i * ROW
        ratio = bar.ratio(scale)
        full = bar.capacity is not None and bar.used >= bar.capacity
        colour = "#cf222e" if full else "#9a6700" if bar.capacity and ratio > 0.8 else \
            "#0969da"
        figures = f"{bar.used:,}" if bar.capacity is None else f"{bar.used:,} / {bar.capacity:,}"
        parts.append(
            f'<text x="{BAR_LEFT - 8}" y="{y + 18}" text-anchor="end" class="label">'
            f'{escape(bar.name)}</text>'
            f'<rect x="{BAR_LEFT}" y="{y + 4}" width="{track}" height="20" rx="3" '
            f'class="track"/>'
            f'<rect x="{BAR_LEFT}" y="{y + 4}" width="{track * ratio:.1f}" height="20" '
            f'rx="3" fill="{colour}"/>'
            f'<text x="{BAR_LEFT + track + 8}" y="{y + 18}" class="label">{figures} '
            f'({escape(bar.note)})</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
