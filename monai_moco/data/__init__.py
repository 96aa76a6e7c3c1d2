"""Dataset factories for the layouts users have, label-fraction splits and decode-once caching; volume datalists.
"""

from __future__ import annotations

from .boxes import COCO_EXTRA_FIELDS, box_datalist_splits, box_split_datalists, coco_box_datalist
from .datalists import (
    IMAGE_EXTENSIONS,
    SPLIT_FOLDER_NAMES,
    UNCERTAIN_POLICIES,
    class_folder_datalist,
    csv_datalist,
    find_images,
    medmnist_datalist,
    unlabeled_datalist,
)
from .dataset import CACHE_MODES, make_dataset
from .probe import fixed_image_batch, probe_datalists
from .splits import (
    datalist_from_splits,
    fraction_splits,
    group_train_val_split,
    label_fraction_split,
    stratum_keys,
)
from .transfer import train_test_datalists, transfer_datalists
from .volumes import VOLUME_EXTENSIONS, volume_datalist

__all__ = [
    "CACHE_MODES",
    "COCO_EXTRA_FIELDS",
    "IMAGE_EXTENSIONS",
    "SPLIT_FOLDER_NAMES",
    "UNCERTAIN_POLICIES",
    "VOLUME_EXTENSIONS",
    "box_datalist_splits",
    "box_split_datalists",
    "class_folder_datalist",
    "coco_box_datalist",
    "csv_datalist",
    "datalist_from_splits",
    "find_images",
    "fixed_image_batch",
    "fraction_splits",
    "group_train_val_split",
    "label_fraction_split",
    "make_dataset",
    "medmnist_datalist",
    "probe_datalists",
    "stratum_keys",
    "train_test_datalists",
    "transfer_datalists",
    "unlabeled_datalist",
    "volume_datalist",
]
