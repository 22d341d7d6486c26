"""Drawing attention and positions: views that take arrays + token labels and return figures,
and the widgets built from them. Heavy libraries (plotly, matplotlib, ipywidgets, torch) load
on first use, so importing `tfm_edu.viz` is cheap.
"""

from tfm_edu.viz.heatmaps import attention_grid, attention_heatmap, mask_heatmap
from tfm_edu.viz.maps import AttentionMaps, as_attention_maps
from tfm_edu.viz.positional_views import encoding_heatmap, encoding_waves, similarity_by_offset
from tfm_edu.viz.probes import attention_to, bert_attention  # chapter 7: BERT probes
from tfm_edu.viz.rollout import attention_rollout  # chapter 8: ViT attention rollout
from tfm_edu.viz.training import plot_history, plot_per_layer, plot_schedule  # chapters 4-5
from tfm_edu.viz.widgets import AttentionExplorer, PositionalEncodingExplorer

# Other chapters add their views below (one line each).

__all__ = [
    "AttentionExplorer",
    "AttentionMaps",
    "PositionalEncodingExplorer",
    "as_attention_maps",
    "attention_grid",
    "attention_heatmap",
    "attention_rollout",
    "attention_to",
    "bert_attention",
    "encoding_heatmap",
    "encoding_waves",
    "mask_heatmap",
    "plot_history",
    "plot_per_layer",
    "plot_schedule",
    "similarity_by_offset",
]
