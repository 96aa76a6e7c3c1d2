"""MONAI's RetinaNet detector on one of our (pretrained) ResNet backbones.

RetinaNet (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017) puts a feature pyramid (Lin et al., "Feature
Pyramid Networks for Object Detection", CVPR 2017) on a ResNet and predicts a class score and a box offset for every
anchor. ``monai.apps.detection`` implements it for 2D and 3D medical images (Baumgartner et al., "nnDetection",
MICCAI 2021): :class:`monai.networks.blocks.backbone_fpn_utils.BackboneWithFPN` (the ResNet-FPN feature extractor),
:class:`~monai.apps.detection.networks.retinanet_network.RetinaNet`,
:class:`~monai.apps.detection.networks.retinanet_detector.RetinaNetDetector` (anchor matching with ATSS, Zhang et al.,
CVPR 2020, hard-negative sampling, box decoding, NMS). This module is the glue that lets those take a backbone from
:func:`monai_moco.networks.nets.build_backbone` (a torchvision ResNet with a 1-channel stem, possibly loaded from a
MoCo/SimCLR/MoCo-CXR checkpoint), so the detection transfer of a self-supervised encoder is measured with MONAI's
detector unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

from monai.apps.detection.networks.retinanet_detector import RetinaNetDetector
from monai.apps.detection.networks.retinanet_network import RetinaNet
from monai.apps.detection.utils.anchor_utils import AnchorGeneratorWithAnchorShape
from monai.networks.blocks.backbone_fpn_utils import BackboneWithFPN, LastLevelMaxPool
from torch import nn

__all__ = ["build_retinanet_detector"]


def build_retinanet_detector(
    backbone: nn.Module,
    num_classes: int,
    base_anchor_shapes: Sequence[Sequence[float]],
    returned_layers: Sequence[int] = (2, 3),
    fpn_channels: int = 256,
    trainable_backbone_layers: int = 5,
    size_divisible: int = 32,
    atss_candidates: int = 4,
    negatives_per_image: int = 64,
    positive_fraction: float = 0.3,
    score_thresh: float = 0.02,
    nms_thresh: float = 0.22,
    detections_per_img: int = 100,
) -> RetinaNetDetector:
    """A ready-to-train ``RetinaNetDetector`` (2D) on a torchvision-style ResNet backbone.

    The FPN takes the ResNet stages in ``returned_layers`` plus one max-pooled level on top, so there are
    ``len(returned_layers) + 1`` pyramid levels, level ``i`` with stride ``2 ** (returned_layers[0] + 1 + i)`` and
    anchors ``2 ** i * base_anchor_shapes`` (MONAI's ``AnchorGeneratorWithAnchorShape``, matrix ``ij`` indexing:
    each shape is ``(rows, cols)`` in the image's axis order, as the boxes from
    :class:`~monai_moco.transforms.LetterboxBoxd` are). Training uses MONAI's ATSS matcher and hard-negative sampler,
    as in MONAI's detection tutorials.

    Args:
        backbone: a ResNet from :func:`~monai_moco.networks.nets.build_backbone` (``resnet18``/``resnet50``; any
            module with ``conv1``, ``bn1``, ``layer1``-``layer4`` and an int ``inplanes`` = final stage width).
        num_classes: number of box classes (no background class: RetinaNet scores each class with a sigmoid).
        base_anchor_shapes: anchor ``(rows, cols)`` in pixels on the finest pyramid level.
        returned_layers: ResNet stages (1-4) fed to the FPN.
        fpn_channels: channels of every pyramid level and of the heads' convolutions (256 in the paper and in MONAI's
            ``resnet_fpn_feature_extractor``; fewer make the heads, which dominate the cost at small inputs, cheaper).
        trainable_backbone_layers: ResNet stages trained, counted from ``layer4`` (5 = all, incl. the stem).
        size_divisible: input sizes are padded up to a multiple of this (the coarsest stride).
        atss_candidates: anchors per level considered by the ATSS matcher for each box.
        negatives_per_image: anchors per image sampled by the hard-negative sampler.
        positive_fraction: fraction of positives among the sampled anchors.
        score_thresh: detections below this score are dropped at inference.
        nms_thresh: IoU of non-maximum suppression at inference.
        detections_per_img: detections kept per image at inference.

    Returns:
        a ``monai.apps.detection`` ``RetinaNetDetector``: ``detector(images, targets)`` in train mode returns the
        classification and box-regression losses; in eval mode ``detector(images)`` returns one
        ``{"boxes", "labels", "labels_scores"}`` dict per image.

    Raises:
        ValueError: when the backbone is not a ResNet with ``layer1``-``layer4`` and ``inplanes``, for
            ``num_classes < 1``, an empty ``base_anchor_shapes``, ``returned_layers`` outside 1-4 or
            ``trainable_backbone_layers`` outside 0-5.

    Example::

        backbone = build_backbone("resnet18", in_channels=1, weights="runs/transfer_study/pretrain/moco/checkpoints/last.pt")
        detector = build_retinanet_detector(backbone, num_classes=2, base_anchor_shapes=[[20, 12], [26, 14]])
        losses = detector([torch.rand(1, 128, 128)], [{"boxes": torch.tensor([[10.0, 8, 90, 50]]),
                                                       "labels": torch.tensor([0])}])
    """
    missing = [n for n in ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4") if not hasattr(backbone, n)]
    width = getattr(backbone, "inplanes", getattr(backbone, "in_planes", None))
    if missing or not isinstance(width, int):
        raise ValueError(
            f"build_retinanet_detector: the backbone ({type(backbone).__name__}) must be a ResNet (resnet18/resnet50 "
            f"from build_backbone) with conv1, bn1, layer1-layer4 and an int inplanes; missing {missing}, "
            f"inplanes={width!r}."
        )
    if int(num_classes) < 1:
        raise ValueError(f"build_retinanet_detector: num_classes must be >= 1, got {num_classes}.")
    shapes = [tuple(float(v) for v in s) for s in base_anchor_shapes]
    if not shapes or any(len(s) != 2 or min(s) <= 0 for s in shapes):
        raise ValueError(
            f"build_retinanet_detector: base_anchor_shapes must be a non-empty list of positive (rows, cols) pairs, "
            f"got {base_anchor_shapes!r}."
        )
    layers = [int(k) for k in returned_layers]
    if not layers or min(layers) < 1 or max(layers) > 4:
        raise ValueError(f"build_retinanet_detector: returned_layers must be ResNet stages in 1-4, got {returned_layers}.")
    if not 0 <= int(trainable_backbone_layers) <= 5:
        raise ValueError(
            f"build_retinanet_detector: trainable_backbone_layers must be in 0-5, got {trainable_backbone_layers}."
        )
    # the stage freezing and channel bookkeeping of MONAI's resnet_fpn_feature_extractor, with fpn_channels free
    trained = ["layer4", "layer3", "layer2", "layer1", "conv1"][: int(trainable_backbone_layers)]
    trained += ["bn1"] if int(trainable_backbone_layers) == 5 else []
    for name, parameter in backbone.named_parameters():
        if not any(name.startswith(prefix) for prefix in trained):
            parameter.requires_grad_(False)
    stage1 = int(width) // 8  # layer1's width: the final stage is 8x wider in ResNet-18/-50
    feature_extractor = BackboneWithFPN(
        backbone,
        return_layers={f"layer{k}": str(i) for i, k in enumerate(layers)},
        in_channels_list=[stage1 * 2 ** (k - 1) for k in layers],
        out_channels=int(fpn_channels),
        extra_blocks=LastLevelMaxPool(2),
        spatial_dims=2,
    )
    anchor_generator = AnchorGeneratorWithAnchorShape(
        feature_map_scales=[2**i for i in range(len(returned_layers) + 1)], base_anchor_shapes=shapes
    )
    network = RetinaNet(
        spatial_dims=2,
        num_classes=int(num_classes),
        num_anchors=anchor_generator.num_anchors_per_location()[0],
        feature_extractor=feature_extractor,
        size_divisible=int(size_divisible),
    )
    detector = RetinaNetDetector(network=network, anchor_generator=anchor_generator)
    detector.set_atss_matcher(num_candidates=int(atss_candidates), center_in_gt=False)
    detector.set_hard_negative_sampler(
        batch_size_per_image=int(negatives_per_image), positive_fraction=float(positive_fraction), min_neg=16,
        pool_size=20,
    )
    detector.set_target_keys(box_key="boxes", label_key="labels")
    detector.set_box_selector_parameters(
        score_thresh=float(score_thresh),
        topk_candidates_per_level=1000,
        nms_thresh=float(nms_thresh),
        detections_per_img=int(detections_per_img),
    )
    return detector
