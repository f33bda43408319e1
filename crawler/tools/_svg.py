"""Charts as inline SVG, for the HTML report: columns (vertical bars) and horizontal bars.

Each chart is one ``<svg>`` string with a viewBox (it scales with its box), grid lines, tick
labels, axis titles, value labels and a ``<title>`` tooltip per bar. Every text that goes in is
escaped here, so callers pass plain values. Styling comes from the page's CSS classes (``grid``,
``axis``, ``tick``, ``value``, ``label``, ``axis-title``).

Must not: reference anything outside the document (no fonts, images or scripts).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

EMPTY = '<p class="empty">nothing to show</p>'


def esc(value: object) -> str:
    """``value`` as HTML/XML text or attribute value (None is empty)."""
    return html.escape("" if value is None else str(value), quote=True)


def num(value: float) -> str:
    """A whole number with thin spaces between thousands: ``12 345``."""
    return f"{value:,.0f}".replace(",", "\u202f")


def legend(*items: tuple[str, str]) -> str:
    """A row of (name, colour) swatches, as HTML."""
    spans = "".join(
        f'<span><i style="background:{esc(color)}"></i>{esc(name)}</span>' for name, color in items
    )
    return f'<div class="legend">{spans}</div>'


@dataclass(frozen=True)
class Bar:
    label: str
    parts: tuple[tuple[float, str], ...]
    """(value, colour) segments, stacked bottom to top (or left to right)."""
    tip: str = ""


def ticks(top: float, wanted: int = 5) -> list[float]:
    """0 and round steps (1, 2, 5 x 10^k) up to at least ``top``."""
    if top <= 0:
        return [0, 1]
    raw = top / wanted
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    step = max(step, 1)
    count = math.ceil(top / step)
    return [i * step for i in range(count + 1)]


def column_chart(
    bars: Sequence[Bar], *, x_title: str, y_title: str, label_every: int = 1, values: bool = True
) -> str:
    """Vertical bars with a y axis, grid lines, axis titles and (optionally) value labels."""
    if not bars or not any(v for b in bars for v, _ in b.parts):
        return EMPTY
    width, left, right, top, plot_h = 640, 64, 28, 18, 204
    plot_w = width - left - right
    slot = plot_w / len(bars)
    label_w = max(len(b.label) for b in bars[::label_every]) * 6.3  # 11px text, estimated
    slanted = label_w > slot * label_every - 6
    bottom = 58 + (int(label_w * 0.5) if slanted else 0)
    height = top + plot_h + bottom
    marks = ticks(max(sum(v for v, _ in b.parts) for b in bars))
    y_max = marks[-1]
    bar_w = min(56.0, max(1.0, slot * (0.72 if len(bars) < 30 else 0.9)))
    out = [_svg_open(width, height, f"{y_title} by {x_title}")]
    out.extend(_grid(marks, left, width - right, top, plot_h))
    for i, bar in enumerate(bars):
        x = left + slot * i + (slot - bar_w) / 2
        base = float(top + plot_h)
        total = 0.0
        tip = esc(bar.tip or f"{bar.label}: {num(sum(v for v, _ in bar.parts))}")
        out.append(f"<g><title>{tip}</title>")
        for value, color in bar.parts:
            h = plot_h * value / y_max
            base -= h
            total += value
            if h > 0:
                out.append(
                    f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar_w:.1f}" '
                    f'height="{h:.1f}" fill="{color}" rx="1.5"/>'
                )
        out.append("</g>")
        if values and total and len(bars) <= 24:
            out.append(
                f'<text class="value" x="{x + bar_w / 2:.1f}" y="{base - 5:.1f}" '
                f'text-anchor="middle">{esc(num(total))}</text>'
            )
        if i % label_every == 0:
            out.append(_column_label(bar.label, x + bar_w / 2, top + plot_h + 17, width, slanted))
    out.append(_axes(left, top, plot_w, plot_h))
    out.append(
        f'<text class="axis-title" x="{left + plot_w / 2:.1f}" y="{height - 10}" '
        f'text-anchor="middle">{esc(x_title)}</text>'
        f'<text class="axis-title" transform="translate(16 {top + plot_h / 2:.1f}) '
        f'rotate(-90)" text-anchor="middle">{esc(y_title)}</text>'
        "</svg>"
    )
    return "".join(out)


def _grid(
    marks: Sequence[float], left: float, right: float, top: float, plot_h: float
) -> list[str]:
    """A horizontal grid line and its value label per tick mark."""
    y_max = marks[-1]
    out = []
    for t in marks:
        y = top + plot_h - plot_h * t / y_max
        out.append(f'<line class="grid" x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(
            f'<text class="tick" x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">'
            f"{esc(num(t))}</text>"
        )
    return out


def bar_chart(bars: Sequence[Bar], *, x_title: str, label_width: int = 150) -> str:
    """Horizontal bars: long category labels (host names, error kinds) on the left."""
    if not bars:
        return '<p class="empty">none</p>'
    row, width = 26, 640
    left, right, top, bottom = label_width + 12, 56, 8, 46
    plot_w = width - left - right
    height = top + row * len(bars) + bottom
    plot_h = row * len(bars)
    marks = ticks(max(sum(v for v, _ in b.parts) for b in bars), 4)
    x_max = marks[-1]
    out = [_svg_open(width, height, x_title)]
    for t in marks:
        x = left + plot_w * t / x_max
        out.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + plot_h}"/>')
        out.append(
            f'<text class="tick" x="{x:.1f}" y="{top + plot_h + 16}" '
            f'text-anchor="middle">{esc(num(t))}</text>'
        )
    max_chars = label_width // 7
    for i, bar in enumerate(bars):
        y = top + row * i
        label = bar.label if len(bar.label) <= max_chars else bar.label[: max_chars - 1] + "…"
        total = sum(v for v, _ in bar.parts)
        out.append(f"<g><title>{esc(bar.tip or f'{bar.label}: {num(total)}')}</title>")
        out.append(
            f'<text class="label" x="{left - 8}" y="{y + row / 2 + 4:.1f}" '
            f'text-anchor="end">{esc(label)}</text>'
        )
        x = float(left)
        for value, color in bar.parts:
            w = plot_w * value / x_max
            if w > 0:
                out.append(
                    f'<rect x="{x:.1f}" y="{y + 4}" width="{w:.1f}" height="{row - 8}" '
                    f'fill="{color}" rx="1.5"/>'
                )
            x += w
        out.append(
            f'<text class="value" x="{x + 6:.1f}" y="{y + row / 2 + 4:.1f}">'
            f"{esc(num(total))}</text></g>"
        )
    out.append(_axes(left, top, plot_w, plot_h))
    out.append(
        f'<text class="axis-title" x="{left + plot_w / 2:.1f}" y="{height - 8}" '
        f'text-anchor="middle">{esc(x_title)}</text></svg>'
    )
    return "".join(out)


def _svg_open(width: int, height: int, label: str) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{esc(label)}" xmlns="http://www.w3.org/2000/svg">'
    )


def _axes(left: int, top: int, plot_w: int, plot_h: int) -> str:
    return (
        f'<line class="axis" x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}"/>'
        f'<line class="axis" x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" '
        f'y2="{top + plot_h}"/>'
    )


def _column_label(label: str, cx: float, cy: float, width: float, slanted: bool) -> str:
    anchor = "end" if cx + len(label) * 3.2 > width else "middle"  # keep it inside
    place = (
        f'transform="translate({cx + 4:.1f} {cy - 6}) rotate(-35)" text-anchor="end"'
        if slanted
        else f'x="{cx:.1f}" y="{cy}" text-anchor="{anchor}"'
    )
    return f'<text class="tick" {place}>{esc(label)}</text>'
