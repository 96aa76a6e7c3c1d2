"""Shared builders of the deploy tests: tiny scripted classifiers and crafted DICOM files (no download)."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import torch
from dicom_helpers import copy_with  # noqa: F401  (re-exported for the deploy tests)
from torch import nn

from monai_moco.networks.blocks import TopKPatchHead
from monai_moco.networks.nets import XRayClassifier, build_backbone

SIZE = 64
CLASS_NAMES = ["normal", "pneumonia"]


def metadata(size: int = SIZE, class_names: list[str] = CLASS_NAMES, version: str = "0.0.1") -> dict:
    """A bundle-like metadata.json (input spatial shape, output channel_def)."""
    return {
        "name": "tiny_cxr", "version": version,
        "network_data_format": {
            "inputs": {"image": {"num_channels": 1, "spatial_shape": [size, size]}},
            "outputs": {"pred": {"num_channels": len(class_names),
                                 "channel_def": {str(i): c for i, c in enumerate(class_names)}}},
        },
    }


class TopKBackbone(nn.Module):
    """ConvStemViT patch tokens pooled by a TopKPatchHead, scriptable (the head's Union return refined)."""

    def __init__(self, encoder: nn.Module, patch_head: TopKPatchHead) -> None:
        super().__init__()
        self.encoder = encoder
        self.patch_head = patch_head
        self.out_features = patch_head.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.patch_head(self.encoder(x))
        assert isinstance(out, torch.Tensor)
        return out


def tiny_classifier(kind: str = "resnet", num_classes: int = 2, seed: int = 0) -> nn.Module:
    """``resnet``: XRayClassifier(ResNet-18); ``topk``: XRayClassifier(TopKBackbone(ConvStemViT, TopKPatchHead))."""
    torch.manual_seed(seed)
    if kind == "resnet":
        backbone = build_backbone("resnet18", in_channels=1)
    else:
        vit = build_backbone("convstem_vit_tiny", img_size=SIZE, patch_size=16, num_layers=2, pooling="none")
        backbone = TopKBackbone(vit, TopKPatchHead(vit.out_features, k=4))
    model = XRayClassifier(backbone, num_classes).eval()
    with torch.no_grad():  # non-trivial head so the classes differ
        model.head.weight.normal_(0, 0.5)
    return model


def save_scripted(model: nn.Module, path: Path, meta: dict | None = None, configs: dict | None = None) -> Path:
    """``torch.jit.script`` + save with ``metadata.json`` (and configs) as extra files, like ckpt_export."""
    extra = {"metadata.json": json.dumps(meta if meta is not None else metadata())}
    extra.update({k: json.dumps(v) for k, v in (configs or {}).items()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(model), str(path), _extra_files=extra)
    return path


def monochrome2_twin(mono1: Path, dst: Path) -> Path:
    """The same radiograph stored the other way: stored values mirrored, window centre mirrored, MONOCHROME2."""
    ds = pydicom.dcmread(mono1)
    assert ds.PhotometricInterpretation == "MONOCHROME1" and "RescaleSlope" not in ds
    top = 2 ** int(ds.BitsStored) - 1
    arr = ds.pixel_array.astype(np.int32)
    ds.PixelData = (top - arr).astype(ds.pixel_array.dtype).tobytes()
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.WindowCenter = top - float(ds.WindowCenter)
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(dst, enforce_file_format=True)
    return dst


def structured_report(src: Path, dst: Path) -> Path:
    """A real non-image DICOM (Comprehensive SR) about ``src``."""
    from monai_moco.deploy.report import build_classification_sr

    sr = build_classification_sr(pydicom.dcmread(src, stop_before_pixels=True), {"a": 1.0}, "x", "1", "softmax")
    sr.save_as(dst, enforce_file_format=True)
    return dst


def truncated(src: Path, dst: Path, keep: float = 0.5) -> Path:
    """The first ``keep`` of a DICOM file: a valid header with incomplete pixel data."""
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


def copy_into(folder: Path, *files: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy(f, folder / f.name)
    return folder
