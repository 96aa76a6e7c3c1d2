"""Building blocks: convolutional stem, projection head, top-K patch-scoring head.
"""

from __future__ import annotations
