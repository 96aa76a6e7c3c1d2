"""Tests for PatchHeatmapWriter on a tiny real ContrastiveEncoder(ConvStemViT, TopKPatchHead) and real radiographs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from monai_moco.handlers.heatmap_writer import PatchHeatmapWriter
from monai_moco.networks.blocks import MoCoV2ProjectionHead, TopKPatchHead
from monai_moco.networks.nets import ContrastiveEncoder, ConvStemViT

HW = (64, 48)


def _encoder() -> ContrastiveEncoder:
    torch.manual_seed(0)
    backbone = ConvStemViT(img_size=HW, patch_size=8, hidden_size=32, mlp_dim=64, num_layers=2, num_heads=2,
                           pooling="none")
    return ContrastiveEncoder(backbone, MoCoV2ProjectionHead(32, 32, 16), TopKPatchHead(32, k=5))


def _radiographs(kermany_dir: Path, n: int = 2) -> torch.Tensor:
    paths = sorted((kermany_dir / "test").rglob("*.jpeg"))[:n]
    arrs = [np.asarray(Image.open(p).convert("L").resize((HW[1], HW[0])), dtype=np.float32) / 255.0 for p in paths]
    return torch.from_numpy(np.stack(arrs))[:, None]


def _engine(network) -> Engine:
    engine = Engine(lambda e, b: None)
    engine.network = network
    return engine


def test_writes_tensorboard_images_and_pngs(kermany_dir: Path, tmp_path: Path) -> None:
    images = _radiographs(kermany_dir)
    engine = _engine(_encoder().train())
    handler = PatchHeatmapWriter(tmp_path / "tb", images, interval=2, output_dir=tmp_path / "png")
    handler.attach(engine)
    engine.run([0], max_epochs=4)
    pngs = sorted(p.name for p in (tmp_path / "png").glob("*.png"))
    assert pngs == ["heatmap_e0002_0.png", "heatmap_e0002_1.png", "heatmap_e0004_0.png", "heatmap_e0004_1.png"]
    for name in pngs:
        assert Image.open(tmp_path / "png" / name).size == (HW[1], HW[0])
    assert engine.network.training  # mode restored
    events = list((tmp_path / "tb").glob("events.out.tfevents*"))
    assert events
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0})
    acc.Reload()
    tags = acc.Tags()["images"]
    assert any(t.startswith("patch_heatmap") for t in tags), tags
    steps = sorted({ev.step for t in tags for ev in acc.Images(t)})
    assert steps == [2, 4]
    ev = acc.Images(tags[0])[0]
    assert (ev.height, ev.width) == (HW[0], 2 * HW[1])  # add_images tiles the batch side by side


def test_overlays_follow_the_scores_and_outline_topk(kermany_dir: Path) -> None:
    images = _radiographs(kermany_dir, 1)
    net = _encoder()
    handler = PatchHeatmapWriter(None, images, output_dir="unused")
    overlays, scores, indices, grid = handler.compute(net)
    assert overlays.shape == (1, *HW, 3) and overlays.dtype == np.uint8
    assert grid == (8, 6) and scores.shape == (1, 48) and indices.shape == (1, 5)
    torch.testing.assert_close(indices[0], scores[0].topk(5).indices)
    # the best patch's outline is white
    r, c = divmod(int(indices[0, 0]), 6)
    assert (overlays[0, r * 8, c * 8 : c * 8 + 8] == 255).all()


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple, int, str]] = []

    def add_images(self, tag, arr, step, dataformats="NCHW") -> None:
        self.calls.append((tag, arr.shape, step, dataformats))


def test_given_writer_and_a_token_producer_then_head_layout(kermany_dir: Path) -> None:
    """A module whose children are a token producer and a TopKPatchHead (no embed_with_scores) works too."""
    enc = _encoder()
    tokens_then_head = torch.nn.Sequential(enc.backbone, enc.patch_head)
    rec = _Recorder()
    PatchHeatmapWriter(rec, _radiographs(kermany_dir), tag="heat")(_engine_at_epoch(tokens_then_head, 3))
    assert rec.calls == [("heat", (2, *HW, 3), 3, "NHWC")]


def _engine_at_epoch(network, epoch: int) -> Engine:
    engine = _engine(network)
    engine.state.epoch = epoch
    return engine


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"B x 1 x H x W.*\[2, 64, 48\]"):
        PatchHeatmapWriter(None, torch.rand(2, 64, 48), output_dir="x")
    with pytest.raises(ValueError, match="summary_writer"):
        PatchHeatmapWriter(None, torch.rand(2, 1, 64, 48))
    with pytest.raises(ValueError, match="TopKPatchHead"):
        PatchHeatmapWriter(_Recorder(), torch.rand(1, 1, 64, 48))(_engine_at_epoch(torch.nn.Linear(2, 2), 1))
