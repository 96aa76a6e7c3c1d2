"""Tests of the study's frozen-feature runs (``monai_moco.evaluation.study``) on a small capped Kermany copy: each
draw's rows are exactly the classifier bundle's subset, kNN and linear records score what they say, and validation-only
scoring never reads the test split."""

from __future__ import annotations

import numpy as np
import pytest

from monai_moco.data import transfer_datalists
from monai_moco.evaluation.study import draw_features, embed_transfer_splits, knn_records, linear_probe_records

MAX_IMAGES = 160


@pytest.fixture(scope="module")
def feats(kermany_dir):
    return embed_transfer_splits("resnet18", None, kermany_dir, 32, max_images=MAX_IMAGES, cache="none")


@pytest.mark.parametrize("fraction, draw", [(1.0, 0), (0.25, 0), (0.25, 1)])
def test_draw_features_are_the_bundle_subset(feats, kermany_dir, fraction, draw):
    items = transfer_datalists(kermany_dir, fraction, draw, max_images=MAX_IMAGES)["train"]
    train = draw_features(feats, kermany_dir, fraction, draw, max_images=MAX_IMAGES)
    assert train.files == [str(it["image"]) for it in items]
    assert np.array_equal(train.labels, np.asarray([it["label"] for it in items]))
    assert train.features.shape == (len(items), feats.pool.features.shape[1])


@pytest.mark.parametrize("backbone, kwargs", [("resnet18", None), ("convstem_vit_tiny", {"img_size": 32})])
def test_random_init_features_do_not_depend_on_the_callers_random_state(kermany_dir, backbone, kwargs):
    import torch

    def embed(seed: int) -> np.ndarray:
        return embed_transfer_splits(backbone, None, kermany_dir, 32, seed=seed, max_images=48, cache="none",
                                     backbone_kwargs=kwargs).test.features  # fmt: skip

    torch.manual_seed(1)
    first = embed(0)
    after = torch.rand(3)  # the caller's stream is untouched by the embedding
    torch.manual_seed(2)
    torch.rand(100)
    assert np.array_equal(embed(0), first)
    torch.manual_seed(1)
    assert torch.equal(torch.rand(3), after)
    assert not np.array_equal(embed(1), first)  # the seed does draw the initialisation


def test_draw_features_refuses_other_settings(feats, kermany_dir):
    with pytest.raises(ValueError, match="not in the embedded training pool"):
        draw_features(feats, kermany_dir, 1.0, 0, max_images=MAX_IMAGES + 40)


def test_knn_records(feats, kermany_dir):
    records = knn_records(feats, kermany_dir, [1.0, 0.25], draws=2, max_images=MAX_IMAGES, n_bootstrap=50)
    assert [(r["fraction"], r["draw"]) for r in records] == [(1.0, 0), (1.0, 1), (0.25, 0), (0.25, 1)]
    for r in records:
        assert r["mode"] == "knn" and r["n_test"] == len(feats.test)
        assert 0.0 <= r["ci_low"] <= r["auc"] <= r["ci_high"] <= 1.0
    assert records[2]["n_train"] < records[0]["n_train"]


def test_linear_probe_records_on_val_never_reads_test(feats, kermany_dir):
    blind = type(feats)(feats.pool, feats.val, feats.test, feats.pool_rows)
    blind.test = None  # any use of the test split would fail
    (rec,) = linear_probe_records(blind, kermany_dir, [1.0], 1, max_images=MAX_IMAGES, eval_split="val",
                                  n_bootstrap=50)
    assert rec["eval_split"] == "val" and rec["n_val"] + rec["n_test"] == len(feats.val)
    (test_rec,) = linear_probe_records(feats, kermany_dir, [1.0], 1, max_images=MAX_IMAGES, n_bootstrap=50)
    assert test_rec["n_test"] == len(feats.test) and test_rec["n_val"] == len(feats.val)
    with pytest.raises(ValueError, match="eval_split"):
        linear_probe_records(feats, kermany_dir, [1.0], 1, max_images=MAX_IMAGES, eval_split="train")
