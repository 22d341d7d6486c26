"""Checks for chapter 4: the feed-forward block, LayerNorm, and the pre-LN residual block.

The references are the package's `tfm_edu.layers.FeedForward` (Vaswani et al., 2017, eq. 2)
and PyTorch's own `F.layer_norm` (Ba et al., 2016); the pre-LN block (Xiong et al., 2020) has no
function of its own in the package, so its one-line reference lives here. Weights are plain
tensors, laid out as in the equations: x @ W1 + b1 with W1 of shape (D, d_ff).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tfm_edu.exercises.core import Case, CheckResult, Mistake, check_function
from tfm_edu.layers import FeedForward

__all__ = ["check_feed_forward", "check_layer_norm", "check_pre_ln_block"]


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------ feed-forward


@torch.no_grad()
def feed_forward_reference(x, w1, b1, w2, b2):
    """`tfm_edu.layers.FeedForward` with these weights: x (..., D), W1 (D, d_ff), W2 (d_ff, D).

    `nn.Linear` stores its weight as (out, in), the transpose of the paper's W."""
    with torch.random.fork_rng(devices=[]):  # building the module must not move the learner's RNG
        block = FeedForward(d_model=w1.shape[0], d_ff=w1.shape[1])
    for linear, weight, bias in ((block.linear1, w1, b1), (block.linear2, w2, b2)):
        linear.weight.copy_(weight.T)
        linear.bias.copy_(bias)
    return block(x)  # (..., D)


def check_feed_forward(fn) -> CheckResult:
    """Check `fn(x (B, T, D), w1 (D, d_ff), b1 (d_ff,), w2 (d_ff, D), b2 (D,)) -> (B, T, D)`."""
    cases = []
    for seed, (B, T, D, d_ff) in enumerate([(2, 3, 4, 8), (1, 5, 6, 12), (3, 2, 8, 16)]):
        g = _generator(seed)
        cases.append(
            Case(
                (
                    torch.randn(B, T, D, generator=g),
                    torch.randn(D, d_ff, generator=g) / D**0.5,
                    torch.randn(d_ff, generator=g) * 0.1,
                    torch.randn(d_ff, D, generator=g) / d_ff**0.5,
                    torch.randn(D, generator=g) * 0.1,
                )
            )
        )
    mistakes = [
        Mistake(
            "there is no activation after the second Linear: FFN(x) = max(0, x W1 + b1) W2 + b2. "
            "A final ReLU (ReLU(W2 ReLU(W1 x)), found in some tutorials) would forbid negative "
            "outputs, yet this output is *added* to the residual stream and must go both ways.",
            lambda x, w1, b1, w2, b2: torch.relu(feed_forward_reference(x, w1, b1, w2, b2)),
        ),
        Mistake(
            "the ReLU between the two Linears is missing: without it the block is one linear "
            "map, x (W1 W2) + ..., and adds nothing a single matrix could not.",
            lambda x, w1, b1, w2, b2: (x @ w1 + b1) @ w2 + b2,
        ),
        Mistake(
            "add b2 after the second matrix product: ... @ w2 + b2.",
            lambda x, w1, b1, w2, b2: torch.relu(x @ w1 + b1) @ w2,
        ),
        Mistake(
            "add b1 before the ReLU: relu(x @ w1 + b1).",
            lambda x, w1, b1, w2, b2: torch.relu(x @ w1) @ w2 + b2,
        ),
    ]
    return check_function("feed_forward", fn, feed_forward_reference, cases, mistakes, atol=1e-5)


# ------------------------------------------------------------------ layer norm


def layer_norm_reference(x, gamma, beta, eps=1e-5):
    """PyTorch's own LayerNorm: each token's D features to mean 0, variance 1, scaled, shifted."""
    return F.layer_norm(x, x.shape[-1:], gamma, beta, eps)  # (..., D)


def check_layer_norm(fn) -> CheckResult:
    """Check `fn(x (B, T, D), gamma (D,), beta (D,), eps=1e-5) -> (B, T, D)`."""
    cases = []
    for seed, (B, T, D) in enumerate([(2, 3, 4), (1, 4, 8), (3, 2, 6)]):
        g = _generator(10 + seed)
        x = torch.randn(B, T, D, generator=g) * 3 + 1
        cases.append(Case((x, 1 + torch.randn(D, generator=g) * 0.2, torch.randn(D, generator=g))))
    tiny = torch.randn(1, 2, 4, generator=_generator(20)) * 1e-3
    cases.append(Case((tiny, torch.ones(4), torch.zeros(4)), {"eps": 1e-2}, "small x, eps=0.01"))
    mistakes = [
        Mistake(
            "use the biased variance, mean((x - mean)^2), as LayerNorm does: torch.var(...) "
            "divides by D - 1 unless you pass unbiased=False (or correction=0).",
            lambda x, gamma, beta, eps=1e-5: (
                (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True) + eps) * gamma
                + beta
            ),
        ),
        Mistake(
            "LayerNorm normalises each token over its own D features (dim=-1), not over the "
            "batch or the sequence.",
            lambda x, gamma, beta, eps=1e-5: (
                (x - x.mean(0, keepdim=True))
                / torch.sqrt(x.var(0, keepdim=True, unbiased=False) + eps)
                * gamma
                + beta
            ),
        ),
        Mistake(
            "LayerNorm normalises each token over its own D features (dim=-1), not over the "
            "sequence.",
            lambda x, gamma, beta, eps=1e-5: (
                (x - x.mean(1, keepdim=True))
                / torch.sqrt(x.var(1, keepdim=True, unbiased=False) + eps)
                * gamma
                + beta
            ),
        ),
        Mistake(
            "eps goes inside the square root: (x - mean) / sqrt(var + eps).",
            lambda x, gamma, beta, eps=1e-5: (
                (x - x.mean(-1, keepdim=True))
                / (x.std(-1, keepdim=True, unbiased=False) + eps)
                * gamma
                + beta
            ),
        ),
        Mistake(
            "after normalising, scale by gamma and shift by beta (the learned parameters that "
            "let the layer undo the normalisation where it helps).",
            lambda x, gamma, beta, eps=1e-5: layer_norm_reference(
                x, torch.ones_like(gamma), torch.zeros_like(beta), eps
            ),
        ),
        Mistake(
            "use the `eps` argument rather than a fixed 1e-5.",
            lambda x, gamma, beta, eps=1e-5: layer_norm_reference(x, gamma, beta, 1e-5),
        ),
    ]
    return check_function("layer_norm", fn, layer_norm_reference, cases, mistakes, atol=1e-5)


# ------------------------------------------------------------------ pre-LN residual block


def pre_ln_block_reference(x, sublayer, norm):
    """Pre-LN: x + sublayer(norm(x)); the residual path itself is never normalised."""
    return x + sublayer(norm(x))  # (B, T, D)


def check_pre_ln_block(fn) -> CheckResult:
    """Check `fn(x (B, T, D), sublayer, norm) -> (B, T, D)` for the pre-LN residual block.

    `sublayer` is any module (B, T, D) -> (B, T, D) (here a Linear), `norm` an nn.LayerNorm.
    """
    cases = []
    for seed, (B, T, D) in enumerate([(2, 3, 4), (1, 5, 8)]):
        torch.manual_seed(30 + seed)  # the modules' initialisation
        sublayer, norm = nn.Linear(D, D), nn.LayerNorm(D)
        with torch.no_grad():
            norm.weight.mul_(2.0), norm.bias.add_(0.5)  # a norm that is not the identity
        x = torch.randn(B, T, D, generator=_generator(40 + seed)) * 3
        cases.append(Case((x, sublayer, norm)))

    def post_ln(x, sublayer, norm):
        return norm(x + sublayer(x))

    mistakes = [
        Mistake(
            "that is post-LN, the paper's original norm(x + sublayer(x)). Pre-LN normalises the "
            "sublayer's *input* and leaves the residual path alone: x + sublayer(norm(x)).",
            post_ln,
        ),
        Mistake(
            "the residual connection is missing: add x back, x + sublayer(norm(x)).",
            lambda x, sublayer, norm: sublayer(norm(x)),
        ),
        Mistake(
            "normalise the sublayer's input, not its output: x + sublayer(norm(x)).",
            lambda x, sublayer, norm: x + norm(sublayer(x)),
        ),
        Mistake(
            "add the *un-normalised* x to the sublayer's output: x + sublayer(norm(x)), not "
            "norm(x) + sublayer(norm(x)).",
            lambda x, sublayer, norm: norm(x) + sublayer(norm(x)),
        ),
    ]
    with torch.no_grad():
        return check_function("pre_ln_block", fn, pre_ln_block_reference, cases, mistakes)
