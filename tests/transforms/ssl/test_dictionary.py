"""Tests for TwoViewd, the dictionary two-view transform, alone and in a MONAI Dataset/DataLoader."""

from __future__ import annotations

import pytest
import torch
from monai.data import DataLoader, Dataset, MetaTensor
from monai.transforms import Compose, EnsureTyped

from monai_moco.transforms.ssl import TwoViewd, cxr_ssl_augmentation


@pytest.mark.parametrize("delete_original", [False, True])
def test_writes_view_keys(delete_original: bool) -> None:
    t = TwoViewd("image", cxr_ssl_augmentation(spatial_size=32), delete_original=delete_original)
    out = t.set_random_state(seed=0)({"image": torch.rand(1, 48, 48), "label": 1})
    assert out["view1"].shape == out["view2"].shape == (1, 32, 32)
    assert out["label"] == 1
    assert ("image" in out) != delete_original
    assert not torch.equal(out["view1"], out["view2"])


def test_custom_view_keys_and_missing_key() -> None:
    t = TwoViewd("img", cxr_ssl_augmentation(spatial_size=16), view_keys=("q", "k"), allow_missing_keys=True)
    assert set(t({"img": torch.rand(1, 16, 16)})) == {"img", "q", "k"}
    assert t({"other": 0}) == {"other": 0}
    with pytest.raises(KeyError):
        TwoViewd("img", cxr_ssl_augmentation(spatial_size=16))({"other": 0})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"keys": ("a", "b")}, "exactly one image key"),
        ({"keys": "a", "view_keys": ("v", "v")}, "two distinct keys"),
        ({"keys": "a", "view_keys": ("v1",)}, "two distinct keys"),
    ],
)
def test_rejects_bad_keys(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TwoViewd(transform=cxr_ssl_augmentation(spatial_size=16), **kwargs)


def test_seed_propagates() -> None:
    data = {"image": torch.rand(1, 64, 64)}

    def run(seed: int) -> dict:
        return TwoViewd("image", cxr_ssl_augmentation(spatial_size=48)).set_random_state(seed=seed)(data)

    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a["view1"], b["view1"]) and torch.equal(a["view2"], b["view2"])
    assert not torch.equal(a["view1"], c["view1"])


def test_dataset_and_loader_on_real_radiographs(kermany_images: torch.Tensor) -> None:
    items = [{"image": MetaTensor(img), "label": i % 2} for i, img in enumerate(kermany_images[:4])]
    pipeline = Compose(
        [
            EnsureTyped(keys="image"),
            TwoViewd("image", cxr_ssl_augmentation(spatial_size=96), delete_original=True, track_meta=False),
        ]
    ).set_random_state(seed=0)
    batch = next(iter(DataLoader(Dataset(items, transform=pipeline), batch_size=4, num_workers=0)))
    assert batch["view1"].shape == batch["view2"].shape == (4, 1, 96, 96)
    assert "image" not in batch
    assert ((batch["view1"] - batch["view2"]).abs().mean(dim=(1, 2, 3)) > 0.01).all()
    assert float(batch["view1"].min()) >= 0.0 and float(batch["view1"].max()) <= 1.0
