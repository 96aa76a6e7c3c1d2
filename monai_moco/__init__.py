"""monai_moco: self-supervised contrastive pretraining (MoCo-v2, SimCLR) for chest X-rays, as a MONAI plugin."""

from __future__ import annotations

__version__ = "0.1.0"
