#!/usr/bin/env bash
# One command to set up monai_moco for development on a fresh machine:
#   ./scripts/setup.sh
# It creates .venv (override with VENV=...), installs torch/torchvision, monai_moco in editable mode with the
# `dev`, `deploy`, `mlflow` and `onnx` extras, and links the Kermany chest X-ray set into data/ when ../shared/data is
# beside the repo.
#
# TORCH_SPEC picks the torch build. The default is the pair this project is tested with; elsewhere pass what suits your
# machine, e.g. TORCH_SPEC="torch torchvision --index-url https://download.pytorch.org/whl/cpu" ./scripts/setup.sh
# EXTRAS picks the optional extras (default "dev,deploy,mlflow,onnx": tests, linters, the MONAI Deploy app, MLflow
# tracking and ONNX export/inference, whose tests need them; mlflow adds about 0.4 GB, onnx about 0.1 GB); add the
# benchmark peers with EXTRAS="dev,deploy,mlflow,onnx,bench"; the core alone is `pip install -e .`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${VENV:-"$ROOT/.venv"}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}
EXTRAS=${EXTRAS:-dev,deploy,mlflow,onnx}

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating virtual environment $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
echo "[setup] installing $TORCH_SPEC"
# shellcheck disable=SC2086
"${PIP[@]}" install -q $TORCH_SPEC
echo "[setup] installing monai_moco[$EXTRAS] (editable)"
"${PIP[@]}" install -q -e ".[${EXTRAS}]"

# default data location used by the bundles (dataset_dir): data/kermany -> a Kermany-layout folder
mkdir -p "$ROOT/data"
SHARED_KERMANY="$ROOT/../shared/data/kermany_pneumonia_224"
if [ -d "$SHARED_KERMANY" ] && [ ! -e "$ROOT/data/kermany" ]; then
    ln -s "$(cd "$SHARED_KERMANY" && pwd)" "$ROOT/data/kermany"
    echo "[setup] linked data/kermany -> $SHARED_KERMANY"
elif [ ! -e "$ROOT/data/kermany" ]; then
    echo "[setup] no chest X-ray data linked: see README.md, section 'Data', to download the Kermany set into data/kermany"
fi
"$VENV/bin/python" -c "import torch, monai, monai_moco; print(f'[setup] ok: torch {torch.__version__}, monai {monai.__version__}, monai_moco {monai_moco.__version__}')"
