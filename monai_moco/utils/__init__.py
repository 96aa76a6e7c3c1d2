"""Shared utilities written once: distributed gather/shuffle helpers, momentum update.
"""

from __future__ import annotations
