"""Whole networks: ConvStemViT, backbone factory, contrastive encoder, classifier wrapper.
"""

from __future__ import annotations

from .backbones import BACKBONE_NAMES as BACKBONE_NAMES
from .backbones import build_backbone as build_backbone
from .backbones import known_backbone_names as known_backbone_names
from .classifier import XRayClassifier as XRayClassifier
from .contrastive_encoder import ContrastiveEncoder as ContrastiveEncoder
from .convstem_vit import CONVSTEM_VIT_PRESETS as CONVSTEM_VIT_PRESETS
from .convstem_vit import ConvStemViT as ConvStemViT
from .convstem_vit import convstem_vit_base as convstem_vit_base
from .convstem_vit import convstem_vit_small as convstem_vit_small
from .convstem_vit import convstem_vit_tiny as convstem_vit_tiny
from .convstem_vit import patchify_vit_base as patchify_vit_base
from .convstem_vit import patchify_vit_small as patchify_vit_small
from .convstem_vit import patchify_vit_tiny as patchify_vit_tiny
from .detector import build_retinanet_detector as build_retinanet_detector
