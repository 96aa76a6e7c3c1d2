"""Pictures people would rather look at than read: heat-map overlays, AUC-vs-label-fraction plots.
"""

from __future__ import annotations
