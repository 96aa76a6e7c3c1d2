"""Whole networks: ConvStemViT, backbone factory, contrastive encoder, classifier wrapper.
"""

from __future__ import annotations

from .backbones import BACKBONE_NAMES as BACKBONE_NAMES
from .backbones import build_backbone as build_backbone
from .backbones import known_backbone_names as known_backbone_names
from .classifier import XRayClassifier as XRayClassifier
from .contrastive_encoder import ContrastiveEncoder as ContrastiveEncoder
