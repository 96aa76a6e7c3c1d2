"""Ignite handlers: representation monitor, heat-map writer, non-finite-loss guard.
"""

from __future__ import annotations
