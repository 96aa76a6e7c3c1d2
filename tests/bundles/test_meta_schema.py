"""Every bundle's ``metadata.json`` against ``bundles/meta_schema.json`` (written from the MONAI Bundle specification),
through MONAI's own ``verify_metadata`` command; and the schema really rejects what the specification forbids."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest

jsonschema = pytest.importorskip("jsonschema")  # in the dev extra; verify_metadata needs it too


def test_verify_metadata_every_bundle(bundles, bundle_name):
    """``python -m monai.bundle verify_metadata`` passes for each folder under bundles/ (discovered)."""
    cmd = [sys.executable, "-m", "monai.bundle", "verify_metadata", "--meta_file",
           f"bundles/{bundle_name}/metadata.json", "--filepath", "bundles/meta_schema.json"]
    proc = subprocess.run(cmd, cwd=bundles.root, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "metadata is verified with no error" in out, out[-4000:]


def _schema(bundles) -> dict:
    return json.loads((bundles.dir / "meta_schema.json").read_text())


def _example(bundles) -> dict:
    return json.loads((bundles.dir / "moco_resnet50" / "metadata.json").read_text())


def test_schema_is_valid_draft7_and_accepts_the_example(bundles):
    schema = _schema(bundles)
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(_example(bundles), schema)


@pytest.mark.parametrize(
    "mutate, where",
    [
        (lambda m: m.pop("network_data_format"), "network_data_format"),
        (lambda m: m.pop("monai_version"), "monai_version"),
        (lambda m: m.pop("required_packages_version"), "required_packages_version"),
        (lambda m: m.update(version="first"), "version"),
        (lambda m: m["network_data_format"].pop("outputs"), "outputs"),
        (lambda m: m["network_data_format"]["inputs"]["image"].pop("dtype"), "dtype"),
        (lambda m: m["network_data_format"]["inputs"]["image"].update(value_range=[0]), "value_range"),
        (lambda m: m["network_data_format"]["inputs"]["image"].update(spatial_shape=[0, 224]), "spatial_shape"),
        (lambda m: m["network_data_format"]["inputs"]["image"].update(is_patch_data="false"), "is_patch_data"),
        (lambda m: m["network_data_format"]["inputs"]["image"].update(channel_def={"zero": "image"}), "channel_def"),
        (lambda m: m["network_data_format"]["inputs"]["image"].update(num_channels=1.5), "num_channels"),
    ],
)
def test_schema_rejects_spec_violations(bundles, mutate, where):
    meta = copy.deepcopy(_example(bundles))
    mutate(meta)
    with pytest.raises(jsonschema.ValidationError) as err:
        jsonschema.validate(meta, _schema(bundles))
    # the failing key is on the error's path (or named in its message when the key itself is missing)
    assert where in [str(p) for p in err.value.absolute_path] or where in str(err.value), str(err.value)


def test_schema_accepts_spec_shapes(bundles):
    """Expressions in spatial_shape, an unknown value range, extra user keys and further *_data_format sections."""
    meta = copy.deepcopy(_example(bundles))
    image = meta["network_data_format"]["inputs"]["image"]
    image.update(spatial_shape=["16*n", "16*n"], value_range=[])
    meta["my_extra_key"] = {"anything": 1}
    meta["export_data_format"] = copy.deepcopy(meta["network_data_format"])
    jsonschema.validate(meta, _schema(bundles))
    meta["export_data_format"]["inputs"]["image"].pop("format")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(meta, _schema(bundles))
