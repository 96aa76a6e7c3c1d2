"""Whole networks: ConvStemViT, backbone factory, contrastive encoder, classifier wrapper.
"""

from __future__ import annotations

from .contrastive_encoder import ContrastiveEncoder
