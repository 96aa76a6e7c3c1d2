"""Metrics: AUC and friends with bootstrap confidence intervals.
"""

from __future__ import annotations
