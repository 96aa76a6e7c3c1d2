"""Pictures people would rather look at than read: heat-map overlays, AUC-vs-label-fraction plots.
"""

from __future__ import annotations

from .heatmap import HeatMap as HeatMap
from .heatmap import classifier_heatmap as classifier_heatmap
from .heatmap import draw_boxes as draw_boxes
from .heatmap import gradcam_maps as gradcam_maps
from .heatmap import heatmap_overlay as heatmap_overlay
from .heatmap import patch_score_map as patch_score_map
from .heatmap import patch_scores as patch_scores
from .heatmap import topk_pooling_weights as topk_pooling_weights
from .heatmap import write_rgb_png as write_rgb_png
from .label_fraction import STRATEGY_COLOURS as STRATEGY_COLOURS
from .label_fraction import plot_label_fraction_curves as plot_label_fraction_curves
from .label_fraction import summarize_transfer_results as summarize_transfer_results
