"""Contrastive losses: InfoNCELoss (MoCo) and NTXentLoss (SimCLR).
"""

from __future__ import annotations
