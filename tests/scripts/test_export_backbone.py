"""scripts/export_backbone.py on real pretraining checkpoints written by a tiny MoCo/SimCLR run in tmp_path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from testing_helpers import load_module_from_path, save_code_running_checkpoint
from torch import nn

from monai_moco.engines import MoCoTrainer, SimCLRTrainer, checkpoint_dict
from monai_moco.handlers import AtomicCheckpointSaver
from monai_moco.networks.blocks import MoCoV2ProjectionHead, TopKPatchHead
from monai_moco.networks.nets import ContrastiveEncoder, build_backbone
from monai_moco.networks.weights import (
    UnsafeCheckpointError,
    export_backbone,
    load_backbone_weights,
    load_checkpoint_file,
)

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "export_backbone.py"
SIZE = 32

# (method, build_backbone name, kwargs, top-K patch head)
CASES = [
    ("moco", "resnet18", {}, False),
    ("simclr", "convstem_vit_tiny", {"img_size": SIZE, "patch_size": 8, "num_layers": 2, "pooling": "none"}, True),
    ("moco", "convstem_vit_tiny", {"img_size": SIZE, "patch_size": 8, "num_layers": 2}, False),
    ("simclr", "timm:resnet10t", {}, False),
    ("moco", "monai:EfficientNetBN", {}, False),
]


def _script():
    return load_module_from_path(SCRIPT, "export_backbone_script")


def _batches(n: int = 2, batch: int = 4) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        img = torch.rand(batch, 1, SIZE, SIZE, generator=g)
        out.append({"view1": img + 0.05 * torch.randn(img.shape, generator=g),
                    "view2": img + 0.05 * torch.randn(img.shape, generator=g)})
    return out


def _pretrain(tmp_path: Path, method: str, name: str, kwargs: dict, topk: bool) -> tuple[Path, ContrastiveEncoder]:
    """Two real training steps, checkpointed by AtomicCheckpointSaver with checkpoint_dict (our layout)."""
    torch.manual_seed(0)
    backbone = build_backbone(name, in_channels=1, **kwargs)
    width = backbone.out_features
    head = TopKPatchHead(width, k=4) if topk else None
    encoder = ContrastiveEncoder(backbone, MoCoV2ProjectionHead(width, 32, 16), patch_head=head)
    optimizer = torch.optim.SGD(encoder.parameters(), lr=0.05, momentum=0.9)
    if method == "moco":
        trainer = MoCoTrainer("cpu", 1, _batches(), encoder, optimizer, queue_size=16, queue_dim=16, momentum=0.9)
    else:
        trainer = SimCLRTrainer("cpu", 1, _batches(), encoder, optimizer)
    if name.startswith("monai:"):  # a deep net: the checkpoint_dict layout written directly, without training steps
        path = tmp_path / "ckpt" / "final.pt"
        path.parent.mkdir(parents=True)
        torch.save({key: obj.state_dict() for key, obj in checkpoint_dict(trainer).items()}, path)
        return path, encoder.eval()
    AtomicCheckpointSaver(str(tmp_path / "ckpt"), checkpoint_dict(trainer), save_final=True,
                          final_filename="final.pt").attach(trainer)
    trainer.run()
    return tmp_path / "ckpt" / "final.pt", encoder.eval()


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """``pretrained(*case)`` -> (checkpoint, encoder), each case trained once per module."""
    cache: dict[str, tuple[Path, ContrastiveEncoder]] = {}

    def get(method: str, name: str, kwargs: dict, topk: bool) -> tuple[Path, ContrastiveEncoder]:
        key = json.dumps([method, name, kwargs, topk])
        if key not in cache:
            cache[key] = _pretrain(tmp_path_factory.mktemp(method), method, name, kwargs, topk)
        return cache[key]

    return get


@pytest.fixture
def resnet18_moco_checkpoint(pretrained) -> Path:
    """The MoCo ResNet-18 checkpoint of the first case, shared by the CLI tests."""
    return pretrained(*CASES[0])[0]


@pytest.mark.parametrize("method,name,kwargs,topk", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_export_roundtrip(tmp_path, pretrained, method, name, kwargs, topk):
    ckpt, encoder = pretrained(method, name, kwargs, topk)
    saved = load_checkpoint_file(ckpt)
    assert "network" in saved and "optimizer" in saved
    if method == "moco":
        assert {"momentum_network", "queue"} <= set(saved)

    # our checkpoint -> clean backbone state dict, verified by a strict load into a fresh build_backbone model
    out = tmp_path / "backbone.pth"
    fresh = build_backbone(name, in_channels=1, **kwargs)
    report = export_backbone(ckpt, out, backbone=fresh)
    assert report["format"] == "monai_moco" and report["verified"]
    assert "momentum_network" in report["dropped_keys"] if method == "moco" else "optimizer" in report["dropped_keys"]
    assert any(k.startswith("network.projection.") for k in report["dropped_keys"])
    if topk:
        assert any(k.startswith("network.patch_head.") for k in report["dropped_keys"])
    sd = torch.load(out, map_location="cpu", weights_only=True)
    assert set(sd) == set(fresh.state_dict())
    assert not any(k.startswith(("projection", "patch_head", "backbone.", "module.", "queue")) for k in sd)

    x = torch.rand(2, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = encoder.backbone(x)
        torch.testing.assert_close(fresh.eval()(x), expected, rtol=1e-5, atol=1e-5)
        if name == "resnet18":  # the plain torchvision model (1-channel conv1, fc removed), strict
            tv = torchvision.models.resnet18(weights=None)
            tv.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
            tv.fc = nn.Identity()
            tv.load_state_dict(sd, strict=True)
            torch.testing.assert_close(tv.eval()(x), expected, rtol=1e-5, atol=1e-5)
        if name.startswith("monai:"):  # the plain MONAI network with its last linear layer removed, strict
            from monai.networks.nets import EfficientNetBN

            mn = EfficientNetBN("efficientnet-b0", pretrained=False, spatial_dims=2, in_channels=1, num_classes=1)
            mn._fc = nn.Identity()
            mn.load_state_dict(sd, strict=True)
            torch.testing.assert_close(mn.eval()(x), expected, rtol=1e-5, atol=1e-5)
        if name.startswith("timm:"):
            import timm

            tm = timm.create_model(name[5:], pretrained=False, num_classes=0, in_chans=1)
            tm.load_state_dict(sd, strict=True)
            torch.testing.assert_close(tm.eval()(x), expected, rtol=1e-5, atol=1e-5)

    # reverse: facebookresearch/MoCo-CXR layout, then import it back (strict) -> same tensors, same outputs
    moco = tmp_path / "backbone_moco.pth.tar"
    export_backbone(out, moco, out_format="moco")
    moco_sd = torch.load(moco, map_location="cpu", weights_only=True)["state_dict"]
    assert moco_sd and all(k.startswith("module.encoder_q.") for k in moco_sd)
    imported = build_backbone(name, in_channels=1, **kwargs)
    assert load_backbone_weights(imported, moco)["format"] == "moco"
    again = tmp_path / "from_moco.safetensors"
    assert export_backbone(moco, again, backbone=imported)["format"] == "moco"
    from safetensors.torch import load_file

    back = load_file(again)
    assert set(back) == set(sd) and all(torch.equal(back[k], sd[k]) for k in sd)
    with torch.no_grad():
        torch.testing.assert_close(imported.eval()(x), expected, rtol=1e-5, atol=1e-5)


def test_import_mococxr_checkpoint_with_key_encoder_and_head(tmp_path):
    """A MoCo-CXR/facebookresearch file (encoder_q + encoder_k + MLP fc.0/fc.2 + queue) -> clean backbone."""
    torch.manual_seed(0)
    source = build_backbone("resnet18", in_channels=1).eval()
    sd = source.state_dict()
    moco_sd = {}
    for enc in ("encoder_q", "encoder_k"):
        moco_sd.update({f"module.{enc}.{k}": v for k, v in sd.items()})
        moco_sd.update({f"module.{enc}.fc.0.weight": torch.randn(512, 512), f"module.{enc}.fc.2.weight": torch.randn(128, 512)})
    moco_sd["module.queue"] = torch.randn(128, 64)
    path = tmp_path / "mococxr_resnet18.pth.tar"
    torch.save({"epoch": 20, "arch": "resnet18", "state_dict": moco_sd}, path)
    out = tmp_path / "resnet18.pth"
    code = _script().main([str(path), str(out), "--backbone", "resnet18"])
    assert code == 0
    exported = torch.load(out, map_location="cpu", weights_only=True)
    assert set(exported) == set(sd) and all(torch.equal(exported[k], sd[k]) for k in sd)


def test_cli_refuses_mismatched_backbone_and_writes_nothing(tmp_path, capsys, resnet18_moco_checkpoint):
    ckpt = resnet18_moco_checkpoint
    out = tmp_path / "wrong.pth"
    assert _script().main([str(ckpt), str(out), "--backbone", "resnet50"]) == 1
    err = capsys.readouterr().err
    assert "does not load strictly into ResNet" in err and str(ckpt) in err
    assert not out.exists() and not list(tmp_path.glob(".wrong.pth*"))


def test_cli_subprocess_prints_report(tmp_path, resnet18_moco_checkpoint):
    ckpt = resnet18_moco_checkpoint
    out = tmp_path / "r18.pth"
    proc = subprocess.run([sys.executable, str(SCRIPT), str(ckpt), str(out), "--backbone", "resnet18"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["verified"] and report["format"] == "monai_moco" and report["num_tensors"] == len(build_backbone("resnet18").state_dict())


def test_pickle_bearing_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth.tar"
    save_code_running_checkpoint(path, marker)
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError, match="evil.pth.tar"):
        export_backbone(path, tmp_path / "out.pth")
    assert _script().main([str(path), str(tmp_path / "out.pth")]) == 1
    assert not marker.exists() and not (tmp_path / "out.pth").exists()
