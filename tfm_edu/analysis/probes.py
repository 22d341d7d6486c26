"""Chapter 7's probes: BERT attention maps for the explorer, and measurements of what heads do.

Every function takes the model and its tokenizer (e.g. `tfm_edu.pretrained.load_minilm()`):
this module computes and never loads or draws anything.

- `bert_attention_maps(model, tokenizer, text)`: one sentence (or pair) -> `AttentionMaps`, with a
  notice when the input was truncated; `bert_attention(model, tokenizer)` wraps it as the
  callable `AttentionExplorer` wants. With `a_to_b=True` a pair shows only how the tokens of
  sentence A attend to sentence B (the A->B block of the full map).
- `attention_to(sentence, word, model, tokenizer)`: for every layer and head, the token a chosen
  word attends to most; `exclude_special=True` leaves [CLS] and [SEP] out and rescales the rest
  of each row to sum to 1 (in MiniLM about half of all attention parks on [CLS], which would
  otherwise win most comparisons and say nothing about words).
- `compare_attention(items, model, tokenizer)`: over many sentences, how much attention a word
  gives a target word (the verb's subject) against a control word (a nearer noun), per layer
  and head: a measurement with a control instead of one striking heatmap.
- `head_statistics(maps)`: per layer and head, the share of attention going to [CLS], to [SEP],
  to the token itself, to the previous and to the next token. Clark et al., 2019 ("What does
  BERT look at?") found many heads parking their attention on [SEP] or [CLS], and some heads
  following the previous or next token; measuring beats eyeballing a heatmap.
- `norm_weighted_maps(model, tokenizer, text)`: attention weights times the size of what each key
  actually sends, ||alpha_ij f(x_j)|| (Kobayashi et al., 2020, "Attention is not only a weight"):
  a head can put 90% of its weight on [CLS] while [CLS] sends almost nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from tfm_edu.maps import AttentionMaps

__all__ = [
    "MAX_TOKENS",
    "bert_attention_maps",
    "bert_attention",
    "SPECIAL_TOKENS",
    "AttentionTo",
    "attention_to",
    "without_special",
    "AttentionComparison",
    "compare_attention",
    "head_statistics",
    "norm_weighted_maps",
]

MAX_TOKENS = 128  # longer inputs are truncated (all-MiniLM-L6-v2 was trained on <= 128 tokens)
SPECIAL_TOKENS = ("[CLS]", "[SEP]")  # the delimiters `exclude_special` leaves out as keys


def bert_attention_maps(
    model,
    tokenizer,
    text: str,
    pair: str | None = None,
    max_tokens: int = MAX_TOKENS,
    a_to_b: bool = False,
) -> AttentionMaps:
    """Every layer's and head's attention for one text (or pair), with the tokens.

    Args:
        model: a `tfm_edu.models.bert.BERT`, or a model holding one as `.bert` (the MLM and
            classification models).
        tokenizer: its `WordPiece`.
        text, pair: sentence A and the optional sentence B.
        max_tokens: longer inputs are cut to this many tokens, with a notice saying so.
        a_to_b: for a pair, keep only the rows of sentence A's tokens and the columns of
            sentence B's (what A reads from B); these rows need not sum to 1.

    Returns:
        AttentionMaps with attentions (L, H, T, T), or (L, H, T_A, T_B) when `a_to_b`.
    """
    import torch

    bert = getattr(model, "bert", model)
    if a_to_b and pair is None:
        raise ValueError("a_to_b needs a sentence pair (text and pair)")
    limit = min(max_tokens, bert.config.max_positions)
    encoding = tokenizer.encoding(text, pair, max_length=limit)
    ids = torch.tensor([encoding.ids])  # (1, T)
    types = torch.tensor([encoding.type_ids])  # (1, T)
    device = next(bert.parameters()).device
    with torch.no_grad():
        out = bert(ids.to(device), token_type_ids=types.to(device), return_attention=True)
    attentions = torch.stack([a[0] for a in out.attentions]).cpu().numpy()  # (L, H, T, T)
    notice = None
    if encoding.truncated:
        total = len(tokenizer.encoding(text, pair).ids)
        notice = f"truncated to {limit} tokens (the input has {total})"
    names = [f"layer {i}" for i in range(len(out.attentions))]
    if not a_to_b:
        return AttentionMaps(encoding.tokens, attentions, None, names, notice)
    segment = np.array(encoding.type_ids)
    rows, cols = np.flatnonzero(segment == 0), np.flatnonzero(segment == 1)  # A and B positions
    a_note = "rows: sentence A; columns: sentence B; a row holds the share of A's attention on B"
    return AttentionMaps(
        [encoding.tokens[i] for i in rows],
        attentions[:, :, rows][:, :, :, cols],  # (L, H, T_A, T_B)
        [encoding.tokens[j] for j in cols],
        names,
        f"{notice}; {a_note}" if notice else a_note,
    )


def bert_attention(model, tokenizer, max_tokens: int = MAX_TOKENS, a_to_b: bool = False):
    """The callable `AttentionExplorer` wants: `(sentence[, sentence_b]) -> AttentionMaps`."""

    def maps(text: str, pair: str | None = None) -> AttentionMaps:
        return bert_attention_maps(model, tokenizer, text, pair, max_tokens, a_to_b)

    return maps


@dataclass(frozen=True, eq=False)
class AttentionTo:
    """Where one word attends, in every layer and head."""

    sentence: str
    word: str
    tokens: list[str]  # the sentence's T tokens, [CLS] and [SEP] included
    word_positions: list[int]  # the word's WordPiece positions (averaged over when several)
    weights: np.ndarray  # (L, H, T): the word's attention row in each layer and head
    exclude_special: bool = False  # True: [CLS]/[SEP] weigh 0, the rest of each row sums to 1

    @property
    def top_positions(self) -> np.ndarray:
        """(L, H) position of the most attended token."""
        return self.weights.argmax(-1)

    def top(self, layer: int, head: int) -> tuple[str, float]:
        """The most attended token in one layer and head, and its weight."""
        position = int(self.top_positions[layer, head])
        return self.tokens[position], float(self.weights[layer, head, position])

    def table(self) -> str:
        """Plain text: a row per layer, a column per head, "token weight" in each cell."""
        L, H, _ = self.weights.shape
        cells = [[f"{t} {w:.2f}" for t, w in (self.top(l, h) for h in range(H))] for l in range(L)]
        width = max(len(cell) for row in cells for cell in row)
        label = len(f"layer {L - 1}") + 1
        header = " " * label + " ".join(f"{f'head {h}':>{width}}" for h in range(H))
        note = " ([CLS]/[SEP] left out, rows rescaled)" if self.exclude_special else ""
        title = f"{self.word!r} attends most to (token, weight), per layer and head{note}:"
        lines = [title, header]
        for l, row in enumerate(cells):
            lines.append(f"{f'layer {l}':<{label}}" + " ".join(f"{c:>{width}}" for c in row))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.table()


def attention_to(
    sentence: str,
    word: str,
    model,
    tokenizer,
    occurrence: int = 1,
    *,
    exclude_special: bool = False,
) -> AttentionTo:
    """Which token does `word` attend to most, in each layer and head?

    Args:
        sentence: the text.
        word: a word of the text (matched without regard to case); a word split into several
            WordPieces uses the average of their attention rows.
        model, tokenizer: a BERT (or a model holding one as `.bert`) and its WordPiece.
        occurrence: which occurrence of `word` (1 = the first).
        exclude_special: leave [CLS] and [SEP] out: their weights become 0 and each row is
            rescaled to sum to 1 over the other tokens, so `top` never answers "[CLS]" and a
            weight reads as a share of the attention that did not park on a delimiter.

    Returns:
        AttentionTo, whose repr is a table.
    """
    maps = bert_attention_maps(model, tokenizer, sentence)
    encoding = tokenizer.encoding(sentence, max_length=MAX_TOKENS)
    positions = _word_positions(sentence, word, encoding, occurrence)
    weights = maps.attentions[:, :, positions].mean(axis=2)  # (L, H, T)
    if exclude_special:
        weights = without_special(weights, maps.query_tokens)  # (L, H, T)
    return AttentionTo(sentence, word, maps.query_tokens, positions, weights, exclude_special)


def without_special(weights: np.ndarray, tokens: list[str]) -> np.ndarray:
    """Attention rows with [CLS] and [SEP] left out, rescaled to sum to 1 over the rest.

    Args:
        weights: (..., T) attention rows over the T keys.
        tokens: the T key tokens.

    Returns:
        (..., T): 0 at [CLS]/[SEP], the other weights divided by their sum.
    """
    if weights.shape[-1] != len(tokens):
        raise ValueError(f"weights (..., {weights.shape[-1]}) but {len(tokens)} tokens")
    keep = ~np.isin(np.array(tokens), SPECIAL_TOKENS)  # (T,)
    if not keep.any():
        raise ValueError("no tokens left once [CLS] and [SEP] are left out")
    kept = weights * keep  # (..., T)
    return kept / np.maximum(kept.sum(-1, keepdims=True), 1e-12)  # (..., T), rows sum to 1


@dataclass(frozen=True, eq=False)
class AttentionComparison:
    """Sentence by sentence, the attention a word gives a target word and a control word."""

    items: list[tuple[str, str, str, str]]  # N (sentence, word, target, control)
    target: np.ndarray  # (N, L, H): the word's attention on the target word
    control: np.ndarray  # (N, L, H): the word's attention on the control word
    margin: float  # a sentence counts for one side only if it wins by more than this
    exclude_special: bool  # whether [CLS]/[SEP] were left out (rows rescaled)

    @property
    def preference(self) -> np.ndarray:
        """(L, H) share of the sentences where target > control + margin."""
        return (self.target - self.control > self.margin).mean(axis=0)

    @property
    def reverse_preference(self) -> np.ndarray:
        """(L, H) share of the sentences where control > target + margin."""
        return (self.control - self.target > self.margin).mean(axis=0)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: slice) -> AttentionComparison:
        """The comparison on a slice of the items, e.g. `both[:200]`."""
        if not isinstance(index, slice):
            raise TypeError("index an AttentionComparison with a slice, e.g. result[:200]")
        return AttentionComparison(
            self.items[index], self.target[index], self.control[index], self.margin,
            self.exclude_special,
        )  # fmt: skip

    def heads(self, at_least: float) -> list[tuple[int, int]]:
        """(layer, head) of every head preferring the target in at least this share of the
        sentences, most reliable first (0-based)."""
        share = self.preference  # (L, H)
        layers, heads = np.nonzero(share >= at_least)
        order = np.argsort(-share[layers, heads], kind="stable")
        return [(int(layers[i]), int(heads[i])) for i in order]


def compare_attention(
    items,
    model,
    tokenizer,
    *,
    exclude_special: bool = True,
    margin: float = 0.01,
    batch_size: int = 64,
) -> AttentionComparison:
    """Does `word` attend more to `target` than to `control`, sentence after sentence?

    Each item is `(sentence, word, target, control)`, e.g. ("the actor in the scenes was good .",
    "was", "actor", "scenes"): from the verb, its subject against the nearer noun. Words are
    matched as whole words, first occurrence, without regard to case; a word of several
    WordPieces uses the average of its rows as query and the sum of its columns as key. Each
    distinct sentence runs through the model once, in padded batches (padding is never attended
    to), so several questions about the same sentences cost one pass: ask them in one call and
    slice the result (`both[:n]`, `both[n:]`).

    Args:
        items: (sentence, word, target, control) tuples.
        model, tokenizer: a BERT (or a model holding one as `.bert`) and its WordPiece.
        exclude_special: leave [CLS]/[SEP] out and rescale each row (see `attention_to`).
        margin: the lead one word needs over the other for a sentence to count as preferring it.
        batch_size: sentences per forward pass.

    Returns:
        AttentionComparison with target and control (N, L, H).
    """
    import torch

    items = [tuple(item) for item in items]
    if not items or any(len(item) != 4 for item in items):
        raise ValueError("items must be a non-empty list of (sentence, word, target, control)")
    bert = getattr(model, "bert", model)
    limit = min(MAX_TOKENS, bert.config.max_positions)
    device = next(bert.parameters()).device
    sentences = list(dict.fromkeys(sentence for sentence, *_ in items))  # each runs once
    maps: dict[str, np.ndarray] = {}
    for start in range(0, len(sentences), batch_size):
        chunk = sentences[start : start + batch_size]
        batch = tokenizer.batch_encode(chunk, max_length=limit)
        with torch.no_grad():
            out = bert(
                batch["input_ids"].to(device),
                attention_mask=batch["attention_mask"].to(device),
                token_type_ids=batch["token_type_ids"].to(device),
                return_attention=True,
            )
        attentions = torch.stack(out.attentions, dim=1).cpu().numpy()  # (B, L, H, T, T)
        for n, sentence in enumerate(chunk):
            maps[sentence] = attentions[n]  # (L, H, T, T), T padded to the batch's longest
    targets, controls = [], []
    for sentence, word, target, control in items:
        encoding = tokenizer.encoding(sentence, max_length=limit)
        T = len(encoding.ids)
        queries = _word_positions(sentence, word, encoding)
        rows = maps[sentence][:, :, queries, :T].mean(axis=2)  # (L, H, T)
        if exclude_special:
            rows = without_special(rows, encoding.tokens)  # (L, H, T)
        target_keys = _word_positions(sentence, target, encoding)
        control_keys = _word_positions(sentence, control, encoding)
        if set(target_keys) & set(control_keys):
            raise ValueError(f"{target!r} and {control!r} share tokens in {sentence!r}")
        targets.append(rows[..., target_keys].sum(-1))  # (L, H)
        controls.append(rows[..., control_keys].sum(-1))  # (L, H)
    return AttentionComparison(
        items, np.stack(targets), np.stack(controls), margin, exclude_special
    )


def _word_positions(sentence: str, word: str, encoding, occurrence: int = 1) -> list[int]:
    """The token positions of the `occurrence`-th whole-word match of `word` (not [CLS]/[SEP])."""
    start = _find(sentence, word, occurrence)
    end = start + len(word.strip())
    positions = [
        i
        for i, (a, b) in enumerate(encoding.offsets)
        if b > a and a >= start and b <= end  # tokens inside the word (not [CLS]/[SEP])
    ]
    if not positions:
        raise ValueError(
            f"{word!r} at characters {start}-{end} has no token of its own in {encoding.tokens}"
        )
    return positions


def head_statistics(maps: AttentionMaps | list[AttentionMaps]) -> dict[str, np.ndarray]:
    """Average share of attention each head gives to [CLS], [SEP], the token itself, the
    previous and the next token. Queries are the ordinary tokens (not [CLS]/[SEP]); "previous"
    and "next" only count queries whose neighbour is an ordinary token too, so a head that parks
    on [CLS] or [SEP] does not pass for a previous- or next-token head.

    Args:
        maps: self-attention maps of one or several sentences (each (L, H, T, T)).

    Returns:
        {"cls", "sep", "self", "previous", "next": (L, H) arrays in [0, 1]}, each averaged over
        the query tokens it applies to, pooled across sentences.
    """
    maps = [maps] if isinstance(maps, AttentionMaps) else list(maps)
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for m in maps:
        if m.key_tokens is not None:
            raise ValueError("head_statistics needs self-attention maps (key_tokens=None)")
        tokens = np.array(m.query_tokens)
        a = m.attentions  # (L, H, T, T)
        ordinary = (tokens != "[CLS]") & (tokens != "[SEP]")  # (T,)
        queries = np.flatnonzero(ordinary)  # (Q,)
        with_previous = queries[ordinary[queries - 1]]  # queries right after an ordinary token
        with_next = queries[
            (queries + 1 < len(tokens)) & ordinary[np.minimum(queries + 1, len(tokens) - 1)]
        ]
        shares = {
            "cls": a[:, :, queries][..., tokens == "[CLS]"].sum(-1),  # (L, H, Q)
            "sep": a[:, :, queries][..., tokens == "[SEP]"].sum(-1),
            "self": a[:, :, queries, queries],
            "previous": a[:, :, with_previous, with_previous - 1],
            "next": a[:, :, with_next, with_next + 1],
        }
        for name, share in shares.items():
            sums[name] = sums.get(name, 0) + share.sum(-1)  # (L, H)
            counts[name] = counts.get(name, 0) + share.shape[-1]
    if counts.get("cls", 0) == 0:
        raise ValueError("no ordinary tokens to measure (only [CLS]/[SEP])")
    return {name: total / max(counts[name], 1) for name, total in sums.items()}


def norm_weighted_maps(model, tokenizer, text: str, max_tokens: int = MAX_TOKENS) -> AttentionMaps:
    """Attention weighted by what each key sends: alpha_ij * ||f_h(x_j)||, rows rescaled to sum 1.

    f_h(x_j) is key j's value vector in head h, mapped by head h's slice of the output
    projection: exactly the vector head h adds to query i, times alpha_ij. A weight on a key
    whose f_h(x_j) is tiny moves nothing (Kobayashi et al., 2020).

    Returns:
        AttentionMaps (L, H, T, T) whose rows are the shares of ||alpha_ij f_h(x_j)||.
    """
    import torch

    bert = getattr(model, "bert", model)
    encoding = tokenizer.encoding(text, max_length=min(max_tokens, bert.config.max_positions))
    inputs: list[torch.Tensor] = []
    hooks = [
        layer.register_forward_pre_hook(lambda _module, args: inputs.append(args[0]))
        for layer in bert.encoder.layers
    ]
    try:
        with torch.no_grad():
            device = next(bert.parameters()).device
            out = bert(torch.tensor([encoding.ids], device=device), return_attention=True)
    finally:
        for hook in hooks:
            hook.remove()
    maps = []
    for layer, x, weights in zip(bert.encoder.layers, inputs, out.attentions, strict=True):
        attention = layer.self_attn
        H, Dh = attention.num_heads, attention.head_dim
        with torch.no_grad():
            values = attention.v_proj(x[0]).view(-1, H, Dh)  # (T, H, Dh)
            out_weight = attention.out_proj.weight.view(-1, H, Dh)  # (D, H, Dh)
            sent = torch.einsum("thd,ehd->hte", values, out_weight)  # (H, T, D): f_h(x_j)
            scaled = weights[0] * sent.norm(dim=-1)[:, None, :]  # (H, T, T): alpha_ij ||f_h(x_j)||
        maps.append(scaled / scaled.sum(-1, keepdim=True).clamp(min=1e-12))  # (H, T, T)
    stacked = torch.stack(maps).cpu().numpy()  # (L, H, T, T)
    names = [f"layer {i}" for i in range(len(maps))]
    note = "norm-weighted: alpha_ij * ||f(x_j)||, rows rescaled to sum to 1"
    return AttentionMaps(encoding.tokens, stacked, None, names, note)


def _find(sentence: str, word: str, occurrence: int) -> int:
    """Start of the `occurrence`-th whole-word, case-insensitive match of `word`."""
    if not word.strip():
        raise ValueError("word is empty")
    pattern = r"(?<!\w)" + re.escape(word.strip()) + r"(?!\w)"
    matches = list(re.finditer(pattern, sentence, flags=re.IGNORECASE))
    if not 1 <= occurrence <= len(matches):
        raise ValueError(
            f"{word!r} occurs {len(matches)} time(s) as a word in {sentence!r}; "
            f"occurrence {occurrence} asked"
        )
    return matches[occurrence - 1].start()
