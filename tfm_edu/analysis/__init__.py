"""Computing on trained models: what their attention does, what they learned, how well they do.

Every function takes a model (and its tokenizer) or arrays and returns numbers, arrays or
`tfm_edu.maps.AttentionMaps`; nothing here loads a checkpoint or draws (`tfm_edu.pretrained`
loads, `tfm_edu.viz` draws).

- `rollout`    ch 8: attention rollout through a ViT, [CLS] attention per head
- `positions`  ch 3 and 8: RoPE's rotated copies, similarity of learned position vectors
- `probes`     ch 6-7: BERT attention maps for the explorer, `attention_to` (optionally
               without [CLS]/[SEP]), `compare_attention` over many sentences, head statistics,
               norm-weighted attention
- `masked_lm`  ch 6: what a masked LM learned (masked accuracy, fill-mask, agreement, polarity)
- `sentiment`  ch 6: classifier probabilities, the bag-of-words baseline, accuracy per kind of
               sentence, attention to the negator and to the second clause
- `metrics`    exact match of a translator, predictions and accuracy of a classifier,
               binary-classification metrics
"""

from tfm_edu.analysis.masked_lm import (
    agreement_accuracy,
    fill_mask,
    masked_accuracy,
    polarity_accuracy,
)
from tfm_edu.analysis.metrics import accuracy, classification_metrics, exact_match, predict
from tfm_edu.analysis.positions import position_similarity, rotated_copies, similarity_by_distance
from tfm_edu.analysis.probes import (
    MAX_TOKENS,
    SPECIAL_TOKENS,
    AttentionComparison,
    AttentionTo,
    attention_to,
    bert_attention,
    bert_attention_maps,
    compare_attention,
    head_statistics,
    norm_weighted_maps,
    without_special,
)
from tfm_edu.analysis.rollout import attention_rollout, cls_attention
from tfm_edu.analysis.sentiment import (
    accuracy_by_kind,
    attention_to_negator,
    attention_to_second_clause,
    bag_of_words_probabilities,
    sentiment_probabilities,
)

__all__ = [
    "MAX_TOKENS",
    "SPECIAL_TOKENS",
    "AttentionComparison",
    "AttentionTo",
    "accuracy",
    "accuracy_by_kind",
    "agreement_accuracy",
    "attention_rollout",
    "attention_to",
    "attention_to_negator",
    "attention_to_second_clause",
    "bag_of_words_probabilities",
    "bert_attention",
    "bert_attention_maps",
    "classification_metrics",
    "cls_attention",
    "compare_attention",
    "exact_match",
    "fill_mask",
    "head_statistics",
    "masked_accuracy",
    "norm_weighted_maps",
    "polarity_accuracy",
    "position_similarity",
    "predict",
    "rotated_copies",
    "sentiment_probabilities",
    "similarity_by_distance",
    "without_special",
]
