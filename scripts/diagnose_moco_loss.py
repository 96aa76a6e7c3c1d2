"""Is a rising MoCo loss the queue becoming consistent, or the representation getting worse? (JSON lines on stdout)

For each checkpoint of a MoCo bundle run, the same queries are scored against the checkpoint's stored queue and against
keys encoded now from other images (:func:`monai_moco.evaluation.diagnostics.queue_consistency`). The network, views
and temperature come from the bundle's own config, so pass the config files the run used.

Example::

    python scripts/diagnose_moco_loss.py \\
        --config_file bundles/moco_resnet50/train.json bundles/moco_resnet50/cpu_study.json \\
        --checkpoints runs/moco_resnet50/checkpoints/checkpoint_epoch=*.pt --images 2048
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Score every checkpoint; print one JSON line each.

    Args:
        argv: command-line arguments (see ``--help``).

    Returns:
        the rows printed.
    """
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config_file", nargs="+", required=True, help="the run's bundle config files, in order")
    p.add_argument("--checkpoints", nargs="+", required=True)
    p.add_argument("--images", type=int, default=2048, help="training images scored (in batches of the run's size)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)

    import torch
    from monai.bundle import ConfigParser
    from monai.data import DataLoader

    from monai_moco.data import make_dataset
    from monai_moco.evaluation.diagnostics import queue_consistency

    parser = ConfigParser()
    parser.read_config(args.config_file)
    parser["max_images"] = args.images
    parser["device"] = f"$torch.device('{args.device}')"
    parser.parse()
    dataset = make_dataset(parser.get_parsed_content("train#datalist"), parser.get_parsed_content("train#preprocessing"),
                           cache="none")
    batch = int(parser.get_parsed_content("batch_size"))
    views = parser.get_parsed_content("train#view_transform")
    temperature = float(parser.get_parsed_content("temperature"))
    rows = []
    for path in sorted(args.checkpoints, key=lambda s: int((re.findall(r"\d+", s) or ["0"])[-1])):
        state = torch.load(path, map_location=args.device, weights_only=True)
        network = parser.get_parsed_content("network_def", instantiate=True, lazy=False).to(args.device)
        momentum = parser.get_parsed_content("network_def", instantiate=True, lazy=False).to(args.device)
        network.load_state_dict(state["network"])
        momentum.load_state_dict(state["momentum_network"])
        views.manual_seed(0)  # the same views for every checkpoint
        pairs = []
        for item in DataLoader(dataset, batch_size=batch, shuffle=False, drop_last=True):
            pairs.append(views(item["image"].to(args.device)))
        report = queue_consistency(network, momentum, state["queue"]["keys"], pairs, temperature)
        row = {"checkpoint": path, "epoch": state.get("trainer", {}).get("epoch"), **report}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
