"""Spatial transforms for radiographs: aspect-preserving letterbox resize, boxes that follow it, and the
inverse mappings for heat-maps and detected boxes."""

from __future__ import annotations

from monai_moco.transforms.spatial.array import (
    LETTERBOX_MODES,
    Letterbox,
    LetterboxBox,
    resize_spatial,
    unletterbox,
    unletterbox_boxes,
)
from monai_moco.transforms.spatial.dictionary import LetterboxBoxd, LetterboxD, Letterboxd, LetterboxDict

__all__ = [
    "LETTERBOX_MODES",
    "Letterbox",
    "LetterboxBox",
    "LetterboxBoxd",
    "Letterboxd",
    "LetterboxD",
    "LetterboxDict",
    "resize_spatial",
    "unletterbox",
    "unletterbox_boxes",
]
