"""The method-variant overlays: ``moco_resnet50/moco_v1.json`` (MoCo-v1, He et al. CVPR 2020) and
``simclr_resnet50/supcon.json`` (supervised contrastive, Khosla et al. NeurIPS 2020).

What they change when merged over ``train.json`` with either CPU overlay, in either order, and a tiny real run of each
through ``python -m monai.bundle run`` on Kermany radiographs.
"""

from __future__ import annotations

import math

import pytest
import torch
from monai.bundle import ConfigParser
from torch import nn

MOCO = "bundles/moco_resnet50"
SIMCLR = "bundles/simclr_resnet50"


def _parser(bundles, files: list[str], **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(bundles.dir.parent / f) for f in files])
    parser.update(overrides)
    return parser


@pytest.mark.parametrize("cpu_overlay", ["cpu.json", "cpu_study.json"])
@pytest.mark.parametrize("v1_last", [False, True])
def test_moco_v1_overlay_settings(bundles, cpu_overlay, v1_last):
    files = [f"{MOCO}/train.json", f"{MOCO}/{cpu_overlay}", f"{MOCO}/moco_v1.json"]
    if not v1_last:
        files[1], files[2] = files[2], files[1]
    parser = _parser(bundles, files, device="cpu")
    assert parser.get_parsed_content("loss").temperature == pytest.approx(0.07)
    head = parser.get_parsed_content("network_def").projection
    assert type(head).__name__ == "LinearProjectionHead"
    linears = [m for m in head.layers if isinstance(m, nn.Linear)]
    assert len(linears) == 1 and linears[0].weight.shape == (128, 512)  # resnet18 features -> the 128-d embedding
    # the CPU overlay's head BatchNorm is kept, so v1 and v2 differ only in the head's depth under one recipe
    assert any(isinstance(m, nn.BatchNorm1d) for m in head.layers) == parser.get_parsed_content("head_batch_norm")
    views = parser.get_parsed_content("train#view_transform")
    for view in (views.view1, views.view2):
        assert view.config.blur_prob == 0.0 and view.config.jitter_prob == 1.0
        assert view.config.noise_prob == 0.5 and view.config.crop_scale == (0.5, 1.0)  # the rest as the base recipe
    epochs = parser.get_parsed_content("epochs")
    parser["lr_scheduler#optimizer"] = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = parser.get_parsed_content("lr_scheduler")
    assert isinstance(scheduler, torch.optim.lr_scheduler.MultiStepLR)
    assert sorted(scheduler.milestones) == [int(0.6 * epochs), int(0.8 * epochs)] and scheduler.gamma == 0.1
    # the CPU overlay still sets what it sets (queue, key momentum, backbone)
    cpu = {"cpu.json": 1024, "cpu_study.json": 4096}[cpu_overlay]
    assert parser.get_parsed_content("queue_size") == cpu and parser.get_parsed_content("backbone") == "resnet18"


def test_moco_v1_overlay_tiny_run(bundles, kermany_dir, tmp_path):
    out = tmp_path / "moco_v1"
    bundles.run(bundles.command([f"{MOCO}/train.json", f"{MOCO}/moco_v1.json", f"{MOCO}/cpu.json"],
                                bundles.tiny_overrides(kermany_dir, out, monitor=False)))
    ckpt = bundles.load_checkpoint(out / "checkpoints" / "last.pt")
    head = sorted(k for k in ckpt["network"] if k.startswith("projection.") and k.endswith("weight"))
    assert head == ["projection.layers.0.weight", "projection.layers.1.weight"], head  # Linear + BatchNorm1d
    assert ckpt["network"]["projection.layers.0.weight"].shape == (128, 512)
    assert ckpt["trainer"]["iteration"] == 2 and int(ckpt["queue"]["num_enqueued"]) == 16
    assert ckpt["lr_scheduler"]["milestones"] == {0: 2}  # int(0.6 * 1) == int(0.8 * 1) == 0
    losses = [v for _, v in bundles.tensorboard_scalars(out / "tensorboard")["train/loss"]]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses), losses


def test_supcon_overlay_tiny_run_on_the_labelled_training_split(bundles, kermany_dir, tmp_path):
    """SupCon pretrains on the study's training part (labels from ``transfer_datalists``) with the same network and
    schedule as SimCLR; the checkpoint is a SimCLR-format checkpoint that the probes and cxr_classifier load."""
    from monai_moco.data import transfer_datalists

    out = tmp_path / "supcon"
    overrides = bundles.tiny_overrides(kermany_dir, out, monitor=False, max_images=40, labelled_dataset_dir=kermany_dir)
    bundles.run(bundles.command([f"{SIMCLR}/train.json", f"{SIMCLR}/supcon.json", f"{SIMCLR}/cpu.json"], overrides))
    n_train = len(transfer_datalists(kermany_dir, seed=0, max_images=40)["train"])
    ckpt = bundles.load_checkpoint(out / "checkpoints" / "last.pt")
    assert ckpt["trainer"]["iteration"] == n_train // 8 and ckpt["trainer"]["epoch_length"] == n_train // 8
    assert any(k.startswith("backbone.") for k in ckpt["network"])
    losses = [v for _, v in bundles.tensorboard_scalars(out / "tensorboard")["train/loss"]]
    assert len(losses) == n_train // 8 and all(math.isfinite(v) for v in losses), losses


def test_supcon_overlay_without_a_labelled_dataset_names_the_folder(bundles, tmp_path):
    parser = _parser(bundles, [f"{SIMCLR}/train.json", f"{SIMCLR}/supcon.json", f"{SIMCLR}/cpu.json"],
                     labelled_dataset_dir=str(tmp_path / "nowhere"))
    with pytest.raises(RuntimeError, match="transfer_datalists") as info:  # MONAI's wrapper names the expression
        parser.get_parsed_content("train#datalist")
    cause = info.value.__cause__
    assert isinstance(cause, FileNotFoundError) and "nowhere" in str(cause), repr(cause)
