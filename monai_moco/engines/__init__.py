"""Ignite/MONAI engines for contrastive pretraining (subclasses of ``monai.engines`` trainers).
"""

from __future__ import annotations
