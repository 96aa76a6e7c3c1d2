"""Dataset factories for the layouts users have, label-fraction splits and decode-once caching.
"""

from __future__ import annotations
