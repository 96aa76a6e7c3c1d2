"""No checkpoint anywhere in monai_moco, scripts or bundles is unpickled with code execution (issue 7 item 5).

A static audit (every ``torch.load`` call passes ``weights_only=True``; no ``pickle.load``, ``np.load`` with
``allow_pickle=True`` or ``torch.load`` target in a bundle config), and a code-running checkpoint refused by every
loader a user can reach: :func:`load_checkpoint_file`, ``build_backbone(weights=...)``, MONAI 1.6.1's
``CheckpointLoader`` (which our bundles use; it calls ``torch.load(..., weights_only=True)`` itself).
"""

from __future__ import annotations

import ast
import inspect
import json
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine
from monai.handlers import CheckpointLoader
from testing_helpers import save_code_running_checkpoint

from monai_moco.networks.nets import build_backbone
from monai_moco.networks.weights import UnsafeCheckpointError, export_backbone, load_checkpoint_file

REPO = Path(__file__).resolve().parents[1]
PY_ROOTS = ("monai_moco", "scripts", "bundles")


def _python_files() -> list[Path]:
    return sorted(p for root in PY_ROOTS for p in (REPO / root).rglob("*.py"))


def _unsafe_calls(path: Path, root: Path = REPO) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        kwargs = {k.arg: k.value for k in node.keywords if k.arg}
        where = f"{path.relative_to(root)}:{node.lineno}: {ast.unparse(node)[:100]}"
        if name.endswith("torch.load") or (name == "load" and "weights_only" in kwargs):
            value = kwargs.get("weights_only")
            if not (isinstance(value, ast.Constant) and value.value is True):
                found.append(where)
        elif name in ("pickle.load", "pickle.loads", "cPickle.load", "dill.load", "joblib.load"):
            found.append(where)
        elif name.endswith(("np.load", "numpy.load")):
            value = kwargs.get("allow_pickle")
            if value is not None and not (isinstance(value, ast.Constant) and value.value is False):
                found.append(where)
    return found


def test_every_torch_load_is_weights_only():
    files = _python_files()
    assert len(files) > 20
    unsafe = [hit for path in files for hit in _unsafe_calls(path)]
    assert not unsafe, "loads that could run pickled code:\n" + "\n".join(unsafe)


def test_audit_catches_an_unsafe_call(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\nx = torch.load('a.pt')\ny = torch.load('b.pt', weights_only=False)\n"
                   "z = torch.load('c.pt', weights_only=True)\n")
    assert [hit.split(":")[1] for hit in _unsafe_calls(bad, tmp_path)] == ["2", "3"]


def test_bundle_configs_load_checkpoints_safely():
    configs = sorted((REPO / "bundles").rglob("*.json"))
    for cfg in configs:
        text = cfg.read_text()
        json.loads(text)
        assert "torch.load" not in text or "weights_only=True" in text, f"{cfg}: torch.load without weights_only=True"
        assert "pickle" not in text, f"{cfg}: pickle in a bundle config"
    # MONAI's CheckpointLoader, the loader the bundles use, is weights-only in the installed MONAI
    assert "weights_only=True" in inspect.getsource(CheckpointLoader.__call__)


@pytest.fixture
def evil(tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / "pwned"
    return save_code_running_checkpoint(tmp_path / "evil.pth.tar", marker), marker


def test_code_running_checkpoint_is_refused_everywhere(tmp_path, evil):
    path, marker = evil
    with pytest.raises(UnsafeCheckpointError, match="evil.pth.tar"):
        load_checkpoint_file(path)
    with pytest.raises(UnsafeCheckpointError):
        build_backbone("resnet18", weights=path)
    with pytest.raises(UnsafeCheckpointError):
        export_backbone(path, tmp_path / "out.pth")
    net = torch.nn.Linear(2, 2)
    engine = Engine(lambda e, b: None)
    CheckpointLoader(load_path=str(path), load_dict={"network": net}, map_location="cpu").attach(engine)
    with pytest.raises(Exception, match="(?i)weights.only|unpickl|GLOBAL"):
        engine.run([0], max_epochs=1)
    assert not marker.exists()
    assert not (tmp_path / "out.pth").exists()
    # the payload is real: an unsafe load would have run it
    torch.load(path, weights_only=False)
    assert marker.exists()
