"""Score heat-maps against lung boxes: mass inside the boxes and the pointing game, pretrained vs random init.

For a top-K pretraining checkpoint (``--method topk``: the pooling weights of its ``TopKPatchHead``) or a ResNet
checkpoint (``--method gradcam``: Grad-CAM of the pneumonia logit after a logistic probe is fitted on Kermany), and
for the same architecture at random init, writes ``scores.csv`` (per image), ``summary.json`` (means with patient
bootstrap intervals, chance levels, the paired difference) and optionally ``overlays.png``. The logic lives in
:mod:`monai_moco.evaluation.heatmap_faithfulness`; ``docs/heatmap_faithfulness.md`` has the results.

Example::

    python scripts/score_heatmaps.py --method topk --checkpoint runs/heatmaps/moco_vit_topk/checkpoints/last.pt \\
        --patch_size 8 --topk 16 --output_dir runs/heatmap_faithfulness/topk --overlays 0 40 80 120
    python scripts/score_heatmaps.py --method gradcam --checkpoint runs/transfer_study/pretrain/moco/checkpoints/last.pt \\
        --output_dir runs/heatmap_faithfulness/gradcam_layer4
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from typing import Any


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse the arguments, score, print the summary as JSON.

    Args:
        argv: command-line arguments (see ``--help``).

    Returns:
        the summary written to ``summary.json``.
    """
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--method", required=True, choices=("topk", "gradcam"))
    p.add_argument("--checkpoint", default="", help="pretrained weights; empty = score random init only")
    p.add_argument("--no_random", action="store_true", help="do not score the random-init model")
    p.add_argument("--annotation_file", default="../shared/data/cxr_lung_boxes/boxes_coco.json")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--image_size", type=int, default=64, help="letterboxed input side, as in pretraining")
    p.add_argument("--patch_size", type=int, default=8, help="topk: ViT patch side")
    p.add_argument("--topk", type=int, default=16, help="topk: K of the head")
    p.add_argument("--vit_preset", default="tiny", help="topk: ConvStemViT width preset")
    p.add_argument("--embedding_dim", type=int, default=128, help="topk: projection width of the bundle")
    p.add_argument("--dataset_dir", default="data/kermany", help="gradcam: labelled data of the probe")
    p.add_argument("--class_index", type=int, default=1, help="gradcam: logit to explain (1 = pneumonia)")
    p.add_argument("--gradcam_layer", default="layer4", choices=("layer1", "layer2", "layer3", "layer4"))
    p.add_argument("--max_images", type=int, default=0, help="0 = every box image")
    p.add_argument("--probe_max_images", type=int, default=0, help="gradcam: 0 = the whole probe dataset")
    p.add_argument("--n_bootstrap", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overlays", type=int, nargs="*", default=[], help="box-image rows drawn in overlays.png")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(name)s - %(message)s")

    from monai_moco.evaluation.heatmap_faithfulness import run_heatmap_scoring

    summary = run_heatmap_scoring(
        args.method, args.annotation_file, args.output_dir, checkpoint=args.checkpoint or None,
        random_init=not args.no_random, image_size=args.image_size, patch_size=args.patch_size, topk=args.topk,
        vit_preset=args.vit_preset, embedding_dim=args.embedding_dim, dataset_dir=args.dataset_dir,
        class_index=args.class_index, gradcam_layer=args.gradcam_layer, max_images=args.max_images,
        probe_max_images=args.probe_max_images, n_bootstrap=args.n_bootstrap, seed=args.seed,
        overlays=args.overlays,
    )
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
