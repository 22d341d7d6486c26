"""Chapter 11: int8 weights, written out: a quarter of the bytes for almost the same sentences.

Symmetric linear quantisation stores a float matrix as small integers and one float step:

    w ~ scale * q,   q = round(w / scale) in [-127, 127] (int8),   scale = max|w| / 127

Rounding moves each weight by at most half a step (scale / 2), so the error depends on how large
the step is, and the step on the *largest* weight it has to cover. One step for the whole matrix
(**per tensor**) lets a few outlier rows set it for everyone: the rows of ordinary weights then
fall on a handful of levels. One step per output row (**per channel**) gives each row a step
sized to its own largest weight, for the cost of one float per row. Trained transformers do have
such outlier rows and dimensions (Bondarenko, Nagel & Blankevoort, 2021, "Understanding and
Overcoming the Challenges of Efficient Transformer Quantization"; Dettmers et al., 2022,
"LLM.int8()"); per-channel weights are the standard answer (Krishnamoorthi, 2018, "Quantizing
deep convolutional networks for efficient inference: A whitepaper"; Nagel et al., 2021, "A White
Paper on Neural Network Quantization", section 2).

- `quantize_per_channel`, `quantize_per_tensor`, `dequantize`: the round trip itself;
  `quantization_error`: each row's mean and largest round-trip error, per tensor or per channel.
- `Int8Linear`: a linear layer that keeps its weight as int8 + one scale per row, and
  `quantize_int8`: a copy of any model with every `nn.Linear` replaced by one (embeddings and
  LayerNorms stay float, as in Zafrir et al., 2019, "Q8BERT"). `linear_bytes` counts what the
  linear layers hold, before and after.
- `int8_fidelity`: bytes, and how closely the int8 copy's sentence embeddings follow the float
  model's (cosine), measured on real sentences.

What int8 buys depends on the hardware. The default `Int8Linear` dequantises its weight on every
call and multiplies in float32: it saves the bytes held and moved, not arithmetic, so on a CPU it
is no faster (often a little slower). Integer arithmetic needs the *activations* in int8 too:
`int8_matmul=True` quantises each token's row on the fly (the same per-row rule as the weights),
multiplies int8 by int8 with int32 sums (`torch._int_mm`, a private PyTorch operator: it may
change), and rescales the sums by both steps (dynamic quantisation, Jacob et al., 2018,
"Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only Inference").
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "QMAX",
    "quantize_per_channel",
    "quantize_per_tensor",
    "dequantize",
    "quantization_error",
    "Int8Linear",
    "quantize_int8",
    "linear_bytes",
    "int8_fidelity",
]

QMAX = 127  # symmetric range -127..127: -q always exists (int8's -128 is left unused)


def _check_matrix(weight: Tensor, name: str = "weight") -> None:
    if not isinstance(weight, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(weight).__name__}")
    if weight.dim() != 2 or not weight.is_floating_point():
        raise ValueError(f"{name} must be a float (out, in) matrix, got {weight.dtype} "
                         f"{tuple(weight.shape)}")  # fmt: skip


def quantize_per_channel(weight: Tensor) -> tuple[Tensor, Tensor]:
    """Each output row to int8 with a step of its own: scale = max|row| / 127.

    Args:
        weight: (out, in) float matrix.

    Returns:
        (q, scale): q (out, in) int8 in [-127, 127]; scale (out,) in weight's dtype. A row of
        zeros gets scale 1 (any step stores zeros exactly; 0 would divide by zero).
    """
    _check_matrix(weight)
    scale = weight.abs().amax(dim=1) / QMAX  # (out,)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # (out,)
    q = torch.round(weight / scale[:, None]).clamp(-QMAX, QMAX).to(torch.int8)  # (out, in)
    return q, scale


def quantize_per_tensor(weight: Tensor) -> tuple[Tensor, Tensor]:
    """The whole matrix to int8 with one step: scale = max|weight| / 127.

    Args:
        weight: (out, in) float matrix.

    Returns:
        (q, scale): q (out, in) int8 in [-127, 127]; scale a 0-dim tensor (1 for all zeros).
    """
    _check_matrix(weight)
    scale = weight.abs().max() / QMAX  # ()
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # ()
    q = torch.round(weight / scale).clamp(-QMAX, QMAX).to(torch.int8)  # (out, in)
    return q, scale


def dequantize(q: Tensor, scale: Tensor) -> Tensor:
    """Back to floats: q * scale, one step per row (scale (out,)) or for all (scale 0-dim).

    Args:
        q: (out, in) int8.
        scale: (out,) or () float.

    Returns:
        (out, in) in scale's dtype.
    """
    if q.dtype != torch.int8 or q.dim() != 2:
        raise ValueError(f"q must be an int8 (out, in) matrix, got {q.dtype} {tuple(q.shape)}")
    if scale.dim() == 1 and scale.shape[0] == q.shape[0]:
        scale = scale[:, None]  # (out, 1): one step per row
    elif scale.dim() != 0:
        raise ValueError(
            f"scale must be (out,) = ({q.shape[0]},) or a scalar for q {tuple(q.shape)}, "
            f"got {tuple(scale.shape)}"
        )
    return q.to(scale.dtype) * scale  # (out, in)


def quantization_error(weight: Tensor, *, per: str = "channel") -> tuple[Tensor, Tensor]:
    """How far each row moves in an int8 round trip, with one step per row or per tensor.

    Args:
        weight: (out, in) float matrix.
        per: "channel" (one step per output row) or "tensor" (one step for the matrix).

    Returns:
        (mean, largest): each (out,), the mean and the largest |w - dequantize(quantize(w))|
        of each row.
    """
    quantize = {"channel": quantize_per_channel, "tensor": quantize_per_tensor}.get(per)
    if quantize is None:
        raise ValueError(f"per must be 'channel' or 'tensor', got {per!r}")
    error = (weight - dequantize(*quantize(weight))).abs()  # (out, in)
    return error.mean(dim=1), error.amax(dim=1)  # (out,), (out,)


class Int8Linear(nn.Module):
    """A linear layer whose weight is stored in int8, with one float32 step per output row.

    `forward` rebuilds the float weight (`dequantize`) on every call and runs `F.linear`. That
    keeps a quarter of the bytes in memory, and moves a quarter from memory to the core, but the
    multiplication is still float32, now with a dequantisation in front: on a CPU without int8
    kernels this is no faster, and often a little slower (measured: `python -m tfm_edu.bench
    int8`). `int8_matmul=True` also quantises the input, each
    token's row with a step of its own, multiplies int8 by int8 into int32 sums
    (`torch._int_mm`) and rescales: integer arithmetic, where the CPU has fast int8 instructions.
    """

    def __init__(
        self,
        weight_int8: Tensor,
        scale: Tensor,
        bias: Tensor | None = None,
        *,
        int8_matmul: bool = False,
    ) -> None:
        super().__init__()
        if weight_int8.dtype != torch.int8 or weight_int8.dim() != 2:
            raise ValueError(f"weight_int8 must be int8 (out, in), got {weight_int8.dtype} "
                             f"{tuple(weight_int8.shape)}")  # fmt: skip
        out_features = weight_int8.shape[0]
        if scale.shape != (out_features,):
            raise ValueError(f"scale must be (out,) = ({out_features},) for weight_int8 "
                             f"{tuple(weight_int8.shape)}, got {tuple(scale.shape)}")  # fmt: skip
        if bias is not None and bias.shape != (out_features,):
            raise ValueError(f"bias must be (out,) = ({out_features},), got {tuple(bias.shape)}")
        if int8_matmul and not hasattr(torch, "_int_mm"):
            raise RuntimeError(f"int8_matmul needs torch._int_mm, missing in {torch.__version__}")
        self.int8_matmul = int8_matmul
        self.register_buffer("weight_int8", weight_int8)  # (out, in) int8
        self.register_buffer("scale", scale.float())  # (out,) one step per output row
        self.register_buffer("bias", None if bias is None else bias.float())  # (out,) or None

    @classmethod
    def from_linear(cls, linear: nn.Linear, *, int8_matmul: bool = False) -> Int8Linear:
        """The int8 version of `linear` (per-channel steps); `linear` itself is unchanged."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"from_linear needs an nn.Linear, got {type(linear).__name__}")
        weight = linear.weight.detach().float()  # (out, in)
        q, scale = quantize_per_channel(weight)  # (out, in) int8, (out,)
        bias = None if linear.bias is None else linear.bias.detach().float().clone()  # (out,)
        return cls(q, scale, bias, int8_matmul=int8_matmul)

    @property
    def in_features(self) -> int:
        return self.weight_int8.shape[1]

    @property
    def out_features(self) -> int:
        return self.weight_int8.shape[0]

    def forward(self, x: Tensor) -> Tensor:
        """(..., in) -> (..., out)."""
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"x must be (..., in) = (..., {self.in_features}), got {tuple(x.shape)}"
            )
        if self.int8_matmul:
            return self._forward_int8_matmul(x)
        weight = dequantize(self.weight_int8, self.scale).to(x.dtype)  # (out, in), every call
        return F.linear(x, weight, None if self.bias is None else self.bias.to(x.dtype))

    def _forward_int8_matmul(self, x: Tensor) -> Tensor:
        rows = x.reshape(-1, self.in_features)  # (M, in): every token of every sequence
        # One step per token (row), as per channel for the weights. |rows / step| <= 127 by
        # construction, so no clamp is needed; tiny keeps an all-zero row from dividing by 0.
        tiny = torch.finfo(x.dtype).tiny
        step = rows.abs().amax(dim=1, keepdim=True).div_(QMAX).clamp_min_(tiny)  # (M, 1)
        rows_int8 = rows.div(step).round_().to(torch.int8)  # (M, in)
        # int32 sums of int8 products: exact up to K = 2**31 / 127**2, about 133,000 inputs.
        sums = torch._int_mm(rows_int8, self.weight_int8.t().contiguous())  # (M, out) int32
        out = sums.to(x.dtype).mul_(step).mul_(self.scale.to(x.dtype))  # (M, out)
        if self.bias is not None:
            out += self.bias.to(x.dtype)  # (M, out)
        return out.reshape(*x.shape[:-1], self.out_features)  # (..., out)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, int8_matmul={self.int8_matmul}"
        )


def quantize_int8(model: nn.Module, *, int8_matmul: bool = False) -> nn.Module:
    """A copy of `model` with every `nn.Linear` replaced by an `Int8Linear`; `model` unchanged.

    Embeddings, LayerNorms and everything else stay float. A linear layer whose weight is tied
    to another module's (GPT's and BERT's LM heads share the token embedding) stays float too:
    the embedding still needs its float copy, so an int8 one would add bytes, not save them.

    Args:
        model: any module (this package's BERT, GPT, ViT, ...).
        int8_matmul: also quantise the inputs and multiply in int8 (see `Int8Linear`).

    Returns:
        The quantised copy, in the same train/eval mode as `model`.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    quantised = copy.deepcopy(model)
    seen: dict[int, int] = {}
    for _, parameter in quantised.named_parameters(remove_duplicate=False):
        seen[id(parameter)] = seen.get(id(parameter), 0) + 1
    for parent in list(quantised.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear) and seen.get(id(child.weight), 0) == 1:
                setattr(parent, name, Int8Linear.from_linear(child, int8_matmul=int8_matmul))
    return quantised


def linear_bytes(model: nn.Module) -> int:
    """Bytes held by the linear layers (`nn.Linear` and `Int8Linear`): weights, biases, scales.

    Each tensor counts once (a weight tied to an embedding counts here, in full).
    """
    tensors = {}
    for module in model.modules():
        if isinstance(module, nn.Linear | Int8Linear):
            for tensor in (*module.parameters(recurse=False), *module.buffers(recurse=False)):
                tensors[id(tensor)] = tensor
    return sum(t.numel() * t.element_size() for t in tensors.values())


@torch.no_grad()
def int8_fidelity(
    model: nn.Module,
    tokenizer,
    sentences: list[str],
    *,
    quantised: nn.Module | None = None,
    int8_matmul: bool = False,
) -> dict[str, float]:
    """Bytes before and after, and the cosine between float and int8 sentence embeddings.

    Args:
        model: a float `tfm_edu.models.bert.BERT` (e.g. the real MiniLM).
        tokenizer: its `WordPiece`.
        sentences: N >= 1 strings, embedded with `sentence_embeddings` (mean-pooled).
        quantised: its int8 copy, if already made (default: `quantize_int8(model, ...)`).
        int8_matmul: passed to `quantize_int8` when `quantised` is None.

    Returns:
        {"bytes_float": linear bytes of `model`, "bytes_int8": of the copy, "fraction": their
        ratio, "mean_cosine" and "min_cosine" over the N sentences, "sentences": N}.
    """
    from tfm_edu.models.bert import sentence_embeddings

    if quantised is None:
        quantised = quantize_int8(model, int8_matmul=int8_matmul)
    before, after = linear_bytes(model), linear_bytes(quantised)
    reference = sentence_embeddings(model, tokenizer, sentences)  # (N, D)
    embedded = sentence_embeddings(quantised, tokenizer, sentences)  # (N, D)
    cosine = F.cosine_similarity(reference, embedded, dim=1)  # (N,)
    return {
        "bytes_float": before,
        "bytes_int8": after,
        "fraction": after / before,
        "mean_cosine": cosine.mean().item(),
        "min_cosine": cosine.min().item(),
        "sentences": len(sentences),
    }
