"""Tests for make_dataset: MONAI decode-once caching of the deterministic transform prefix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import CacheDataset, Dataset, PersistentDataset
from monai.transforms import Compose, MapTransform, RandomizableTransform

from monai_moco.data import make_dataset, medmnist_datalist


class _CountingDecode(MapTransform):
    """A deterministic 'loader' that counts how often it runs."""

    def __init__(self) -> None:
        super().__init__(keys="image")
        self.calls = 0

    def __call__(self, data: dict) -> dict:
        self.calls += 1
        out = dict(data)
        out["image"] = torch.as_tensor(np.asarray(data["image"], dtype=np.float32)[None] / 255.0)
        return out


class _RandomShift(RandomizableTransform):
    """A random step after the cached prefix, so each epoch differs."""

    def __call__(self, data: dict) -> dict:
        out = dict(data)
        out["image"] = data["image"] + float(self.R.uniform())
        return out


@pytest.fixture(scope="module")
def small_datalist(pneumoniamnist_npz: Path) -> list[dict]:
    return medmnist_datalist(pneumoniamnist_npz, "val")[:6]


@pytest.mark.parametrize("cache, expected_type", [("memory", CacheDataset), ("disk", PersistentDataset)])
def test_loader_runs_once_per_item_across_epochs(tmp_path: Path, small_datalist, cache, expected_type):
    decode = _CountingDecode()
    transform = Compose([decode, _RandomShift()]).set_random_state(seed=0)
    ds = make_dataset(small_datalist, transform, cache=cache, cache_dir=tmp_path / "cache", progress=False)
    assert isinstance(ds, expected_type)
    epochs = [[ds[i]["image"] for i in range(len(ds))] for _ in range(2)]
    assert decode.calls == len(small_datalist)
    assert epochs[0][0].shape == (1, 28, 28)
    assert not torch.equal(epochs[0][0], epochs[1][0])  # the random part still runs every epoch
    assert [d["label"] for d in ds] == [d["label"] for d in small_datalist]
    if cache == "disk":  # a restart with the same cache_dir decodes nothing
        decode_again = _CountingDecode()
        ds = make_dataset(
            small_datalist, Compose([decode_again, _RandomShift()]), cache="disk", cache_dir=tmp_path / "cache"
        )
        _ = [ds[i] for i in range(len(ds))]
        assert decode_again.calls == 0


def test_no_cache_decodes_every_time(small_datalist):
    decode = _CountingDecode()
    ds = make_dataset(small_datalist, Compose([decode]), cache="none")
    assert type(ds) is Dataset
    for _ in range(2):
        _ = [ds[i] for i in range(len(ds))]
    assert decode.calls == 2 * len(small_datalist)


def test_partial_memory_cache(small_datalist):
    decode = _CountingDecode()
    ds = make_dataset(small_datalist, Compose([decode]), cache="memory", cache_rate=0.5, progress=False)
    assert decode.calls == 3
    _ = [ds[i] for i in range(len(ds))]
    assert decode.calls == 6


def test_bad_options(small_datalist):
    with pytest.raises(ValueError, match="Unsupported option 'ram'"):
        make_dataset(small_datalist, None, cache="ram")
    with pytest.raises(ValueError, match="needs cache_dir"):
        make_dataset(small_datalist, None, cache="disk")
    with pytest.raises(ValueError, match=r"cache_rate must be in \[0, 1\]"):
        make_dataset(small_datalist, None, cache_rate=2.0)


def test_real_loader_through_memory_cache(tmp_path: Path, kermany_dir: Path):
    """End to end with LoadXRayd: real JPEGs load into 1x64x64; a bad file fails at load time with XRayReadError."""
    from monai_moco.data import class_folder_datalist
    from monai_moco.transforms import LoadXRayd, XRayReadError

    items = class_folder_datalist(kermany_dir / "val")[::4]
    ds = make_dataset(items, Compose([LoadXRayd("image", spatial_size=64), _RandomShift()]), progress=False)
    first = ds[0]
    assert first["image"].shape == (1, 64, 64) and first["label"] == items[0]["label"]
    bad = tmp_path / "broken.png"
    bad.write_text("not an image")
    with pytest.raises(RuntimeError) as info:  # MONAI wraps transform errors; the cause is the loader's
        make_dataset([{"image": str(bad), "label": 0}], Compose([LoadXRayd("image")]), cache="none")[0]
    causes, err = [], info.value
    while err is not None:
        causes.append(err)
        err = err.__cause__
    assert any(isinstance(e, XRayReadError) and "broken.png" in str(e) for e in causes)
