"""MONAI-style transforms for chest radiographs: loading (io), letterbox/intensity, and self-supervised views (ssl).

Each area has ``array.py`` (array transforms) and ``dictionary.py`` (dictionary wrappers that hold an array transform).
"""

from __future__ import annotations
