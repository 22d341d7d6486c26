"""Check for chapter 7's "count the weights from the config" exercise.

`check_count_parameters(fn)` runs the learner's `fn(config, masked_lm=False)` on several
`tfm_edu.models.bert.BERTConfig`s (chapter 6's tiny BERT, `BERTConfig.minilm_l6()` and two odd
sizes), with and without the masked-LM head, and compares the answer with
`sum(p.numel() for p in model.parameters())` of the package's `BERT` / `BERTForMaskedLM` built
from the same config. The models are built on PyTorch's "meta" device: shapes without storage,
so even MiniLM costs no memory and no time. `parameters()` yields a tied tensor once, which is
the count the formula must reproduce. The hints name the usual slips: biases, LayerNorm's two
vectors, position and segment embeddings, the MLM head's tied matrix, a pooler our BERT lacks.
"""

from __future__ import annotations

from functools import lru_cache

from tfm_edu.exercises.core import Case, CheckResult, Mistake, check_function, graded
from tfm_edu.models.bert import BERT, BERTConfig, BERTForMaskedLM

__all__ = ["check_count_parameters", "count_parameters"]


def count_parameters(config: BERTConfig, masked_lm: bool = False) -> int:
    """The reference: the number of weights of `BERT(config)` (or `BERTForMaskedLM(config)`).

    Args:
        config: the sizes.
        masked_lm: count the model with its masked-language-model head.

    Returns:
        `sum(p.numel() for p in model.parameters())`, tied tensors counted once.
    """
    return _built_count(config, bool(masked_lm))


@lru_cache(maxsize=32)
def _built_count(config: BERTConfig, masked_lm: bool) -> int:
    # Built on the CPU: PyTorch's "meta" device would skip the storage, but its first random
    # initialisation takes seconds to set up. Initialising draws random numbers: fork the RNG.
    import torch

    with torch.random.fork_rng(devices=[]):
        model = BERTForMaskedLM(config) if masked_lm else BERT(config)
    return sum(p.numel() for p in model.parameters())


def _formula(
    config: BERTConfig,
    masked_lm: bool = False,
    *,
    biases: bool = True,
    norm_vectors: int = 2,
    embedding_norm: bool = True,
    positions: bool = True,
    segments: bool = True,
    tied_twice: bool = False,
    decoder_bias: bool = True,
    pooler: bool = False,
    per_head_matrices: bool = False,
    projections: int = 4,
    ffn_width: str = "d_ff",
    one_layer: bool = False,
) -> int:
    """A count by formula; each keyword off its default is one typical slip."""
    V, D, P, S = config.vocab_size, config.d_model, config.max_positions, config.type_vocab_size
    F, L, H = config.d_ff, config.num_layers, config.num_heads
    F = D if ffn_width == "d_model" else F
    bias = 1 if biases else 0
    norm = norm_vectors * D
    total = V * D + (P * D if positions else 0) + (S * D if segments else 0)
    total += norm if embedding_norm else 0
    matrix = H * D * D if per_head_matrices else D * D
    attention = projections * (matrix + bias * D)
    feed_forward = D * F + bias * F + F * D + bias * D
    layer = attention + feed_forward + 2 * norm
    total += layer * (1 if one_layer else L)
    if pooler:
        total += D * D + bias * D
    if masked_lm:
        total += D * D + bias * D + norm  # dense D -> D, then LayerNorm
        total += V * D if tied_twice else 0  # the output matrix *is* the token embedding
        total += V if decoder_bias and biases else 0  # one bias per vocabulary token
    return total


def _variant(**slip):
    def wrong(config, masked_lm=False):
        return _formula(config, masked_lm, **slip)

    return wrong


def _cases() -> list[Case]:
    odd = BERTConfig(
        vocab_size=97, d_model=48, num_layers=3, num_heads=6, d_ff=80, max_positions=40,
        type_vocab_size=3,
    )  # fmt: skip
    one_segment = BERTConfig(
        vocab_size=50, d_model=32, num_layers=1, num_heads=2, d_ff=64, max_positions=16,
        type_vocab_size=1,
    )  # fmt: skip
    configs = [
        (BERTConfig(), "chapter 6's tiny BERT"),
        (BERTConfig.minilm_l6(), "MiniLM-L6"),
        (odd, "3 layers, d_ff=80, 3 segments"),
        (one_segment, "1 layer, 1 segment"),
    ]
    cases = [Case((config,), {"masked_lm": False}, label) for config, label in configs]
    cases += [
        Case((config,), {"masked_lm": True}, f"{label} + masked-LM head")
        for config, label in configs
    ]
    return cases


@graded
def check_count_parameters(fn) -> CheckResult:
    """Check `fn(config, masked_lm=False) -> int`: the number of weights of `BERT(config)`, or of
    `BERTForMaskedLM(config)` when `masked_lm`, against the package's models."""
    mistakes = [
        Mistake(
            "every nn.Linear has a bias as well as its matrix: D per attention projection and per "
            "output, d_ff in the feed-forward's first layer (and one per vocabulary token in the "
            "masked-LM head's output).",
            _variant(biases=False),
        ),
        Mistake(
            "a LayerNorm has two vectors of D numbers, a scale (weight) and a shift (bias), not "
            "one.",
            _variant(norm_vectors=1),
        ),
        Mistake(
            "the LayerNorms are missing: one after the embeddings and two per encoder layer "
            "(post-LN: after attention and after the feed-forward), each 2·D numbers.",
            _variant(norm_vectors=0),
        ),
        Mistake(
            "the embeddings end with a LayerNorm of their own (2·D numbers) before the first "
            "layer.",
            _variant(embedding_norm=False),
        ),
        Mistake(
            "position embeddings are missing: BERT learns one D-vector per position, "
            "max_positions · D numbers.",
            _variant(positions=False),
        ),
        Mistake(
            "segment (token-type) embeddings are missing: one D-vector per segment, "
            "type_vocab_size · D numbers.",
            _variant(segments=False),
        ),
        Mistake(
            "the masked-LM head's output matrix is the token embedding itself (tied weights): it "
            "adds no new V · D matrix, so count it once.",
            _variant(tied_twice=True),
        ),
        Mistake(
            "the tied output layer still has a bias of its own: one number per vocabulary token "
            "(V).",
            _variant(decoder_bias=False),
        ),
        Mistake(
            "our BERT has no pooler (the dense layer BERT puts on [CLS] for next-sentence "
            "prediction): do not count D · D + D for it.",
            _variant(pooler=True),
        ),
        Mistake(
            "the heads share the projections: one D × D matrix per projection, each head using a "
            "D / H slice of it, not H matrices of D × D.",
            _variant(per_head_matrices=True),
        ),
        Mistake(
            "attention has four projections, query, key, value and the output projection.",
            _variant(projections=3),
        ),
        Mistake(
            "the feed-forward widens to d_ff: D × d_ff, then d_ff × D (not D × D).",
            _variant(ffn_width="d_model"),
        ),
        Mistake("multiply one layer's count by num_layers.", _variant(one_layer=True)),
    ]
    cases = _cases()
    result = check_function(
        "my_count_parameters", fn, count_parameters, cases, mistakes, compare=_same_count
    )
    if result.status != "failed":
        return result
    verdict, _, hint = result.message.partition("\n")
    message = verdict + _first_difference(fn, cases) + ("\n" + hint if hint else "")
    return CheckResult(result.name, result.status, message)


def _same_count(got, expected) -> bool:
    return int(got) == int(expected)


def _first_difference(fn, cases) -> str:
    """'Your count ... the model has ...' for the first case answered with a wrong number."""
    for case in cases:
        try:
            got = fn(*case.args, **case.kwargs)
            expected = count_parameters(*case.args, **case.kwargs)
            if isinstance(got, bool) or int(got) != got or int(got) == expected:
                continue
        except Exception:  # the harness has already said what went wrong
            return ""
        difference = int(got) - expected
        more = "more" if difference > 0 else "fewer"
        return (
            f"\n  For {case.label}: your count is {int(got):,}, the model has {expected:,} "
            f"({abs(difference):,} {more})."
        )
    return ""
