"""Spatial transforms for radiographs: aspect-preserving letterbox resize and its inverse mapping for heat-maps."""

from __future__ import annotations

from monai_moco.transforms.spatial.array import LETTERBOX_MODES, Letterbox, resize_spatial, unletterbox
from monai_moco.transforms.spatial.dictionary import LetterboxD, Letterboxd, LetterboxDict

__all__ = [
    "LETTERBOX_MODES",
    "Letterbox",
    "Letterboxd",
    "LetterboxD",
    "LetterboxDict",
    "resize_spatial",
    "unletterbox",
]
