"""Chart text that fits its figure: a title wrapped to the width it has (matplotlib neither wraps nor shrinks
one, so a long title on a narrow chart - a one-column heatmap, a one-panel sweep - is cut at the edge or runs
into the legend)."""

from __future__ import annotations

import textwrap

#: Average glyph width of matplotlib's default sans-serif font, in units of the font size.
GLYPH_WIDTH = 0.6


def fit(text: str, width_inches: float, fontsize: float) -> str:
    """`text` wrapped into lines no wider than `width_inches` at `fontsize` points (at least 20 characters)."""
    chars = max(20, int(width_inches * 72 / (fontsize * GLYPH_WIDTH)))
    return "\n".join(textwrap.fill(line, chars) for line in str(text).split("\n"))
