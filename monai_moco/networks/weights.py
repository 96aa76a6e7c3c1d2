"""Load pretrained backbone weights from the checkpoint formats in use, safely (no pickle code execution).

Formats understood (``format="auto"`` detects them from the keys):

* ``"monai_moco"``: our MoCo/SimCLR checkpoints as written by MONAI's ``CheckpointSaver`` (or
  :class:`~monai_moco.handlers.AtomicCheckpointSaver`) from a save_dict like ``{"network": ContrastiveEncoder,
  "momentum_network": ..., "queue": ..., "optimizer": ..., "trainer": ...}``: the query encoder ``network`` is taken
  and its ``backbone.`` prefix stripped (``projection.``/``patch_head.`` are dropped). A checkpoint of the encoder
  alone (ignite saves a single object without its name) is read too.
* ``"moco"``: facebookresearch/moco (He et al., "Momentum Contrast for Unsupervised Visual Representation Learning",
  CVPR 2020; Chen et al., "Improved Baselines with Momentum Contrastive Learning", 2020) and MoCo-CXR (Sowrirajan et
  al., MIDL 2021) checkpoints ``{"state_dict": {"module.encoder_q.conv1.weight", ..., "module.encoder_q.fc.0.weight",
  ...}}``: ``module.encoder_q.`` is stripped and the MLP projection head ``fc.*`` dropped (MoCo-v3's
  ``module.base_encoder.`` with ``head.*``/``fc.*`` likewise).
* ``"torchvision"`` / ``"timm"`` / ``"state_dict"``: plain ImageNet state dicts (``.pth``/``.pt``/``.bin`` or
  ``.safetensors``); the classifier (``fc.*`` for torchvision, timm's ``pretrained_cfg["classifier"]`` such as
  ``head.*``) is dropped when the backbone has no such keys. ``"state_dict"`` loads the keys as they are.

Input channels: a 3-channel (RGB) first convolution loaded into a 1-channel backbone is **summed over its input
channels**. Then the 1-channel model fed a grey image ``x`` gives exactly what the RGB model gives for ``x``
replicated to three channels (``sum_c W_c * x = W * [x, x, x]``), the standard way to reuse ImageNet weights for
radiographs (timm's ``adapt_input_conv`` does the same). A 1-channel kernel loaded into a 3-channel backbone is
replicated and divided by 3 (the same identity read backwards).

Safety: every ``.pt``/``.pth`` file is read with ``torch.load(path, map_location="cpu", weights_only=True)``. A
file whose pickle holds anything beyond tensors and plain containers is refused with :class:`UnsafeCheckpointError`
before any of its code can run.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Mapping
from typing import Any

import torch
from monai.utils import look_up_option
from torch import nn

from monai_moco.utils.io import atomic_write

__all__ = [
    "CHECKPOINT_FORMATS",
    "UnsafeCheckpointError",
    "EXPORT_FORMATS",
    "adapt_input_channels",
    "export_backbone",
    "extract_backbone_state_dict",
    "load_backbone_weights",
    "load_checkpoint_file",
    "to_moco_state_dict",
]

CHECKPOINT_FORMATS: tuple[str, ...] = ("auto", "monai_moco", "moco", "torchvision", "timm", "state_dict")
#: what :func:`export_backbone` writes: the backbone's own keys, or facebookresearch/MoCo-CXR's ``module.encoder_q.``
EXPORT_FORMATS: tuple[str, ...] = ("state_dict", "moco")

_MOCO_PREFIXES = ("module.encoder_q.", "encoder_q.", "module.base_encoder.", "base_encoder.")
_CLASSIFIER_PREFIXES = ("fc.", "head.", "head_dist.", "classifier.", "last_linear.", "_fc.", "class_layers.out.")
_CONTAINER_KEYS = ("state_dict", "model", "module")
_MAX_SHOWN = 5

logger = logging.getLogger(__name__)


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint whose pickle would construct arbitrary Python objects (and so could run code) was refused."""


def _first(keys: Any, n: int = _MAX_SHOWN) -> str:
    keys = list(keys)
    shown = ", ".join(repr(k) for k in keys[:n])
    return f"[{shown}{', ...' if len(keys) > n else ''}] ({len(keys)} in all)"


def load_checkpoint_file(path: str | os.PathLike) -> Any:
    """Read a checkpoint without executing pickled code.

    ``.safetensors`` files are read with ``safetensors.torch.load_file``; everything else with
    ``torch.load(path, map_location="cpu", weights_only=True)``.

    Args:
        path: local file.

    Returns:
        the loaded object (usually a dict of tensors or of state dicts).

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        UnsafeCheckpointError: when the pickle references Python objects outside torch's weights-only allow-list.

    Example::

        ckpt = load_checkpoint_file("runs/moco/checkpoint_epoch=100.pt")
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path!r}.")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).strip().splitlines()
        detail = next((line for line in reason if "GLOBAL" in line or "Unsupported" in line), reason[0] if reason else "")
        raise UnsafeCheckpointError(
            f"refusing to load {path!r}: its pickle holds Python objects beyond tensors and plain containers "
            f"({detail.strip()}). monai_moco loads only with torch.load(weights_only=True) so that no code in a "
            "checkpoint can run. If you trust the file, re-save its tensors, e.g. "
            "torch.save(model.state_dict(), 'weights.pt'), and load that."
        ) from None


def _unwrap(obj: Any, path: str) -> tuple[Mapping[str, Any], list[str]]:
    """Descend through ``{"state_dict": ...}``/``{"model": ...}`` containers to the dict of tensors."""
    trail: list[str] = []
    while isinstance(obj, Mapping):
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj, trail
        if "network" in obj and isinstance(obj["network"], Mapping):
            trail.append("network")
            obj = obj["network"]
            continue
        key = next((k for k in _CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if key is None:
            tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
            if tensors:
                return tensors, trail
            break
        trail.append(key)
        obj = obj[key]
    raise ValueError(
        f"{path!r}: no state dict found (expected a dict of tensors, or one under 'network', 'state_dict' or "
        f"'model'); top-level keys: {_first(obj.keys()) if isinstance(obj, Mapping) else type(obj).__name__}."
    )


def _strip_prefix(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _strip_module(state: Mapping[str, Any]) -> dict[str, Any]:
    """Remove a ``module.`` prefix (DataParallel/DDP) carried by every key."""
    if state and all(k.startswith("module.") for k in state):
        return _strip_prefix(state, "module.")
    return dict(state)


def _detect(state: Mapping[str, Any], trail: list[str]) -> str:
    keys = list(state)
    if any(k.startswith(_MOCO_PREFIXES) for k in keys):
        return "moco"
    stripped = _strip_module(state)
    if "network" in trail or any(k.startswith("backbone.") for k in stripped):
        return "monai_moco"
    if "conv1.weight" in stripped and any(k.startswith("layer1.") for k in stripped):
        return "torchvision"
    if any(k.startswith(("patch_embed.", "blocks.", "stem.", "stages.")) for k in stripped):
        return "timm"
    return "state_dict"


def extract_backbone_state_dict(
    checkpoint: Any, format: str = "auto", path: str = "<checkpoint>"
) -> tuple[dict[str, torch.Tensor], str, list[str]]:
    """The backbone's tensors from a loaded checkpoint, in the backbone's own key names.

    Args:
        checkpoint: what :func:`load_checkpoint_file` returned.
        format: one of :data:`CHECKPOINT_FORMATS`.
        path: file name used in error messages.

    Returns:
        ``(state_dict, detected_format, dropped_keys)``; dropped keys are the projection head and other parts that
        are not the backbone (classifier keys are dropped later, in :func:`load_backbone_weights`, only when the
        backbone lacks them).

    Raises:
        ValueError: for an unknown format, no state dict in ``checkpoint``, or no key with the expected prefix.

    Example::

        sd, fmt, dropped = extract_backbone_state_dict(torch.load(p, weights_only=True), "moco")
    """
    format = look_up_option(format, CHECKPOINT_FORMATS)
    state, trail = _unwrap(checkpoint, path)
    fmt = _detect(state, trail) if format == "auto" else format
    if fmt == "moco":
        prefix = next((p for p in _MOCO_PREFIXES if any(k.startswith(p) for k in state)), None)
        if prefix is None:
            raise ValueError(
                f"{path!r}: format 'moco' expects keys starting with one of {list(_MOCO_PREFIXES)} "
                f"(facebookresearch/moco's query encoder); found {_first(state)}."
            )
        inner = _strip_prefix(state, prefix)
        head = ("fc.", "head.") if "base_encoder" in prefix else ("fc.",)
        out = {k: v for k, v in inner.items() if not k.startswith(head)}
        dropped = [k for k in state if not k.startswith(prefix)] + [prefix + k for k in inner if k.startswith(head)]
        return out, fmt, dropped
    state = _strip_module(state)
    if fmt == "monai_moco":
        out = _strip_prefix(state, "backbone.")
        if not out:
            raise ValueError(
                f"{path!r}: format 'monai_moco' expects the ContrastiveEncoder state under 'network' with keys "
                f"'backbone.*' (plus 'projection.*'); found {_first(state)}."
            )
        return out, fmt, [k for k in state if not k.startswith("backbone.")]
    return dict(state), fmt, []


def _classifier_prefixes(fmt: str, requested: str, backbone: nn.Module) -> tuple[str, ...]:
    """Key prefixes of ImageNet classifiers, dropped when the backbone has no such keys."""
    if fmt == "torchvision":
        return ("fc.",)
    if fmt == "timm" or (requested == "auto" and fmt == "state_dict"):
        cfg = getattr(backbone, "pretrained_cfg", None) or {}
        names = cfg.get("classifier") or ()
        names = (names,) if isinstance(names, str) else tuple(names)
        return tuple(f"{n}." for n in names) + _CLASSIFIER_PREFIXES
    return ()


def adapt_input_channels(
    state_dict: dict[str, torch.Tensor], target: Mapping[str, torch.Tensor]
) -> list[str]:
    """Adapt first-convolution kernels whose input channels differ from the target's, in place.

    A ``O x 3 x k x k`` kernel into a ``O x 1 x k x k`` slot is summed over its input channels (grey input ``x``
    then gives the RGB model's output for ``[x, x, x]``); a ``O x 1 x k x k`` kernel into ``O x 3 x k x k`` is
    replicated and divided by 3 (same identity). Other mismatches are left for the shape check to report.

    Args:
        state_dict: checkpoint tensors in the backbone's key names (modified in place).
        target: the backbone's own ``state_dict()``.

    Returns:
        the keys that were adapted.

    Example::

        adapted = adapt_input_channels(sd, backbone.state_dict())  # ["conv1.weight"]
    """
    adapted = []
    for key, value in list(state_dict.items()):
        want = target.get(key)
        if want is None or value.ndim < 3 or value.shape == want.shape or value.ndim != want.ndim:
            continue
        if value.shape[0] != want.shape[0] or value.shape[2:] != want.shape[2:]:
            continue
        c_in, c_want = value.shape[1], want.shape[1]
        if c_in == 3 and c_want == 1:
            state_dict[key] = value.sum(dim=1, keepdim=True)
        elif c_in == 1 and c_want == 3:
            state_dict[key] = value.repeat_interleave(3, dim=1) / 3.0
        else:
            continue
        adapted.append(key)
    return adapted


def load_backbone_weights(
    backbone: nn.Module, path: str | os.PathLike, format: str = "auto", strict: bool = True
) -> dict[str, Any]:
    """Load a backbone's weights from a local checkpoint of any supported format (see the module docstring).

    The load is logged (logger ``monai_moco.networks.weights``): file, format, number of tensors loaded, dropped,
    adapted, missing and unexpected keys; at WARNING level when keys are missing or unexpected (``strict=False``).

    Args:
        backbone: the feature extractor to load into (e.g. from :func:`~monai_moco.networks.nets.build_backbone`).
        path: local checkpoint file (``.pt``/``.pth``/``.bin``/``.safetensors``); never downloaded.
        format: ``"auto"``, ``"monai_moco"``, ``"moco"``, ``"torchvision"``, ``"timm"`` or ``"state_dict"``.
        strict: fail when keys are missing from, or unexpected in, the checkpoint (after format handling).

    Returns:
        a report ``{"path", "format", "num_tensors", "missing_keys", "unexpected_keys", "adapted_keys",
        "dropped_keys"}`` (``num_tensors``: checkpoint tensors loaded into the backbone).

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        UnsafeCheckpointError: when the file's pickle is not weights-only.
        ValueError: for an unknown format, shape mismatches, or (``strict``) missing/unexpected keys; the message
            names the file, the first offending keys and what was expected.

    Example::

        backbone = build_backbone("resnet18", in_channels=1)
        report = load_backbone_weights(backbone, "moco_v2_800ep_pretrain.pth.tar")  # format "moco" detected
    """
    path = os.fspath(path)
    checkpoint = load_checkpoint_file(path)
    state, fmt, dropped = extract_backbone_state_dict(checkpoint, format, path)
    target = backbone.state_dict()
    classifier = _classifier_prefixes(fmt, look_up_option(format, CHECKPOINT_FORMATS), backbone)
    for key in [k for k in state if k not in target and k.startswith(classifier)]:
        dropped.append(key)
        del state[key]
    adapted = adapt_input_channels(state, target)
    mismatched = [k for k in state if k in target and state[k].shape != target[k].shape]
    if mismatched:
        details = "; ".join(
            f"{k}: file {tuple(state[k].shape)} vs backbone {tuple(target[k].shape)}" for k in mismatched[:_MAX_SHOWN]
        )
        raise ValueError(
            f"{path!r} (format {fmt!r}): {len(mismatched)} tensors have the wrong shape for this backbone "
            f"({details}); build the backbone with the architecture and in_channels the checkpoint was trained with."
        )
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    if strict and (missing or unexpected):
        raise ValueError(
            f"{path!r} (format {fmt!r}) does not match {type(backbone).__name__}: missing keys {_first(missing)}, "
            f"unexpected keys {_first(unexpected)}; expected keys like {_first(target)}. Pass format= explicitly if "
            f"the detection was wrong, or strict=False to load the matching keys only."
        )
    backbone.load_state_dict(state, strict=False)
    loaded = len(state) - len(unexpected)
    logger.log(
        logging.WARNING if missing or unexpected else logging.INFO,
        "pretrained weights loaded into %s from %s: format %r, %d of %d backbone tensors; dropped %s; adapted input "
        "channels %s; missing (left as initialised) %s; unexpected (ignored) %s.",
        type(backbone).__name__, path, fmt, loaded, len(target),
        *(_first(keys) if keys else "none" for keys in (dropped, adapted, missing, unexpected)),
    )
    return {
        "path": path,
        "format": fmt,
        "num_tensors": loaded,
        "missing_keys": missing,
        "unexpected_keys": unexpected,
        "adapted_keys": adapted,
        "dropped_keys": dropped,
    }


def to_moco_state_dict(backbone_state_dict: Mapping[str, torch.Tensor], prefix: str = "module.encoder_q.") -> dict:
    """Backbone weights under facebookresearch/moco's key names, for tools that read MoCo checkpoints.

    Save as ``torch.save({"state_dict": to_moco_state_dict(sd)}, "moco_format.pth")``; such a file (without the
    ``fc.*`` projection head, which is not part of the backbone) loads back with :func:`load_backbone_weights`.

    Args:
        backbone_state_dict: the backbone's ``state_dict()``.
        prefix: key prefix of the query encoder.

    Returns:
        ``{prefix + key: tensor}``.

    Example::

        torch.save({"state_dict": to_moco_state_dict(backbone.state_dict())}, "backbone_moco.pth")
    """
    return {f"{prefix}{k}": v for k, v in backbone_state_dict.items()}


def export_backbone(
    checkpoint: str | os.PathLike,
    output: str | os.PathLike,
    format: str = "auto",
    out_format: str = "state_dict",
    backbone: nn.Module | None = None,
) -> dict[str, Any]:
    """Write the clean backbone of a checkpoint: no key encoder, queue, projection/patch head or optimizer.

    Reads any format of :data:`CHECKPOINT_FORMATS` safely (:func:`load_checkpoint_file`): our MoCo/SimCLR
    pretraining checkpoints (:func:`monai_moco.engines.checkpoint_dict` layout: the query encoder ``network`` is
    kept, ``momentum_network``/``queue``/``optimizer``/``trainer``/``rng`` are dropped), facebookresearch/moco and
    MoCo-CXR (Sowrirajan et al., MIDL 2021) checkpoints (``module.encoder_q.*``, MLP head ``fc.*`` dropped), or plain
    state dicts. Writes either the backbone's own key names (``out_format="state_dict"``: a torchvision ResNet's
    ``conv1.weight``..., timm's, MONAI's or ConvStemViT's keys, as :func:`~monai_moco.networks.nets.build_backbone`
    names them; ``.safetensors`` when ``output`` ends so) or facebookresearch/moco's layout
    ``{"state_dict": {"module.encoder_q.<key>": ...}}`` (``out_format="moco"``) for tools that read MoCo-CXR
    checkpoints. The file is written atomically (temporary file, then rename).

    Args:
        checkpoint: local checkpoint file.
        output: file to write (``.pt``/``.pth``/``.pth.tar`` or ``.safetensors``; ``.safetensors`` only with
            ``out_format="state_dict"``).
        format: format of ``checkpoint`` (see :data:`CHECKPOINT_FORMATS`; ``"auto"`` detects it).
        out_format: one of :data:`EXPORT_FORMATS`.
        backbone: optional model of the matching architecture; when given, the exported tensors are first loaded
            into it with strict key and shape matching (nothing is written when they do not fit) and it keeps them.

    Returns:
        a report ``{"checkpoint", "output", "format", "out_format", "num_tensors", "num_elements",
        "dropped_keys", "verified"}`` (``dropped_keys`` are the top-level entries and encoder keys left out).

    Raises:
        FileNotFoundError: when ``checkpoint`` does not exist.
        UnsafeCheckpointError: when its pickle is not weights-only.
        ValueError: for an unknown format, no backbone in the checkpoint, or (with ``backbone``) tensors that do not
            load strictly; the message names the file and the first offending keys.

    Example::

        report = export_backbone("runs/moco_resnet50/checkpoint_final.pt", "resnet50_moco.pth",
                                 backbone=build_backbone("resnet50"))
        export_backbone("resnet50_moco.pth", "resnet50_mococxr.pth.tar", out_format="moco")  # MoCo-CXR layout
        export_backbone("mococxr_checkpoint.pth.tar", "resnet18_from_mococxr.pth")  # import
    """
    src, dst = os.fspath(checkpoint), os.fspath(output)
    out_format = look_up_option(out_format, EXPORT_FORMATS)
    if dst.endswith(".safetensors") and out_format != "state_dict":
        raise ValueError(f"export_backbone: {dst!r}: .safetensors holds a flat state dict; use out_format='state_dict'.")
    loaded = load_checkpoint_file(src)
    state, fmt, dropped = extract_backbone_state_dict(loaded, format, src)
    if isinstance(loaded, Mapping) and "network" in loaded:
        dropped = [k for k in loaded if k != "network"] + [f"network.{k}" for k in dropped]
    state = {k: v.detach().clone().contiguous() for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise ValueError(f"export_backbone: {src!r} (format {fmt!r}) holds no backbone tensors.")
    verified = False
    if backbone is not None:
        try:
            backbone.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ValueError(
                f"export_backbone: the backbone of {src!r} (format {fmt!r}) does not load strictly into "
                f"{type(backbone).__name__}: {str(err).splitlines()[0]} {str(err).splitlines()[1:3]}; build the model "
                f"with the architecture, in_channels and options the checkpoint was trained with. Its keys: "
                f"{_first(state)}."
            ) from None
        verified = True
    if dst.endswith(".safetensors"):  # a flat state dict (checked above)
        from safetensors.torch import save_file

        atomic_write(dst, lambda tmp: save_file(state, str(tmp)))
    else:
        obj = {"state_dict": to_moco_state_dict(state)} if out_format == "moco" else state
        atomic_write(dst, lambda tmp: torch.save(obj, tmp))
    return {
        "checkpoint": src,
        "output": dst,
        "format": fmt,
        "out_format": out_format,
        "num_tensors": len(state),
        "num_elements": int(sum(v.numel() for v in state.values())),
        "dropped_keys": dropped,
        "verified": verified,
    }
