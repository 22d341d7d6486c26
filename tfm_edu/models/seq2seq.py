"""Chapter 5 in code: the encoder-decoder Transformer of the original paper, and a translator.

`Seq2SeqTransformer` (Vaswani et al., 2017, "Attention Is All You Need", figure 1): token
embeddings scaled by sqrt(d_model) plus sinusoidal positions, an `Encoder` over the source, a
`Decoder` over the target with a causal mask and cross-attention to the encoder's output, and a
linear layer to the vocabulary. As in the paper (section 3.4) source embedding, target embedding
and output layer share one matrix: our source and target share one character vocabulary.

Training is teacher forcing (`teacher_forcing`): the decoder reads the true answer shifted right
by one, [BOS] y1 .. yn, and is scored on predicting y1 .. yn [EOS]. Like every model of the
course, `forward(..., targets=...)` returns that loss with the logits.

`Translator` wraps a trained model with its tokenizer: `translate(["3rd of March 1998"])` ->
`["1998-03-03"]`, plus `cross_attention(text)` for the attention widgets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tfm_edu import decode
from tfm_edu.layers import Decoder, Encoder
from tfm_edu.maps import AttentionMaps
from tfm_edu.positional import SinusoidalPositionalEncoding
from tfm_edu.tokenize import CharTokenizer

__all__ = [
    "Seq2SeqConfig",
    "Seq2SeqOutput",
    "Seq2SeqTransformer",
    "teacher_forcing",
    "Translator",
]


@dataclass(frozen=True, kw_only=True)
class Seq2SeqConfig:
    """Sizes of a `Seq2SeqTransformer`; the defaults are chapter 5's shipped date translator."""

    vocab_size: int = 71  # V: one vocabulary shared by source and target (the dates' characters)
    d_model: int = 64  # D: width of every token vector
    num_heads: int = 4  # H: attention heads per layer (head_dim = D / H)
    num_encoder_layers: int = 2  # encoder layers
    num_decoder_layers: int = 2  # decoder layers
    d_ff: int = 256  # hidden width of the feed-forward blocks
    dropout: float = 0.0  # on embeddings, attention weights and residual branches (training)
    activation: str = "relu"  # feed-forward activation: "relu" (paper) or "gelu"
    norm_first: bool = True  # pre-LN (trains without fuss); False = the paper's post-LN
    max_source_len: int = 48  # longest source the model accepts (sinusoid table size)
    max_target_len: int = 16  # longest target, [BOS] included
    pad_id: int = 0  # the [PAD] id, masked out of the source
    causal: bool = True  # False lets the decoder see the future (chapter 5's "cheating" demo)

    @classmethod
    def tiny(cls, vocab_size: int = 71) -> Seq2SeqConfig:
        """A very small model (D=16, 1 + 1 layers) for quick demonstrations and tests."""
        return cls(vocab_size=vocab_size, d_model=16, num_heads=2, num_encoder_layers=1,
                   num_decoder_layers=1, d_ff=32)  # fmt: skip


@dataclass
class Seq2SeqOutput:
    """Logits, the loss when targets were given, and (when asked) every attention map."""

    logits: Tensor  # (B, T, V) scores for the next target token at each position
    loss: Tensor | None = None  # scalar cross-entropy per target token, [PAD] ignored
    encoder_attentions: tuple[Tensor, ...] = ()  # per layer (B, H, S, S)
    decoder_attentions: tuple[Tensor, ...] = ()  # per layer (B, H, T, T)
    cross_attentions: tuple[Tensor, ...] = ()  # per layer (B, H, T, S)


def teacher_forcing(target: Tensor) -> tuple[Tensor, Tensor]:
    """Split [BOS] y1 .. yn [EOS] into what the decoder reads and what it must predict.

    Args:
        target: (B, T + 1) ids, [BOS] first.

    Returns:
        decoder_input (B, T) = [BOS] y1 .. yn, and targets (B, T) = y1 .. yn [EOS]: position t
        reads the true tokens up to t and is scored on token t + 1.
    """
    if target.dim() != 2 or target.shape[1] < 2:
        raise ValueError(f"target must be (B, T + 1) with T >= 1, got {tuple(target.shape)}")
    return target[:, :-1], target[:, 1:]  # (B, T), (B, T)


class Seq2SeqTransformer(nn.Module):
    """Encoder-decoder Transformer with shared embeddings (source, target and output)."""

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.config = c = config
        self.embedding = nn.Embedding(c.vocab_size, c.d_model)
        # Std D^-1/2: the embeddings times sqrt(D) then have unit scale, and the tied output
        # layer starts with logits of order 1.
        nn.init.normal_(self.embedding.weight, std=c.d_model**-0.5)
        self.position = SinusoidalPositionalEncoding(
            d_model=c.d_model, max_positions=max(c.max_source_len, c.max_target_len)
        )
        self.dropout = nn.Dropout(c.dropout)
        sizes = dict(d_model=c.d_model, num_heads=c.num_heads, d_ff=c.d_ff, dropout=c.dropout,
                     activation=c.activation, norm_first=c.norm_first)  # fmt: skip
        self.encoder = Encoder(num_layers=c.num_encoder_layers, **sizes)
        self.decoder = Decoder(num_layers=c.num_decoder_layers, **sizes)
        self.output = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.output.weight = self.embedding.weight  # tied (paper, section 3.4)
        causal = torch.ones(c.max_target_len, c.max_target_len, dtype=torch.bool).tril()
        self.register_buffer("causal_mask", causal, persistent=False)  # (T_max, T_max)

    def embed(self, ids: Tensor) -> Tensor:
        """ids (B, L) -> embeddings * sqrt(D) + positions, (B, L, D)."""
        x = self.embedding(ids) * math.sqrt(self.config.d_model)  # (B, L, D)
        return self.dropout(self.position(x))  # (B, L, D)

    def encode(
        self, source: Tensor, return_attention: bool = False
    ) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
        """
        Args:
            source: (B, S) token ids, right-padded with pad_id.

        Returns:
            memory (B, S, D), source_mask (B, 1, 1, S) (True = real token), and the encoder's
            attention maps ((B, H, S, S), ...) per layer if asked (else ()).
        """
        self._check_ids(source, "source", self.config.max_source_len)
        source_mask = (source != self.config.pad_id)[:, None, None, :]  # (B, 1, 1, S)
        memory, attentions = self.encoder(self.embed(source), source_mask, return_attention)
        return memory, source_mask, attentions  # (B, S, D), (B, 1, 1, S), (...)

    def decode(
        self,
        decoder_input: Tensor,
        memory: Tensor,
        source_mask: Tensor,
        return_attention: bool = False,
    ) -> tuple[Tensor, tuple[Tensor, ...], tuple[Tensor, ...]]:
        """
        Args:
            decoder_input: (B, T) the decoder's input ids, starting with [BOS].
            memory: (B, S, D) from `encode`; source_mask: (B, 1, 1, S).

        Returns:
            logits (B, T, V), self-attention maps ((B, H, T, T), ...) and cross-attention maps
            ((B, H, T, S), ...) per layer if asked (else empty tuples).
        """
        self._check_ids(decoder_input, "decoder_input", self.config.max_target_len)
        T = decoder_input.shape[1]
        # Only the causal mask: padding after [EOS] sits in the future of every real position.
        self_mask = self.causal_mask[:T, :T] if self.config.causal else None  # (T, T)
        x, self_maps, cross_maps = self.decoder(
            self.embed(decoder_input), memory, self_mask, source_mask, return_attention
        )  # (B, T, D)
        return self.output(x), self_maps, cross_maps  # (B, T, V)

    def forward(
        self,
        source: Tensor,
        decoder_input: Tensor,
        targets: Tensor | None = None,
        *,
        label_smoothing: float = 0.0,
        return_attention: bool = False,
    ) -> Seq2SeqOutput:
        """Teacher forcing: one pass over the whole answer (see `teacher_forcing`).

        Args:
            source: (B, S) input ids, right-padded with pad_id.
            decoder_input: (B, T) [BOS] y1 .. y(T-1), the true answer shifted right.
            targets: optional (B, T) y1 .. yT, the tokens to predict; pad_id is not scored.
            label_smoothing: share of each target's probability spread over the whole
                vocabulary in the loss (0: plain cross-entropy; the date translator trains
                with 0.1).
            return_attention: also return every attention map.

        Returns:
            Seq2SeqOutput: logits (B, T, V); loss (scalar, mean over the scored tokens) when
            targets are given; the encoder, decoder and cross-attention maps when asked.
        """
        if source.shape[0] != decoder_input.shape[0]:
            raise ValueError(
                f"source (B, S) and decoder_input (B, T) disagree on B: "
                f"{tuple(source.shape)} vs {tuple(decoder_input.shape)}"
            )
        memory, source_mask, encoder_maps = self.encode(source, return_attention)
        logits, self_maps, cross_maps = self.decode(
            decoder_input, memory, source_mask, return_attention
        )  # (B, T, V)
        loss = None
        if targets is not None:
            if targets.shape != decoder_input.shape:
                raise ValueError(
                    f"targets must be shaped like decoder_input {tuple(decoder_input.shape)} "
                    f"(B, T), got {tuple(targets.shape)}"
                )
            loss = F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]),  # (B*T, V)
                targets.reshape(-1),  # (B*T,)
                ignore_index=self.config.pad_id,
                label_smoothing=label_smoothing,
            )
        return Seq2SeqOutput(logits, loss, encoder_maps, self_maps, cross_maps)

    def start_state(self, source: Tensor) -> dict[str, Tensor]:
        """What the decoding loop carries along: {"memory": (B, S, D), "source_mask"}."""
        memory, source_mask, _ = self.encode(source)
        return {"memory": memory, "source_mask": source_mask}

    def step(self, tokens: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """`tfm_edu.decode`'s step: tokens (N, t) so far -> logits (N, V) for the next one.

        Recomputes the decoder over the whole prefix (no KV cache: a date is 10 characters).
        """
        logits, _, _ = self.decode(tokens, state["memory"], state["source_mask"])  # (N, t, V)
        return logits[:, -1], state  # (N, V)

    def _check_ids(self, ids: Tensor, name: str, max_len: int) -> None:
        if ids.dim() != 2 or ids.dtype != torch.long:
            raise ValueError(f"{name} must be (B, L) int64 ids, got {tuple(ids.shape)} {ids.dtype}")
        if ids.shape[1] > max_len:
            raise ValueError(f"{name} has length {ids.shape[1]} > the model's maximum {max_len}")


class Translator:
    """A trained `Seq2SeqTransformer` and its `CharTokenizer`: text in, text out.

    Input rules (documented, never a crash): surrounding whitespace is stripped; an empty text,
    a text longer than `max_input_chars`, or characters outside the vocabulary raise a
    ValueError that names the text and the offending characters.
    """

    def __init__(self, model: Seq2SeqTransformer, tokenizer: CharTokenizer, card: Any = None):
        if tokenizer.vocab_size != model.config.vocab_size:
            raise ValueError(
                f"tokenizer has {tokenizer.vocab_size} ids, the model {model.config.vocab_size}"
            )
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.card = card or {}  # the checkpoint's JSON card, when loaded from data/

    @property
    def max_input_chars(self) -> int:
        return self.model.config.max_source_len

    def encode_texts(self, texts: Sequence[str]) -> Tensor:
        """Validate and encode texts -> (B, S) ids, right-padded."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise ValueError(f"pass a list of strings, e.g. [{texts!r}], got {type(texts)}")
        cleaned = [t.strip() for t in texts]
        for i, text in enumerate(cleaned):
            if not text:
                raise ValueError(f"text {i} is empty: give the translator a date to read")
            if len(text) > self.max_input_chars:
                raise ValueError(
                    f"text {i} has {len(text)} characters, more than the {self.max_input_chars} "
                    f"the model was built for: {text[:60]!r}..."
                )
            bad = self.tokenizer.unknown_chars(text)
            if bad:
                raise ValueError(f"text {i} {text!r} has characters outside the vocabulary: {bad}")
        return self.tokenizer.batch_encode(cleaned)  # (B, S)

    @torch.no_grad()
    def generate(
        self,
        texts: Sequence[str],
        beam_size: int = 1,
        length_penalty: float = 1.0,
        num_hypotheses: int = 1,
    ) -> decode.Generated:
        """Decode a batch: greedy when beam_size is 1, else beam search (n best per text)."""
        device = next(self.model.parameters()).device
        source = self.encode_texts(texts).to(device)  # (B, S)
        prompt = torch.full((len(texts), 1), self.tokenizer.bos_id, device=device)  # (B, 1)
        state = self.model.start_state(source)
        options = dict(
            max_new_tokens=self.model.config.max_target_len - 1,
            eos_id=self.tokenizer.eos_id,
            pad_id=self.tokenizer.pad_id,
        )
        if beam_size == 1:
            return decode.greedy(self.model.step, prompt, state, **options)
        return decode.beam_search(
            self.model.step, prompt, state, beam_size=beam_size, length_penalty=length_penalty,
            num_hypotheses=num_hypotheses, **options,
        )  # fmt: skip

    def translate(
        self, texts: Sequence[str], beam_size: int = 1, batch_size: int = 512
    ) -> list[str]:
        """["3rd of March 1998", ...] -> ["1998-03-03", ...] (greedy, or beam search if k > 1)."""
        if len(texts) == 0:
            return []
        outputs = []
        for start in range(0, len(texts), batch_size):
            result = self.generate(texts[start : start + batch_size], beam_size)
            outputs += [self.tokenizer.decode(row) for row in result.tokens.tolist()]
        return outputs

    def hypotheses(self, text: str, beam_size: int = 5) -> list[tuple[str, float]]:
        """Beam search's `beam_size` final hypotheses for one text: (output, score), best first.

        The score is the mean log-probability per output character ([EOS] included).
        """
        result = self.generate([text], beam_size, num_hypotheses=beam_size)
        texts = [self.tokenizer.decode(row) for row in result.tokens.tolist()]
        return list(zip(texts, result.score().tolist(), strict=True))

    @torch.no_grad()
    def cross_attention(self, text: str):
        """Translate one text greedily and return its cross-attention maps for the widgets.

        Returns:
            `tfm_edu.maps.AttentionMaps` with attentions (L, H, T, S): query_tokens are the output
            characters ([BOS] then the answer), key_tokens the input characters, layer names
            "cross 0", "cross 1", ... (0-based, like the layer index)
        """
        answer = self.generate([text]).tokens[0]  # (L,)
        source = self.encode_texts([text])  # (1, S)
        stop = (answer == self.tokenizer.eos_id).nonzero()
        answer = answer[: int(stop[0]) + 1] if len(stop) else answer  # up to and with [EOS]
        # The map of output step i shows where the decoder looked while *predicting* token i.
        target = torch.cat([torch.tensor([self.tokenizer.bos_id]), answer[:-1]])[None]  # (1, T)
        device = next(self.model.parameters()).device
        out = self.model(source.to(device), target.to(device), return_attention=True)
        maps = torch.stack([m[0] for m in out.cross_attentions]).cpu().numpy()  # (L, H, T, S)
        predicted = [self.tokenizer.itos[i] for i in answer.tolist()]  # T labels
        return AttentionMaps(
            query_tokens=predicted,
            attentions=maps,
            key_tokens=list(text.strip()),
            layer_names=[f"cross {i}" for i in range(len(out.cross_attentions))],
        )
