"""Networks: ``nets`` (whole models) and ``blocks`` (parts they are assembled from).
"""

from __future__ import annotations
