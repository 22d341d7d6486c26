"""Chapter 5 in code: the encoder-decoder Transformer of the original paper, and a translator.

`Seq2SeqTransformer` (Vaswani et al., 2017, "Attention Is All You Need", figure 1): token
embeddings scaled by sqrt(d_model) plus sinusoidal positions, an `Encoder` over the source, a
`Decoder` over the target with a causal mask and cross-attention to the encoder's output, and a
linear layer to the vocabulary. As in the paper (section 3.4) source embedding, target embedding
and output layer share one matrix: our source and target share one character vocabulary.

`Translator` wraps a trained model with its tokenizer: `translate(["3rd of March 1998"])` ->
`["1998-03-03"]`, plus `cross_attention(text)` for the attention widgets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from tfm_edu import decode
from tfm_edu.layers import Decoder, Encoder
from tfm_edu.positional import SinusoidalPositionalEncoding
from tfm_edu.tokenize import CharTokenizer

__all__ = ["Seq2SeqConfig", "Seq2SeqOutput", "Seq2SeqTransformer", "Translator"]


@dataclass(frozen=True)
class Seq2SeqConfig:
    """Sizes of a `Seq2SeqTransformer`."""

    vocab_size: int  # V: one vocabulary shared by source and target
    d_model: int = 128  # D: width of every token vector
    num_heads: int = 4  # H: attention heads per layer (head_dim = D / H)
    num_encoder_layers: int = 2  # encoder layers
    num_decoder_layers: int = 2  # decoder layers
    d_ff: int = 256  # hidden width of the feed-forward blocks
    dropout: float = 0.1  # on embeddings, attention weights and residual branches
    activation: str = "relu"  # feed-forward activation: "relu" (paper) or "gelu"
    norm_first: bool = True  # pre-LN (trains without fuss); False = the paper's post-LN
    max_source_len: int = 48  # longest source the model accepts (sinusoid table size)
    max_target_len: int = 16  # longest target, [BOS] included
    pad_id: int = 0  # the [PAD] id, masked out of the source
    causal: bool = True  # False lets the decoder see the future (chapter 5's "cheating" demo)

    @classmethod
    def tiny(cls, vocab_size: int) -> Seq2SeqConfig:
        """A model for unit tests: D=16, 1+1 layers, no dropout."""
        return cls(vocab_size, d_model=16, num_heads=2, num_encoder_layers=1,
                   num_decoder_layers=1, d_ff=32, dropout=0.0)  # fmt: skip


@dataclass
class Seq2SeqOutput:
    """Logits and (when asked) every attention map of one forward pass."""

    logits: Tensor  # (B, T, V) scores for the next target token at each position
    encoder_attentions: list[Tensor] = field(default_factory=list)  # per layer (B, H, S, S)
    decoder_attentions: list[Tensor] = field(default_factory=list)  # per layer (B, H, T, T)
    cross_attentions: list[Tensor] = field(default_factory=list)  # per layer (B, H, T, S)


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
            c.d_model, max(c.max_source_len, c.max_target_len)
        )
        self.dropout = nn.Dropout(c.dropout)
        layer_args = (c.d_model, c.num_heads, c.d_ff, c.dropout, c.activation, c.norm_first)
        self.encoder = Encoder(c.num_encoder_layers, *layer_args)
        self.decoder = Decoder(c.num_decoder_layers, *layer_args)
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
    ) -> tuple[Tensor, Tensor, list[Tensor]]:
        """
        Args:
            source: (B, S) token ids, right-padded with pad_id.

        Returns:
            memory (B, S, D), source_mask (B, 1, 1, S) (True = real token), and the encoder's
            attention maps [(B, H, S, S)] per layer if asked (else []).
        """
        self._check_ids(source, "source", self.config.max_source_len)
        source_mask = (source != self.config.pad_id)[:, None, None, :]  # (B, 1, 1, S)
        memory, attentions = self.encoder(self.embed(source), source_mask, return_attention)
        return memory, source_mask, attentions  # (B, S, D), (B, 1, 1, S), [...]

    def decode(
        self, target: Tensor, memory: Tensor, source_mask: Tensor, return_attention: bool = False
    ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """
        Args:
            target: (B, T) the decoder's input ids, starting with [BOS].
            memory: (B, S, D) from `encode`; source_mask: (B, 1, 1, S).

        Returns:
            logits (B, T, V), self-attention maps [(B, H, T, T)] and cross-attention maps
            [(B, H, T, S)] per layer if asked (else empty lists).
        """
        self._check_ids(target, "target", self.config.max_target_len)
        T = target.shape[1]
        # Only the causal mask: padding after [EOS] sits in the future of every real position.
        self_mask = self.causal_mask[:T, :T] if self.config.causal else None  # (T, T)
        x, self_maps, cross_maps = self.decoder(
            self.embed(target), memory, self_mask, source_mask, return_attention
        )  # (B, T, D)
        return self.output(x), self_maps, cross_maps  # (B, T, V)

    def forward(
        self, source: Tensor, target: Tensor, return_attention: bool = False
    ) -> Seq2SeqOutput:
        """Teacher forcing: source (B, S) and target input (B, T) -> logits (B, T, V)."""
        if source.shape[0] != target.shape[0]:
            raise ValueError(
                f"source (B, S) and target (B, T) disagree on B: "
                f"{tuple(source.shape)} vs {tuple(target.shape)}"
            )
        memory, source_mask, encoder_maps = self.encode(source, return_attention)
        logits, self_maps, cross_maps = self.decode(target, memory, source_mask, return_attention)
        return Seq2SeqOutput(logits, encoder_maps, self_maps, cross_maps)

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
            `tfm_edu.viz.AttentionMaps` with attentions (L, H, T, S): query_tokens are the output
            characters ([BOS] then the answer), key_tokens the input characters, layer names
            "cross 1", "cross 2", ...
        """
        from tfm_edu.viz import AttentionMaps

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
            layer_names=[f"cross {i + 1}" for i in range(len(out.cross_attentions))],
        )
