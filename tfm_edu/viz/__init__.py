"""Drawing only: views take arrays (or `tfm_edu.maps.AttentionMaps`) plus labels and return a
plotly or matplotlib figure; explorers are widgets assembled from the views on one small base
(`explorer.Explorer`). Nothing here trains or loads a model. Heavy libraries (plotly,
matplotlib, ipywidgets, torch) load on first use, so importing `tfm_edu.viz` is cheap.

Every notebook imports its views from here: `from tfm_edu.viz import attention_heatmap`.
"""

from tfm_edu.viz.attention_explorer import AttentionExplorer  # chapters 1, 5-7
from tfm_edu.viz.cost_views import scaling_figure  # chapter 11
from tfm_edu.viz.diagrams import (  # chapters 4-6, 8: the architectures as block diagrams
    bert_diagram,
    decoder_layer_diagram,
    encoder_layer_diagram,
    norm_placement_diagram,
    seq2seq_diagram,
    vit_diagram,
)
from tfm_edu.viz.distill_explorer import DarkKnowledgeExplorer  # chapter 10
from tfm_edu.viz.distill_views import (  # chapter 10
    distillation_curve_figure,
    similarity_scatter,
    soft_targets_figure,
)
from tfm_edu.viz.generation_explorer import GenerationExplorer  # chapter 9
from tfm_edu.viz.generation_views import next_token_figure  # chapter 9
from tfm_edu.viz.heatmaps import (  # chapters 1-7
    attention_grid,
    attention_heatmap,
    mask_heatmap,
    value_heatmap,  # chapters 6-7: matrices that are not attention
)
from tfm_edu.viz.induction_views import phase_change_figure  # chapter 9
from tfm_edu.viz.length_views import length_generalisation_figure  # chapter 3
from tfm_edu.viz.positional_explorer import PositionalEncodingExplorer  # chapter 3
from tfm_edu.viz.positional_views import encoding_heatmap, encoding_waves, similarity_by_offset
from tfm_edu.viz.pruning_views import head_importance_figure, pruning_curve_figure  # chapter 11
from tfm_edu.viz.quantize_explorer import WeightOutliersExplorer  # chapter 11
from tfm_edu.viz.quantize_views import weight_outliers_figure  # chapter 11
from tfm_edu.viz.shape_tracer import ShapeTracer  # chapters 4-8
from tfm_edu.viz.training import (  # chapters 4-9
    plot_curves,
    plot_history,
    plot_per_layer,
    plot_schedule,
    smooth,
)
from tfm_edu.viz.vit_explorer import ViTAttentionExplorer  # chapter 8
from tfm_edu.viz.vit_views import (  # chapter 8
    attention_overlay,
    cls_attention_figure,
    confusion_figure,
    examples_figure,
    overlay_gallery,
    patch_grid,
    patches_figure,
    position_similarity_figure,
)

# Other chapters add their views and explorers above, in ruff's sorted order.

__all__ = [
    "scaling_figure",
    "phase_change_figure",
    "head_importance_figure",
    "pruning_curve_figure",
    "WeightOutliersExplorer",
    "weight_outliers_figure",
    "AttentionExplorer",
    "DarkKnowledgeExplorer",
    "GenerationExplorer",
    "PositionalEncodingExplorer",
    "ShapeTracer",
    "ViTAttentionExplorer",
    "attention_grid",
    "attention_heatmap",
    "attention_overlay",
    "cls_attention_figure",
    "confusion_figure",
    "distillation_curve_figure",
    "encoding_heatmap",
    "encoding_waves",
    "examples_figure",
    "length_generalisation_figure",
    "mask_heatmap",
    "next_token_figure",
    "overlay_gallery",
    "patch_grid",
    "patches_figure",
    "plot_curves",
    "plot_history",
    "plot_per_layer",
    "plot_schedule",
    "position_similarity_figure",
    "similarity_by_offset",
    "similarity_scatter",
    "smooth",
    "soft_targets_figure",
    "value_heatmap",
    "bert_diagram",
    "decoder_layer_diagram",
    "encoder_layer_diagram",
    "norm_placement_diagram",
    "seq2seq_diagram",
    "vit_diagram",
]
