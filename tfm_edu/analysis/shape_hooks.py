"""Every step's shapes, caught by forward hooks in a wrapper: `trace_module(module, *inputs)`.

As lucidrains/vit-pytorch's `Recorder` catches attention maps, a `_Recorder` puts a pre- and a
post-forward hook on every submodule for one forward pass and takes them off afterwards, so no
model's `forward` changes. Each call becomes a `ShapeRow` (in the order the calls began);
`ShapeTrace` groups them by sublayer for the shape tracer widget.

Inside `MultiHeadAttention` (Vaswani et al., 2017, section 3.2.2) some steps are functions, not
modules. Their rows say how they were found: the q/k/v projections, the attention weights
(B, H, T, S) the module returns and the merged heads (out_proj's input) are *measured*; the
heads after the split (`split_heads` applied to a hooked projection), the scores before the
softmax (from the q and k shapes) and the per-head outputs are *derived* (`measured=False`).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field, fields, is_dataclass

import torch
from torch import Tensor, nn

from tfm_edu.analysis.shape_letters import ambiguity_notes, shape_symbols
from tfm_edu.attention import MultiHeadAttention, split_heads

__all__ = ["ShapeRow", "ShapeTrace", "trace_module"]


@dataclass(frozen=True)
class ShapeRow:
    """One step: what went in, what came out, in numbers and in letters."""

    path: str  # module path inside the model ("" = the model; ".q_heads" etc. = derived steps)
    step: str  # readable name, e.g. "encoder layer 0 › self-attention › query projection"
    kind: str  # the module's class, or "function" for a derived step
    depth: int  # nesting depth (0 = the model itself)
    inputs: tuple[tuple[str, tuple[int, ...]], ...]  # (argument name, shape) per tensor input
    outputs: tuple[tuple[int, ...], ...]  # shape of each tensor output
    input_symbols: tuple[str, ...] = ()  # e.g. ("(B, T, D)",), parallel to inputs
    output_symbols: tuple[str, ...] = ()  # e.g. ("(B, T, D)", "(B, H, T, T)")
    measured: bool = True  # True: a hook saw the tensor; False: derived (see `how`)
    how: str = "forward hook"  # how the shapes were obtained


@dataclass
class ShapeTrace:
    """A traced model: its letters, its rows in the order they ran, and notes."""

    model: str
    letters: dict[str, int]  # e.g. {"B": 2, "T": 6, "D": 32, ...}
    rows: list[ShapeRow]
    blocks: list[tuple[str, str]] = field(default_factory=list)  # (label, path) per sublayer
    notes: list[str] = field(default_factory=list)

    def sublayers(self) -> list[tuple[str, str]]:
        """Dropdown options: ("overview", "") then (label, path) of every block, in run order."""
        return [("overview: the whole model", ""), *self.blocks]

    def select(self, path: str = "") -> list[ShapeRow]:
        """The rows of one sublayer (a path from `sublayers`, with everything inside it), or
        for "" the overview: every step except those inside the innermost blocks."""
        if path:
            return [r for r in self.rows if r.path == path or r.path.startswith(path + ".")]
        paths = [p for _, p in self.blocks]
        # The overview opens every block down to the innermost ones (attention, feed-forward).
        inner = [p for p in paths if not any(q.startswith(p + ".") for q in paths)]
        return [r for r in self.rows if not any(r.path.startswith(p + ".") for p in inner)]

    def row(self, path: str) -> ShapeRow:
        """The first row at `path` (raises a KeyError naming the paths there are)."""
        for r in self.rows:
            if r.path == path:
                return r
        raise KeyError(f"no step {path!r}; steps: {[r.path for r in self.rows]}")


@torch.no_grad()
def trace_module(module: nn.Module, *args, letters: dict[str, int], **kwargs) -> ShapeTrace:
    """Run `module(*args, **kwargs)` once under forward hooks and return its `ShapeTrace`.

    Args:
        module: any nn.Module; its `MultiHeadAttention`s get their internal steps as rows.
        letters: {letter: size} used to write shapes in symbols, e.g. {"B": 2, "T": 6, ...}.

    Returns:
        ShapeTrace (model = the module's class name); the hooks are removed afterwards.
    """
    recorder = _Recorder(module, letters)
    with recorder:
        module(*args, **kwargs)
    shown = [s for r in recorder.rows for s in (*r.input_symbols, *r.output_symbols)]
    notes = ambiguity_notes(shown, letters)
    blocks = [(recorder.label(p), p) for p in recorder.block_paths()]
    return ShapeTrace(type(module).__name__, dict(letters), recorder.rows, blocks, notes)


class _Recorder:
    """Registers a pre- and a post-forward hook on every submodule; removes them on exit."""

    def __init__(self, module: nn.Module, letters: dict[str, int]) -> None:
        self.module, self.letters = module, letters
        self.names = {m: p for p, m in module.named_modules()}
        self.rows: list[ShapeRow] = []
        self._open: dict[int, list] = {}  # id(module) -> stack of row indices waiting for output
        self._heads: dict[str, dict] = {}  # attention path -> shapes seen inside it
        self._handles: list = []
        self._calls: dict[str, int] = {}

    def __enter__(self) -> _Recorder:
        for m in self.module.modules():
            if isinstance(m, (nn.Dropout, nn.Identity, nn.ModuleList)):
                continue  # identities in eval mode: rows that say nothing
            self._handles.append(m.register_forward_pre_hook(self._pre, with_kwargs=True))
            self._handles.append(m.register_forward_hook(self._post, with_kwargs=True))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()

    # --- hooks ---------------------------------------------------------------------------------

    def _pre(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        path = self.names[module]
        parent, _, name = path.rpartition(".")
        if name == "out_proj" and parent in self._heads:
            self._attention_middle(parent, args[0])
        self._calls[path] = self._calls.get(path, 0) + 1
        step = self.label(path) + (f" (call {self._calls[path]})" if self._calls[path] > 1 else "")
        inputs = tuple((n, tuple(t.shape)) for n, t in _named_tensors(module, args, kwargs))
        self._open.setdefault(id(module), []).append(len(self.rows))
        self.rows.append(self._row(path, step, type(module).__name__, inputs, ()))
        if isinstance(module, MultiHeadAttention):
            self._heads[path] = {"H": module.num_heads}

    def _post(self, module: nn.Module, args: tuple, kwargs: dict, output) -> None:
        path = self.names[module]
        index = self._open[id(module)].pop()
        outputs = tuple(tuple(t.shape) for t in _tensors(output))
        row = self.rows[index]
        self.rows[index] = self._row(path, row.step, row.kind, row.inputs, outputs)
        parent, _, name = path.rpartition(".")
        if name in ("q_proj", "k_proj", "v_proj") and parent in self._heads:
            heads = split_heads(output, self._heads[parent]["H"])  # (B, H, L, Dh)
            self._heads[parent][name[0]] = tuple(heads.shape)
            self._derived(parent, f"{name[0]}_heads", f"{name[0]}: split into heads",
                          [(f"{name[0]} (projected)", outputs[0])], tuple(heads.shape),
                          "split_heads applied to the hooked projection")  # fmt: skip
        if isinstance(module, MultiHeadAttention) and isinstance(output, tuple):
            weights = output[1]
            for i, r in enumerate(self.rows):
                if r.path == path + ".weights" and weights is not None and not r.outputs:
                    how = "the weights the attention module returned"
                    shape = (tuple(weights.shape),)
                    self.rows[i] = self._row(r.path, r.step, r.kind, r.inputs, shape, True, how)

    def _attention_middle(self, path: str, merged: Tensor) -> None:
        """Rows between the projections and out_proj: scores, weights, heads, merged heads."""
        seen = self._heads[path]
        q, k, v = seen.get("q"), seen.get("k"), seen.get("v")
        if q and k:
            scores = (*q[:-1], k[-2])  # (B, H, T, S)
            how = "from the q and k shapes (the weights below have this shape)"
            self._derived(path, "scores", "scores q·kᵀ/√Dh", [("q", q), ("k", k)], scores, how)
            self.rows.append(self._row(path + ".weights", self._step(path, "softmax → weights"),
                                       "function", [("scores", scores)], ()))  # fmt: skip
        heads = split_heads(merged, seen["H"])  # (B, H, T, Dh): what merge_heads merged
        weights_shape = (*q[:-1], k[-2]) if q and k else None
        inputs = [("weights", weights_shape), ("v", v)] if weights_shape and v else []
        self._derived(path, "heads", "weights · v, per head", inputs, tuple(heads.shape),
                      "split_heads applied to out_proj's hooked input")  # fmt: skip
        self.rows.append(self._row(path + ".merge", self._step(path, "merge heads"), "function",
                                   [("heads", tuple(heads.shape))], (tuple(merged.shape),), True,
                                   "out_proj's input, seen by its hook"))  # fmt: skip

    def _derived(self, path, name, what, inputs, shape, how) -> None:
        row = self._row(f"{path}.{name}", self._step(path, what), "function", inputs, (shape,),
                        False, how)  # fmt: skip
        self.rows.append(row)

    # --- naming --------------------------------------------------------------------------------

    def _row(self, path, step, kind, inputs, outputs, measured=True, how="forward hook"):
        inputs = tuple((n, tuple(s)) for n, s in inputs)
        return ShapeRow(
            path, step, kind, _depth(path), inputs, tuple(outputs),
            tuple(shape_symbols(s, self.letters) for _, s in inputs),
            tuple(shape_symbols(s, self.letters) for s in outputs), measured, how,
        )  # fmt: skip

    def _step(self, path: str, what: str) -> str:
        return f"{self.label(path)} › {what}" if path else what

    def label(self, path: str) -> str:
        """ "encoder.layers.0.self_attn" -> "encoder layer 0 › self-attention"."""
        if not path:
            return type(self.module).__name__
        parts, words = path.split("."), []
        for i, part in enumerate(parts):
            if part == "layers":
                continue
            if part.isdigit() and i > 0 and parts[i - 1] == "layers":
                stack = parts[i - 2] if i >= 2 else type(self.module).__name__.lower()
                words.append(f"{_WORDS.get(stack, stack).removesuffix(' stack')} layer {part}")
                words = [w for w in words if w != _WORDS.get(stack, stack)]
                continue
            module = self.module.get_submodule(".".join(parts[: i + 1]))
            words.append("lookup" if part == "embedding" and i > 0 else _describe(part, module))
        return " › ".join(words)

    def block_paths(self) -> list[str]:
        """Modules with children but no ModuleList below them (a layer, an attention, ...)."""
        found = []
        for path, m in self.module.named_modules():
            children = list(m.children())
            stacks = any(isinstance(d, nn.ModuleList) for d in m.modules())
            if path and children and not stacks and path in self._calls:
                found.append(path)
        order = {r.path: i for i, r in reversed(list(enumerate(self.rows)))}
        return sorted(found, key=lambda p: order.get(p, 0))


_WORDS = {
    "self_attn": "self-attention", "cross_attn": "cross-attention",
    "feed_forward": "feed-forward", "linear1": "Linear D → d_ff", "linear2": "Linear d_ff → D",
    "q_proj": "query projection", "k_proj": "key projection", "v_proj": "value projection",
    "out_proj": "output projection", "encoder": "encoder stack", "decoder": "decoder stack",
    "final_norm": "final LayerNorm", "embedding": "token embedding", "position": "positions",
    "embeddings": "embeddings", "token_embedding": "token embedding",
    "segment_embedding": "segment embedding", "position_embedding": "position embedding",
    "output": "output layer (to V)", "mlm_head": "masked-LM head", "dense": "dense",
    "patch_embedding": "patch embedding", "proj": "Linear on each flattened patch",
    "head": "classifier head", "bert": "BERT",
}  # fmt: skip


def _describe(name: str, module: nn.Module) -> str:
    if isinstance(module, nn.LayerNorm) and name.startswith("norm"):
        return f"LayerNorm {name[4:]}".strip()
    if isinstance(module, (nn.ReLU, nn.GELU)):
        return type(module).__name__
    if name == "decoder" and isinstance(module, nn.Linear):
        return "scores over the vocabulary"
    return _WORDS.get(name, name)


def _named_tensors(module: nn.Module, args: tuple, kwargs: dict) -> list[tuple[str, Tensor]]:
    try:
        bound = inspect.signature(module.forward).bind(*args, **kwargs).arguments
    except TypeError:
        bound = {f"arg {i}": a for i, a in enumerate(args)} | kwargs
    return [(n, v) for n, v in bound.items() if isinstance(v, Tensor)]


def _tensors(output) -> list[Tensor]:
    """The tensors in an output: a tensor, a tuple (one level of nesting) or a dataclass."""
    if isinstance(output, Tensor):
        return [output]
    if is_dataclass(output):
        return [v for f in fields(output) if isinstance(v := getattr(output, f.name), Tensor)]
    if isinstance(output, (tuple, list)):
        return [t for item in output for t in _tensors(item)]
    return []


def _depth(path: str) -> int:
    """Nesting depth for indenting: "encoder.layers.0.self_attn" -> 3 (the list is no level)."""
    return len([p for p in path.split(".") if p != "layers"]) if path else 0
