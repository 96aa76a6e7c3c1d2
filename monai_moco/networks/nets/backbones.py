"""Build a feature-extractor backbone by name: torchvision ResNets, timm models, MONAI nets, our ViTs.

Every backbone returned by :func:`build_backbone` maps ``B x in_channels x H x W`` to ``B x out_features`` (pooled
features, classifier removed) and carries an ``out_features`` attribute, so a projection head
(:class:`~monai_moco.networks.blocks.ProjectionHead`) or a classifier
(:class:`~monai_moco.networks.nets.XRayClassifier`) can be sized from it. Nothing is downloaded: ``weights`` must be
a local file, loaded by :func:`monai_moco.networks.weights.load_backbone_weights` (which adapts 3-channel ImageNet
first convolutions to 1-channel radiographs by summing the RGB kernels).

Names:

* ``resnet18``, ``resnet50``: torchvision ResNets (He et al., "Deep Residual Learning for Image Recognition", CVPR
  2016) with ``fc`` replaced by ``nn.Identity`` and ``conv1`` built for ``in_channels``; the state-dict keys stay
  torchvision's, so ImageNet and MoCo checkpoints load directly.
* ``timm:<name>``: any timm model, e.g. ``timm:vit_base_patch16_224`` (Dosovitskiy et al., ICLR 2021), created with
  ``pretrained=False, num_classes=0, in_chans=in_channels`` plus ``kwargs`` (e.g. ``img_size=96``).
* ``monai:<name>``: MONAI 2D classifiers with their last linear layer removed: ``DenseNet121/169/201`` (Huang et al.,
  CVPR 2017), ``SEResNet50/101``, ``SEResNeXt50`` (Hu et al., CVPR 2018), ``EfficientNetBN`` (Tan & Le, ICML 2019;
  ``model_name="efficientnet-b0"`` by default).
* ``convstem_vit_tiny|small|base`` and ``patchify_vit_tiny|small|base``:
  :class:`~monai_moco.networks.nets.convstem_vit.ConvStemViT` with a convolutional (Xiao et al., NeurIPS 2021) or
  patchify stem, CLS pooling by default (``pooling="none"`` returns patch tokens for a patch head instead).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from monai.utils import look_up_option
from torch import nn

__all__ = ["BACKBONE_NAMES", "MONAI_BACKBONES", "build_backbone", "known_backbone_names"]

_VIT_SIZES = ("tiny", "small", "base")
_TORCHVISION = ("resnet18", "resnet50")
_VITS = tuple(f"{stem}_vit_{size}" for stem in ("convstem", "patchify") for size in _VIT_SIZES)

#: names accepted without a ``timm:``/``monai:`` prefix
BACKBONE_NAMES: tuple[str, ...] = _TORCHVISION + _VITS

#: MONAI network name -> (constructor keyword arguments, attribute path of the final linear layer)
MONAI_BACKBONES: dict[str, tuple[dict[str, Any], str]] = {
    "DenseNet121": ({"out_channels": 1}, "class_layers.out"),
    "DenseNet169": ({"out_channels": 1}, "class_layers.out"),
    "DenseNet201": ({"out_channels": 1}, "class_layers.out"),
    "SEResNet50": ({"num_classes": 1}, "last_linear"),
    "SEResNet101": ({"num_classes": 1}, "last_linear"),
    "SEResNeXt50": ({"num_classes": 1}, "last_linear"),
    "EfficientNetBN": ({"num_classes": 1, "model_name": "efficientnet-b0"}, "_fc"),
}

_HUB_MARKERS = ("http://", "https://", "hf-hub:", "hf_hub:", "hf://", "timm/", "torchvision://")


def known_backbone_names() -> list[str]:
    """Every name :func:`build_backbone` accepts (``timm:<any timm model>`` shown as a pattern).

    Returns:
        the names, e.g. ``["resnet18", ..., "monai:DenseNet121", ..., "timm:<name>"]``.

    Example::

        print(known_backbone_names())
    """
    return [*BACKBONE_NAMES, *(f"monai:{n}" for n in MONAI_BACKBONES), "timm:<name>"]


def _torchvision_resnet(name: str, in_channels: int, **kwargs: Any) -> nn.Module:
    import torchvision

    if "weights" in kwargs or "pretrained" in kwargs:
        raise ValueError(
            f"build_backbone({name!r}): pass ImageNet weights as a local file with weights='path/to/{name}.pth', "
            "not torchvision's weights/pretrained arguments (nothing is downloaded)."
        )
    model = getattr(torchvision.models, name)(weights=None, **kwargs)
    if in_channels != 3:
        old = model.conv1
        model.conv1 = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
    model.out_features = int(model.fc.in_features)
    model.fc = nn.Identity()
    return model


def _timm_model(name: str, in_channels: int, **kwargs: Any) -> nn.Module:
    import timm

    if kwargs.pop("pretrained", False):
        raise ValueError(
            f"build_backbone('timm:{name}'): pretrained=True would download; pass weights='local_file' instead."
        )
    try:
        model = timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_channels, **kwargs)
    except RuntimeError as err:
        if "Unknown model" not in str(err):
            raise
        raise ValueError(
            f"build_backbone: unknown timm model {name!r} (see timm.list_models()); known names: "
            f"{known_backbone_names()}."
        ) from None
    width = getattr(model, "head_hidden_size", None) or model.num_features
    model.out_features = int(width)
    return model


def _monai_model(name: str, in_channels: int, **kwargs: Any) -> nn.Module:
    import monai.networks.nets as monai_nets

    if name not in MONAI_BACKBONES:
        raise ValueError(f"build_backbone: unknown MONAI backbone {name!r}; known names: {known_backbone_names()}.")
    defaults, head_path = MONAI_BACKBONES[name]
    if kwargs.get("pretrained"):
        raise ValueError(f"build_backbone('monai:{name}'): pretrained=True would download; pass weights= a file.")
    model = getattr(monai_nets, name)(
        **{**defaults, "spatial_dims": 2, "in_channels": in_channels, "pretrained": False, **kwargs}
    )
    *parents, leaf = head_path.split(".")
    owner = model
    for part in parents:
        owner = getattr(owner, part)
    head = getattr(owner, leaf)
    model.out_features = int(head.in_features)
    setattr(owner, leaf, nn.Identity())
    return model


def _our_vit(name: str, in_channels: int, **kwargs: Any) -> nn.Module:
    from monai_moco.networks.nets.convstem_vit import ConvStemViT

    stem, _, size = name.partition("_vit_")
    return ConvStemViT.from_preset(size, stem="conv" if stem == "convstem" else "patchify", in_channels=in_channels,
                                   **kwargs)


def _check_weights_path(name: str, weights: str | os.PathLike) -> str:
    path = os.fspath(weights)
    if os.path.isfile(path):
        return path
    weight_exts = (".pt", ".pth", ".bin", ".safetensors", ".tar", ".ckpt", ".pkl", ".npz")
    hub_like = (
        path.startswith(_HUB_MARKERS)
        or path.upper() in ("DEFAULT", "IMAGENET", "IMAGENET1K_V1", "IMAGENET1K_V2")
        or (not path.lower().endswith(weight_exts) and not path.startswith((".", os.sep)) and path.count("/") <= 1)
    )
    if hub_like:
        raise ValueError(
            f"build_backbone({name!r}): weights={path!r} is not a local file and looks like a hub or registry id; "
            "monai_moco never downloads "
            "weights. Download the file yourself (e.g. torchvision's resnet18-f37072fd.pth or a timm "
            "model.safetensors) and pass its local path."
        )
    raise FileNotFoundError(f"build_backbone({name!r}): weights file {path!r} does not exist.")


def build_backbone(
    name: str, in_channels: int = 1, weights: str | os.PathLike | None = None, **kwargs: Any
) -> nn.Module:
    """Build a pooled-feature backbone ``B x C x H x W -> B x out_features`` by name (see the module docstring).

    Args:
        name: ``resnet18``, ``resnet50``, ``convstem_vit_{tiny,small,base}``, ``patchify_vit_{tiny,small,base}``,
            ``timm:<timm model name>`` or ``monai:<name>`` (one of :data:`MONAI_BACKBONES`).
        in_channels: input channels (1 for radiographs).
        weights: optional LOCAL checkpoint (ImageNet torchvision/timm state dict, MoCo/MoCo-CXR checkpoint, or a
            monai_moco checkpoint), loaded strictly with :func:`~monai_moco.networks.weights.load_backbone_weights`.
            Hub ids / URLs are refused: nothing is downloaded.
        kwargs: passed to the underlying constructor (e.g. ``img_size=96`` for ViTs, ``pooling="mean"``).

    Returns:
        the backbone, with ``out_features`` (int) set; the load report is in ``backbone.weights_report`` when
        ``weights`` is given.

    Raises:
        ValueError: for an unknown name (the message lists the known names), a hub-like ``weights`` string, or
            weights that do not fit.
        FileNotFoundError: when ``weights`` is a path that does not exist.

    Example::

        backbone = build_backbone("resnet18", in_channels=1, weights="weights/resnet18-f37072fd.pth")
        feats = backbone(torch.zeros(2, 1, 224, 224))  # 2 x 512
        vit = build_backbone("convstem_vit_small", img_size=96)  # vit.out_features == 384
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"build_backbone: name must be a non-empty string, got {name!r}.")
    if weights is not None:
        weights = _check_weights_path(name, weights)
    if name.startswith("timm:"):
        model = _timm_model(name[len("timm:") :], in_channels, **kwargs)
    elif name.startswith("monai:"):
        model = _monai_model(name[len("monai:") :], in_channels, **kwargs)
    else:
        try:
            key = look_up_option(name, BACKBONE_NAMES)
        except ValueError:
            raise ValueError(
                f"build_backbone: unknown backbone {name!r}; known names: {known_backbone_names()}."
            ) from None
        builder: Callable[..., nn.Module] = _torchvision_resnet if key in _TORCHVISION else _our_vit
        model = builder(key, in_channels, **kwargs)
    if weights is not None:
        from monai_moco.networks.weights import load_backbone_weights

        model.weights_report = load_backbone_weights(model, weights, format="auto", strict=True)
    return model
