"""Chapter 4's exercise checks pass the package's own functions and catch typical slips."""

from __future__ import annotations

import torch.nn.functional as F
from exercise_helpers import assert_hint, stub

from tfm_edu.exercises.encoder import check_feed_forward, check_layer_norm, check_pre_ln_block


def test_feed_forward():
    assert check_feed_forward(lambda x, w1, b1, w2, b2: F.relu(x @ w1 + b1) @ w2 + b2).passed
    assert check_feed_forward(stub).status == "not done"
    assert_hint(
        check_feed_forward(lambda x, w1, b1, w2, b2: F.relu(F.relu(x @ w1 + b1) @ w2 + b2)),
        "no activation after the second Linear",
    )
    assert_hint(check_feed_forward(lambda x, w1, b1, w2, b2: (x @ w1 + b1) @ w2 + b2),
                "ReLU between the two Linears is missing")  # fmt: skip


def test_layer_norm():
    def torch_ln(x, gamma, beta, eps=1e-5):
        return F.layer_norm(x, x.shape[-1:], gamma, beta, eps)

    def unbiased(x, gamma, beta, eps=1e-5):
        mu, var = x.mean(-1, keepdim=True), x.var(-1, keepdim=True)
        return (x - mu) / (var + eps).sqrt() * gamma + beta

    assert check_layer_norm(torch_ln).passed
    assert_hint(check_layer_norm(unbiased), "biased variance")
    assert_hint(
        check_layer_norm(lambda x, g, b, eps=1e-5: torch_ln(x, g, b, 1e-5)), "`eps` argument"
    )
    assert_hint(check_layer_norm(lambda x, g, b, eps=1e-5: torch_ln(x, None, None, eps)), "gamma")


def test_pre_ln_block():
    assert check_pre_ln_block(lambda x, sublayer, norm: x + sublayer(norm(x))).passed
    assert_hint(check_pre_ln_block(lambda x, sublayer, norm: norm(x + sublayer(x))), "post-LN")
    assert_hint(check_pre_ln_block(lambda x, sublayer, norm: sublayer(norm(x))), "residual")
