"""Export the clean backbone of a pretraining checkpoint, or convert to/from facebookresearch/MoCo-CXR checkpoints.

A thin command line over :func:`monai_moco.networks.weights.export_backbone` (the checkpoint is read with
``torch.load(weights_only=True)``; nothing in it can run code). The output holds the backbone only: no key encoder,
queue, projection or patch head, optimizer or trainer state. With ``--backbone`` the tensors are first loaded with
strict key matching into the model ``monai_moco.networks.nets.build_backbone(--backbone, **--backbone_kwargs)``
builds (a torchvision ResNet, ``timm:<name>``, ``monai:<name>`` or our ConvStemViT), and nothing is written if they
do not fit. Prints one JSON line with the report.

Example::

    # our MoCo/SimCLR checkpoint -> backbone state dict (torchvision ResNet-18 keys, 1 input channel)
    python scripts/export_backbone.py runs/moco_resnet50/checkpoint_final.pt resnet50_moco.pth --backbone resnet50
    # the same backbone in facebookresearch/MoCo-CXR's layout {"state_dict": {"module.encoder_q.*": ...}}
    python scripts/export_backbone.py resnet50_moco.pth resnet50_mococxr.pth.tar --out_format moco
    # import a MoCo-CXR checkpoint (MLP head fc.* and encoder_k dropped)
    python scripts/export_backbone.py mococxr_resnet18.pth.tar resnet18_mococxr.pth --backbone resnet18
    # a ConvStemViT pretrained at 96 px
    python scripts/export_backbone.py runs/moco_vit/checkpoint_final.pt vit.safetensors \\
        --backbone convstem_vit_tiny --backbone_kwargs '{"img_size": 96, "pooling": "none"}'
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from monai_moco.networks.weights import CHECKPOINT_FORMATS, EXPORT_FORMATS, export_backbone


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line arguments.

    Args:
        argv: arguments (default ``sys.argv[1:]``).

    Returns:
        the parsed namespace.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="local checkpoint (.pt/.pth/.pth.tar/.safetensors)")
    parser.add_argument("output", type=Path, help="file to write (.pth, .pth.tar or .safetensors)")
    parser.add_argument("--format", default="auto", choices=CHECKPOINT_FORMATS, help="format of the checkpoint")
    parser.add_argument("--out_format", default="state_dict", choices=EXPORT_FORMATS,
                        help="state_dict: the backbone's own keys; moco: {'state_dict': {'module.encoder_q.*'}}")
    parser.add_argument("--backbone", default=None,
                        help="build_backbone name to verify a strict load into, e.g. resnet18, convstem_vit_tiny")
    parser.add_argument("--in_channels", type=int, default=1, help="input channels of the --backbone model")
    parser.add_argument("--backbone_kwargs", type=json.loads, default={},
                        help='JSON keyword arguments of build_backbone, e.g. \'{"img_size": 96}\'')
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Export and print the report as one JSON line.

    Args:
        argv: command-line arguments.

    Returns:
        the exit code (0 on success, 1 with the error on stderr).
    """
    args = parse_args(argv)
    try:
        model = None
        if args.backbone:
            from monai_moco.networks.nets import build_backbone

            model = build_backbone(args.backbone, in_channels=args.in_channels, **args.backbone_kwargs)
        report = export_backbone(args.checkpoint, args.output, args.format, args.out_format, backbone=model)
    except (OSError, ValueError, RuntimeError) as err:
        print(f"export_backbone: {err}", file=sys.stderr)
        return 1
    report["dropped_keys"] = len(report.pop("dropped_keys"))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
