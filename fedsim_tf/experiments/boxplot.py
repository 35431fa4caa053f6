"""Box plots of per-volume Dice as PNG, drawn with Pillow (no plotting library is a dependency).

Tukey's boxes: the box spans the quartiles (NumPy's linear percentiles) with a line at the median; the
whiskers reach the most extreme values within 1.5 IQR of the box; values beyond are drawn as dots.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from fedsim_tf.atomic import atomic_path

BOX_WIDTH, SLOT, MARGIN_LEFT, MARGIN, PLOT_HEIGHT, LABEL_HEIGHT = 40, 110, 50, 20, 300, 40
INK, GRID, BOX_FILL, MEDIAN = (0, 0, 0), (220, 220, 220), (160, 190, 230), (200, 30, 30)


@dataclass(frozen=True)
class BoxStats:
    """Tukey box of one group: quartiles, median, whisker ends and the values beyond them."""

    q1: float
    median: float
    q3: float
    low: float
    high: float
    outliers: tuple[float, ...]


def box_stats(values: Sequence[float]) -> BoxStats:
    """The box of ``values`` (NaN dropped).

    Raises:
        ValueError: no finite value.
    """
    array = np.asarray(values, dtype=np.float64)
    array = array[~np.isnan(array)]
    if array.size == 0:
        raise ValueError("box_stats needs at least one value that is not NaN")
    q1, median, q3 = (float(q) for q in np.percentile(array, [25, 50, 75]))
    reach = 1.5 * (q3 - q1)
    inside = array[(array >= q1 - reach) & (array <= q3 + reach)]
    outliers = tuple(float(v) for v in np.sort(array[(array < q1 - reach) | (array > q3 + reach)]))
    return BoxStats(q1, median, q3, float(inside.min()), float(inside.max()), outliers)


def write_boxplot(path: str | os.PathLike[str], title: str, groups: Sequence[tuple[str, Sequence[float]]]) -> None:
    """Write a PNG with one box per ``(label, values)`` group (Dice in [0, 1] on the y axis), atomically;
    a group without values leaves its slot empty."""
    width = MARGIN_LEFT + SLOT * max(1, len(groups)) + MARGIN
    height = MARGIN * 2 + PLOT_HEIGHT + LABEL_HEIGHT
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    top, bottom = MARGIN * 2, MARGIN * 2 + PLOT_HEIGHT

    def y_of(value: float) -> float:
        return bottom - value * PLOT_HEIGHT

    draw.text((MARGIN_LEFT, 4), title, fill=INK)
    for tick in np.linspace(0.0, 1.0, 6):
        draw.line([(MARGIN_LEFT, y_of(tick)), (width - MARGIN, y_of(tick))], fill=GRID)
        draw.text((4, y_of(tick) - 6), f"{tick:.1f}", fill=INK)
    draw.line([(MARGIN_LEFT, top), (MARGIN_LEFT, bottom)], fill=INK)
    for index, (label, values) in enumerate(groups):
        centre = MARGIN_LEFT + SLOT * index + SLOT // 2
        draw.text((centre - SLOT // 2 + 4, bottom + 6), label[:18], fill=INK)
        if not any(v == v for v in values):
            continue
        box = box_stats(values)
        left, right = centre - BOX_WIDTH // 2, centre + BOX_WIDTH // 2
        draw.line([(centre, y_of(box.low)), (centre, y_of(box.high))], fill=INK)
        for end in (box.low, box.high):
            draw.line([(left + 10, y_of(end)), (right - 10, y_of(end))], fill=INK)
        draw.rectangle([left, y_of(box.q3), right, y_of(box.q1)], fill=BOX_FILL, outline=INK)
        draw.line([(left, y_of(box.median)), (right, y_of(box.median))], fill=MEDIAN, width=2)
        for value in box.outliers:
            draw.ellipse([centre - 2, y_of(value) - 2, centre + 2, y_of(value) + 2], outline=INK)
    with atomic_path(path, suffix=".png") as temporary:
        image.save(temporary, format="PNG")
