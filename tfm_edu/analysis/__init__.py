"""Computing on trained models: what their attention does, what they learned, how well they do.

Every function takes a model (and its tokenizer) or arrays and returns numbers, arrays or
`tfm_edu.maps.AttentionMaps`; nothing here loads a checkpoint or draws (`tfm_edu.pretrained`
loads, `tfm_edu.viz` draws).

- `ablation`   ch 6-7: `ablate_heads`, switching heads off inside a `with` block, and
               `single_head_ablations`, the effect of each head switched off in turn
- `rollout`    ch 8: attention rollout through a ViT, [CLS] attention per head
- `shapes`     ch 4-8: every tensor's shape through a model of the course (`trace_shapes`)
- `positions`  ch 3 and 8: RoPE's rotated copies, similarity of learned position vectors,
               accuracy of the shift task by length and by position (length generalisation)
- `probes`     ch 6-7: BERT attention maps for the explorer, `attention_to` (optionally
               without [CLS]/[SEP]), `compare_attention` over many sentences, head statistics,
               norm-weighted attention
- `masked_lm`  ch 6: what a masked LM learned (masked accuracy, fill-mask, agreement, polarity)
- `sentiment`  ch 6: classifier probabilities, the bag-of-words baseline, accuracy per kind of
               sentence, attention to the negator and to the second clause
- `metrics`    exact match of a translator, predictions and accuracy of a classifier,
               binary-classification metrics
- `generation` ch 9: a character GPT's next-character distribution step by step (raw, after
               temperature, kept by top-k / top-p, renormalised: `next_token_table`), what the
               last character attends to, prompts checked against the context and alphabet,
               sampling through `tfm_edu.decode.generate`
- `language`   ch 9: a language model's loss over a whole text (`corpus_loss`), in nats,
               bits per character and perplexity; whether this Python's help texts are the
               ones a model was trained on
- `induction`  ch 9: repeated random strings, loss by position, previous-token and induction
               scores per head (Olsson et al., 2022)
- `date_notes` ch 5: whether a text is a date the translator was trained on, and the note the
               explorer shows when its output is made up

- `similarity` ch 10: a student's sentence embeddings against its teacher's: Spearman
               correlation of their pairwise cosine similarities, nearest-neighbour agreement

(`language`, `induction` and `similarity` are imported from their modules:
`from tfm_edu.analysis.language import corpus_loss`.)
"""

from tfm_edu.analysis.ablation import ablate_heads, attention_layers, single_head_ablations
from tfm_edu.analysis.date_notes import date_output_note, reads_as_date, valid_iso_date
from tfm_edu.analysis.generation import (
    NextTokenTable,
    PromptCheck,
    check_prompt,
    display_char,
    generate_text,
    last_position_attention,
    next_token_table,
    sample_next,
    token_label,
)
from tfm_edu.analysis.masked_lm import (
    agreement_accuracy,
    fill_mask,
    masked_accuracy,
    polarity_accuracy,
)
from tfm_edu.analysis.metrics import accuracy, classification_metrics, exact_match, predict
from tfm_edu.analysis.positions import (
    position_similarity,
    rotated_copies,
    shift_accuracy_by_length,
    shift_accuracy_by_position,
    similarity_by_distance,
)
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
from tfm_edu.analysis.shapes import ShapeConfig, ShapeTrace, shape_symbols, trace_shapes

__all__ = [
    "MAX_TOKENS",
    "SPECIAL_TOKENS",
    "AttentionComparison",
    "AttentionTo",
    "NextTokenTable",
    "PromptCheck",
    "ShapeConfig",
    "ShapeTrace",
    "ablate_heads",
    "accuracy",
    "accuracy_by_kind",
    "agreement_accuracy",
    "attention_layers",
    "attention_rollout",
    "attention_to",
    "attention_to_negator",
    "attention_to_second_clause",
    "bag_of_words_probabilities",
    "bert_attention",
    "bert_attention_maps",
    "check_prompt",
    "classification_metrics",
    "cls_attention",
    "compare_attention",
    "date_output_note",
    "display_char",
    "exact_match",
    "fill_mask",
    "generate_text",
    "head_statistics",
    "last_position_attention",
    "masked_accuracy",
    "next_token_table",
    "norm_weighted_maps",
    "polarity_accuracy",
    "position_similarity",
    "predict",
    "reads_as_date",
    "rotated_copies",
    "sample_next",
    "sentiment_probabilities",
    "shift_accuracy_by_length",
    "shift_accuracy_by_position",
    "shape_symbols",
    "single_head_ablations",
    "similarity_by_distance",
    "trace_shapes",
    "token_label",
    "valid_iso_date",
    "without_special",
]
