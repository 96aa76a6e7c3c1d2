"""The DDP overlay as users launch it: ``torchrun --nproc_per_node 2 -m monai.bundle run --config_file
"['.../train.json','.../cpu.json','.../multi_gpu_train.json']"``, here on CPU with the gloo backend."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest


def test_moco_resnet50_torchrun_two_processes_gloo(bundles, kermany_dir, tmp_path):
    """Two ranks train one tiny epoch together: one checkpoint and one TensorBoard log (rank 0 only), the queue
    holds both ranks' keys, and the learning rate scales with the global batch."""
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    if not Path(torchrun).exists():
        pytest.fail("torchrun not found beside the Python interpreter")
    out = tmp_path / "ddp"
    name = "moco_resnet50"
    cmd = bundles.command(
        [f"bundles/{name}/train.json", f"bundles/{name}/cpu.json", f"bundles/{name}/multi_gpu_train.json"],
        bundles.tiny_overrides(kermany_dir, out, batch_size=4, monitor_interval=1),
        launcher=[torchrun, "--nproc_per_node", "2"],
    )
    cmd.remove("--device")  # the overlay takes the device from LOCAL_RANK (CPU here)
    cmd.remove("cpu")
    bundles.run(cmd, timeout=600)

    ckpts = sorted((out / "checkpoints").glob("*.pt"))
    assert [p.name for p in ckpts] == ["checkpoint_epoch=1.pt", "last.pt"], ckpts
    ckpt = bundles.load_checkpoint(out / "checkpoints" / "last.pt")
    assert ckpt["trainer"]["iteration"] == 2  # 16 images / 2 ranks / batch 4
    assert int(ckpt["queue"]["num_enqueued"]) == 16  # 2 steps x 2 ranks x 4 keys, gathered before enqueueing
    assert not any(k.startswith("module.") for k in ckpt["network"])  # DDP unwrapped by the checkpoint
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 1  # rank 0 only
    lrs = [v for _, v in bundles.tensorboard_scalars(out / "tensorboard")["train/lr"]]
    assert lrs and abs(lrs[0] - 0.03 * 4 * 2 / 256) < 1e-9, lrs
