"""Harness of the bundle tests: run ``python -m monai.bundle run`` in a subprocess and read what it wrote.

Every test here runs a bundle exactly as a user does, from the repository root, with command-line overrides that
shrink it to a CPU-sized budget (a few real Kermany radiographs, 64 px, one epoch).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from monai.bundle import ConfigParser

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLES_DIR = REPO_ROOT / "bundles"

#: ``train#trainer#_target_`` of a pretraining bundle.
PRETRAIN_TRAINERS = ("monai_moco.engines.MoCoTrainer", "monai_moco.engines.SimCLRTrainer")


def bundle_names() -> list[str]:
    """Every bundle folder under ``bundles/`` (a folder holding ``metadata.json``), sorted."""
    return sorted(p.parent.name for p in BUNDLES_DIR.glob("*/metadata.json"))


def input_spatial_dims(name: str) -> int:
    """Spatial dimensions of a bundle's network input, from ``metadata.json`` (2 for radiographs, 3 for volumes)."""
    meta = json.loads((BUNDLES_DIR / name / "metadata.json").read_text())
    return len(meta["network_data_format"]["inputs"]["image"]["spatial_shape"])


def pretraining_bundles() -> list[str]:
    """The radiograph (2D) bundles whose ``train.json`` trains with ``MoCoTrainer`` or ``SimCLRTrainer`` and that have a
    ``cpu.json``: what the tiny Kermany runs cover (3D bundles have their own tests on the CT volume)."""
    names = []
    for name in bundle_names():
        train = BUNDLES_DIR / name / "train.json"
        if not train.is_file() or not (BUNDLES_DIR / name / "cpu.json").is_file() or input_spatial_dims(name) != 2:
            continue
        target = json.loads(train.read_text()).get("train", {}).get("trainer", {}).get("_target_")
        if target in PRETRAIN_TRAINERS:
            names.append(name)
    return names


def bundle_command(config_files: Sequence[str], overrides: dict[str, Any] | None = None,
                   launcher: Sequence[str] | None = None) -> list[str]:
    """The argv of ``python -m monai.bundle run --config_file ...`` (paths relative to the repository root).

    Args:
        config_files: config files merged in order; one is passed as is, several as the ``"['a','b']"`` list form of
            the README commands.
        overrides: ``--id value`` pairs (values are passed as ``str(value)``; fire parses numbers and ``True``/``False``).
        launcher: argv that replaces ``python`` (e.g. ``torchrun --nproc_per_node 2``; ``-m monai.bundle`` follows).

    Returns:
        the argv list.
    """
    files = config_files[0] if len(config_files) == 1 else "[" + ",".join(f"'{f}'" for f in config_files) + "]"
    cmd = [*(launcher if launcher is not None else [sys.executable]), "-m", "monai.bundle", "run", "--config_file", files]
    for key, value in (overrides or {}).items():
        cmd += [f"--{key}", str(value)]
    return cmd


def run_bundle_command(cmd: Sequence[str], timeout: float = 300.0) -> subprocess.CompletedProcess:
    """Run ``cmd`` from the repository root; fail the test with the output tail when it exits non-zero.

    Args:
        cmd: argv, e.g. from :func:`bundle_command`.
        timeout: seconds before the run is killed.

    Returns:
        the completed process (``stdout``/``stderr`` as text).
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run(list(cmd), cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stdout[-3000:] + "\n--- stderr ---\n" + proc.stderr[-6000:]).strip()
        pytest.fail(f"bundle run failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
    return proc


def tiny_overrides(kermany_dir: Path, output_dir: Path, **more: Any) -> dict[str, Any]:
    """Overrides that shrink any pretraining bundle (with its ``cpu.json``) to about ten seconds of training."""
    base: dict[str, Any] = {
        "dataset_dir": kermany_dir / "train",
        "output_dir": output_dir,
        "epochs": 1,
        "batch_size": 8,
        "image_size": 64,
        "max_images": 16,
        "num_workers": 0,
        "device": "cpu",
        "monitor_images": 16,
        "log_interval": 1,
    }
    base.update(more)
    return base


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint read the safe way (``weights_only=True``), with a clear failure when it is missing."""
    assert path.is_file(), f"no checkpoint at {path}; found {sorted(p.name for p in path.parent.glob('*'))}"
    return torch.load(path, map_location="cpu", weights_only=True)


def cxr_classifier_checkpoint(ckpt: Path, overrides: dict[str, Any]) -> tuple[ConfigParser, torch.nn.Module]:
    """``bundles/cxr_classifier``'s ``inference.json`` network, BatchNorm statistics moved off their defaults, saved as
    ``{"model": state_dict}`` to ``ckpt`` (the layout training writes), for the export tests.

    Args:
        ckpt: checkpoint file to write (its folder is created).
        overrides: config ids to override (e.g. a small ``backbone``).

    Returns:
        the parser (inference.json + metadata.json + overrides) and the eager network in eval mode.
    """
    parser = ConfigParser()
    parser.read_config(str(BUNDLES_DIR / "cxr_classifier" / "inference.json"))
    parser.read_meta(str(BUNDLES_DIR / "cxr_classifier" / "metadata.json"))
    parser.update(overrides)
    torch.manual_seed(0)
    eager = parser.get_parsed_content("network_def")
    eager.train()
    with torch.no_grad():
        eager(torch.rand(4, 1, 64, 64) * 2)  # move the BatchNorm running statistics away from their defaults
    eager.eval()
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": eager.state_dict()}, ckpt)
    return parser, eager


def run_deploy_app(work_dir: Path, dicoms: Sequence[Path], *args: str) -> dict[Path, dict[str, Any]]:
    """Run the MONAI Deploy app in-process on copies of ``dicoms`` (``work_dir/dicom`` -> ``work_dir/out``); skipped
    without the SDK.

    Args:
        work_dir: an empty folder.
        dicoms: DICOM files.
        args: more command-line arguments, at least ``-m <model>``.

    Returns:
        each of ``dicoms`` -> its ``<SOPInstanceUID>.json``.
    """
    pytest.importorskip("monai.deploy.core", reason="the deploy half needs monai-deploy-app-sdk (extra 'deploy')")
    import pydicom

    from monai_moco.deploy.__main__ import main

    folder, out = work_dir / "dicom", work_dir / "out"
    folder.mkdir()
    for src in dicoms:
        (folder / src.name).write_bytes(src.read_bytes())
    assert main(["-i", str(folder), "-o", str(out), *args]) == 0
    results = {}
    for src in dicoms:
        uid = pydicom.dcmread(src, stop_before_pixels=True).SOPInstanceUID
        results[src] = json.loads((out / f"{uid}.json").read_text())
    return results


def tensorboard_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series in the TensorBoard event files under ``log_dir``: tag -> [(step, value), ...]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted(log_dir.rglob("events.out.tfevents.*"))
    assert files, f"no TensorBoard event file under {log_dir}"
    series: dict[str, list[tuple[int, float]]] = {}
    for f in files:
        acc = EventAccumulator(str(f))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            series.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return series


@pytest.fixture(scope="session")
def repo_kermany(kermany_dir: Path) -> Path:
    """``data/kermany`` in the repository (the link ``scripts/setup.sh`` makes), needed by commands with no overrides."""
    link = REPO_ROOT / "data" / "kermany"
    if not (link / "train").is_dir():
        msg = f"{link} is missing: run ./scripts/setup.sh (it links {kermany_dir} there)"
        if os.environ.get("MONAI_MOCO_REQUIRE_DATA", "0") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return link


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parameterize ``bundle_name`` over every bundle folder and ``pretrain_bundle`` over the pretraining bundles, so
    bundles added later are covered without editing the tests."""
    if "bundle_name" in metafunc.fixturenames:
        metafunc.parametrize("bundle_name", bundle_names())
    if "pretrain_bundle" in metafunc.fixturenames:
        metafunc.parametrize("pretrain_bundle", pretraining_bundles())


@pytest.fixture
def bundles() -> SimpleNamespace:
    """The harness functions: ``command``, ``run``, ``tiny_overrides``, ``load_checkpoint``,
    ``cxr_classifier_checkpoint``, ``run_deploy_app``, ``tensorboard_scalars``
    and the paths ``root`` (repository) and ``dir`` (``bundles/``)."""
    return SimpleNamespace(
        command=bundle_command,
        run=run_bundle_command,
        tiny_overrides=tiny_overrides,
        load_checkpoint=load_checkpoint,
        cxr_classifier_checkpoint=cxr_classifier_checkpoint,
        run_deploy_app=run_deploy_app,
        tensorboard_scalars=tensorboard_scalars,
        root=REPO_ROOT,
        dir=BUNDLES_DIR,
    )
