"""``ckpt_export`` of a ``cpu.json`` classifier embeds what was trained (ResNet-18, 64 px, the dataset's class
names), so the deploy app runs it at its real size without ``--image-size``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser, ckpt_export

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "cxr_classifier"


def _training_start(kermany_dir: Path, output_dir: Path, **overrides: object) -> ConfigParser:
    """The cpu.json training config after its ``initialize`` steps (what ``monai.bundle run`` does before training)."""
    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "train.json"), str(BUNDLE / "cpu.json")])
    parser.update({"dataset_dir": str(kermany_dir), "output_dir": str(output_dir), "max_images": 64, **overrides})
    for i in range(len(parser["initialize"])):
        parser.get_parsed_content(f"initialize#{i}")
    return parser


@pytest.mark.parametrize("overrides", [{}, {"image_size": 96}], ids=["cpu", "96px"])
def test_ckpt_export_with_the_training_args_embeds_the_trained_network(kermany_dir, tmp_path, overrides):
    parser = _training_start(kermany_dir, tmp_path, **overrides)
    args_file = tmp_path / "models" / "export_args.json"
    trained = json.loads(args_file.read_text())
    size = overrides.get("image_size", 64)
    assert trained["backbone"] == overrides.get("backbone", "resnet18") and trained["image_size"] == size
    class_names = parser.get_parsed_content("class_names")
    assert trained["class_names"] == class_names and len(class_names) == 2

    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def")
    torch.save({"model": network.state_dict()}, tmp_path / "models" / "model.pt")
    model_ts = tmp_path / "models" / "model.ts"
    ckpt_export(  # the README command, in-process: no --backbone/--image_size, only --args_file
        net_id="network_def", args_file=str(args_file), filepath=str(model_ts),
        ckpt_file=str(tmp_path / "models" / "model.pt"), meta_file=str(BUNDLE / "metadata.json"),
        config_file=str(BUNDLE / "inference.json"), key_in_ckpt="model",
    )

    from monai_moco.deploy import ExportedClassifier

    classifier = ExportedClassifier.load(model_ts)
    assert classifier.image_size == (size, size) and classifier.class_names == class_names
    assert classifier.activation == "softmax" and classifier.name == "cxr_classifier"
    fmt = classifier.metadata["network_data_format"]
    assert fmt["inputs"]["image"]["spatial_shape"] == [size, size]
    assert fmt["outputs"]["pred"]["channel_def"] == {str(i): c for i, c in enumerate(class_names)}
    x = torch.rand(2, 1, size, size)
    with torch.no_grad():
        torch.testing.assert_close(classifier.logits(x), network.eval()(x), rtol=1e-5, atol=1e-5)


def test_multilabel_training_exports_a_sigmoid_model(kermany_dir, tmp_path):
    parser = _training_start(kermany_dir, tmp_path, task="multilabel", label_columns=["label"],
                             class_names=["pneumonia"])
    trained = json.loads((tmp_path / "models" / "export_args.json").read_text())
    assert trained["task"] == "multilabel" and trained["_meta_::multilabel"] is True
    assert parser.get_parsed_content("num_classes") == 1
