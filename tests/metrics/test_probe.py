"""Tests for monai_moco.metrics.probe: frozen-feature extraction and the logistic linear probe."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from torch import nn

from monai_moco.data import class_folder_datalist
from monai_moco.metrics import auc_with_ci, extract_features, image_label_batch, labels_1d, logistic_probe
from monai_moco.networks.blocks import MoCoV2ProjectionHead
from monai_moco.networks.nets import ContrastiveEncoder, ConvStemViT
from monai_moco.transforms import LoadXRayd


def _clusters(n: int, dim: int = 8, classes: int = 2, seed: int = 0):
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(7)) * 2
    labels = torch.arange(n) % classes
    return centres[labels] + 0.5 * torch.randn(n, dim, generator=torch.Generator().manual_seed(seed)), labels


class _BNNet(nn.Module):
    """Pooled features through BatchNorm, so eval vs train mode changes the output."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x)


def test_extract_features_eval_mode_no_grad_and_mode_restored():
    net = _BNNet().train()
    net.bn.running_mean.fill_(1.0)
    x = torch.randn(10, 4)
    loader = [(x[:6], torch.zeros(6, dtype=torch.long)), (x[6:], torch.ones(4, 1, dtype=torch.long))]
    feats, labels = extract_features(net, loader)
    assert net.training, "train mode must be restored"
    assert feats.shape == (10, 4) and feats.dtype == torch.float32 and not feats.requires_grad
    torch.testing.assert_close(feats, net.eval()(x).detach())  # running statistics used, not batch statistics
    np.testing.assert_array_equal(labels, [0] * 6 + [1] * 4)


@pytest.mark.parametrize("use_feature_fn", [False, True])
def test_extract_features_prefers_feature_fn_then_embed(use_feature_fn):
    class Embedder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(1))

        def embed(self, x):
            return x * 2

        def forward(self, x):
            raise AssertionError("forward must not be used when embed exists")

    x = torch.randn(5, 1, 2, 2)
    loader = [{"image": x, "label": torch.tensor([0, 1, 0, 1, 1])}]
    fn = (lambda net, images: images.mean(dim=(1, 2, 3), keepdim=True)) if use_feature_fn else None
    feats, _ = extract_features(Embedder(), loader, feature_fn=fn)
    expected = x.mean(dim=(1, 2, 3))[:, None] if use_feature_fn else (x * 2).flatten(1)
    torch.testing.assert_close(feats, expected)


def test_extract_features_errors():
    with pytest.raises(ValueError, match="no batches"):
        extract_features(nn.Identity(), [])
    with pytest.raises(KeyError, match="label"):
        image_label_batch({"image": torch.zeros(1)})
    with pytest.raises(ValueError, match="B x 1"):
        labels_1d(np.zeros((2, 2, 2)))
    np.testing.assert_array_equal(labels_1d(torch.tensor([[0, 1], [1, 0]])), [1, 0])


def test_logistic_probe_matches_sklearn_on_normalised_features():
    train_x, train_y = _clusters(80)
    test_x, test_y = _clusters(40, seed=1)
    probs = logistic_probe(train_x, train_y, test_x)
    assert probs.shape == (40, 2)
    np.testing.assert_allclose(probs.sum(1), 1.0)
    norm = lambda a: (a / a.norm(dim=1, keepdim=True)).double().numpy()  # noqa: E731
    ref = LogisticRegression(max_iter=1000).fit(norm(train_x), train_y.numpy()).predict_proba(norm(test_x))
    np.testing.assert_allclose(probs, ref, atol=1e-6)
    assert roc_auc_score(test_y.numpy(), probs[:, 1]) > 0.99
    raw = logistic_probe(train_x.numpy(), train_y.numpy(), test_x.numpy(), normalize=False, c=0.1)
    assert raw.shape == (40, 2) and not np.allclose(raw, probs)


def test_logistic_probe_classes_and_errors():
    train_x, train_y = _clusters(30, classes=3)
    probs = logistic_probe(train_x, train_y, train_x[:5], num_classes=4)
    assert probs.shape == (5, 4) and np.all(probs[:, 3] == 0)  # class 3 never seen
    one = logistic_probe(train_x, np.ones(30, dtype=int), train_x[:3])
    np.testing.assert_array_equal(one, [[0.0, 1.0]] * 3)
    with pytest.raises(ValueError, match="N x F"):
        logistic_probe(train_x, train_y, train_x[:, :2])
    with pytest.raises(ValueError, match="labels"):
        logistic_probe(train_x, train_y[:10], train_x)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        logistic_probe(train_x, train_y, train_x, num_classes=2)


def test_probe_on_real_kermany_radiographs(kermany_dir):
    """A frozen random tiny ConvStemViT on real radiographs: features, probe and bootstrap AUC fit together."""
    load = LoadXRayd("image", spatial_size=32)

    def items(split: str, per_class: int) -> list[dict]:
        data = class_folder_datalist(kermany_dir / split)
        picked = [d for c in (0, 1) for d in [d for d in data if d["label"] == c][:per_class]]
        return [load(d) for d in picked]

    loader = lambda data: torch.utils.data.DataLoader(data, batch_size=16)  # noqa: E731
    torch.manual_seed(0)
    backbone = ConvStemViT(img_size=32, patch_size=8, hidden_size=32, mlp_dim=64, num_layers=2, num_heads=2)
    encoder = ContrastiveEncoder(backbone, MoCoV2ProjectionHead(32, 32, 8))
    train_x, train_y = extract_features(encoder, loader(items("train", 20)))
    test_x, test_y = extract_features(encoder, loader(items("test", 15)))
    assert train_x.shape == (40, 32) and test_x.shape == (30, 32) and torch.isfinite(train_x).all()
    np.testing.assert_array_equal(np.bincount(test_y), [15, 15])
    res = auc_with_ci(test_y, logistic_probe(train_x, train_y, test_x)[:, 1], n_bootstrap=200)
    assert 0.0 <= res["ci_low"] <= res["value"] <= res["ci_high"] <= 1.0
