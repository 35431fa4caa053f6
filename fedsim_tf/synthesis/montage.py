"""A PNG overview of labelled volumes: for each volume a row of its central axial, coronal and sagittal
slices, the image in grey (HU window of :mod:`fedsim_tf.intensity`) with the label boundaries drawn in
one colour per structure."""

from __future__ import annotations

import os

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from fedsim_tf.atomic import atomic_path
from fedsim_tf.intensity import hu_to_unit

# RGB of the structure boundaries, label indices 1..7 (anatomy order of fedsim_tf.anatomy).
STRUCTURE_COLOURS: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
)
GAP_PIXELS = 2
MIN_PANEL_PIXELS = 128
"""Smaller slices are enlarged (pixel repetition) to at least this size, so demo-sized volumes are legible."""
CAPTION_PIXELS = 14
"""Height of the caption strip above a row (PIL's default bitmap font, white on black)."""


def boundaries(labels: np.ndarray) -> np.ndarray:
    """``[H, W]`` bool: pixels whose label differs from a 4-neighbour's and is not background."""
    edge = np.zeros(labels.shape, dtype=bool)
    edge[1:] |= labels[1:] != labels[:-1]
    edge[:-1] |= labels[:-1] != labels[1:]
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    return edge & (labels > 0)


def overlay(image_hu: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` uint8: the HU slice in grey with its label boundaries coloured."""
    grey = np.rint((np.clip(hu_to_unit(np.asarray(image_hu, np.float64)), -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    edge = boundaries(labels)
    for index, colour in enumerate(STRUCTURE_COLOURS, start=1):
        rgb[edge & (labels == index)] = colour
    return rgb


def views(volume: np.ndarray) -> list[np.ndarray]:
    """Central axial, coronal and sagittal slices of a ``[Z, Y, X]`` volume, superior and anterior up."""
    z, y, x = (n // 2 for n in volume.shape)
    return [volume[z, ::-1, :], volume[::-1, y, :], volume[::-1, :, x]]


def write_montage(path: str | os.PathLike[str], volumes: list[tuple[np.ndarray, np.ndarray]],
                  captions: Sequence[str] | None = None) -> None:
    """Write the overview of ``(image_hu [Z, Y, X], labels [Z, Y, X])`` pairs, one row each, atomically.

    Args:
        path: the PNG file.
        volumes: image (HU) and structure indices ``0..7`` of each row's volume.
        captions: one line of text per row, drawn in a strip above it (None: no strips).
    """
    if captions is not None and len(captions) != len(volumes):
        raise ValueError(f"{len(captions)} captions for {len(volumes)} volumes")
    rows = []
    for index, (image_hu, labels) in enumerate(volumes):
        zoom = max(1, -(-MIN_PANEL_PIXELS // max(image_hu.shape)))
        panels = [overlay(image, label).repeat(zoom, 0).repeat(zoom, 1)
                  for image, label in zip(views(image_hu), views(labels))]
        height = max(p.shape[0] for p in panels)
        padded = [np.pad(p, ((0, height - p.shape[0]), (0, GAP_PIXELS), (0, 0))) for p in panels]
        row = np.concatenate(padded, axis=1)
        if captions is not None:
            strip = Image.new("RGB", (row.shape[1], CAPTION_PIXELS))
            ImageDraw.Draw(strip).text((2, 1), captions[index], fill=(255, 255, 255))
            row = np.concatenate([np.asarray(strip), row], axis=0)
        rows.append(np.pad(row, ((0, GAP_PIXELS), (0, 0), (0, 0))))
    width = max(r.shape[1] for r in rows)
    sheet = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows], axis=0)
    with atomic_path(path, suffix=".png") as temporary:
        Image.fromarray(sheet).save(temporary, format="PNG")
