"""Block diagrams of the course's architectures, drawn by our code (chapters 4, 5, 6 and 8).

Each picture says what our modules do, in their order: the sublayers as boxes, the residual
arrows that bypass them into a "+", where LayerNorm sits (post-LN, Vaswani et al., 2017:
x = LN(x + F(x)); pre-LN, Xiong et al., 2020: x = x + F(LN(x)) with one final LayerNorm after the
stack, as `tfm_edu.layers.Encoder` / `Decoder` do with `norm_first=True`), which mask each
attention gets, and the tensor's shape on the main arrows.

- `encoder_layer_diagram`, `norm_placement_diagram` (post-LN and pre-LN side by side): chapter 4.
- `decoder_layer_diagram`, `seq2seq_diagram` (the date translator, pre-LN): chapter 5.
- `bert_diagram` (post-LN, with its masked-LM and classification heads): chapter 6.
- `vit_diagram` (pre-LN, patches + [CLS], no mask): chapter 8.

Every function returns a matplotlib `Figure`; `diagram_data(name, ...)` returns the same picture
as data (`Diagram`: nodes, edges, frames) for anyone who wants to read it rather than look.
"""

from __future__ import annotations

from tfm_edu.viz._diagram_layout import Column, Diagram, Edge, Frame, Node, draw

__all__ = [
    "encoder_layer_diagram",
    "norm_placement_diagram",
    "decoder_layer_diagram",
    "seq2seq_diagram",
    "bert_diagram",
    "vit_diagram",
    "diagram_data",
]

BERT_HEADS = ("mlm", "classifier")


def _check_flag(norm_first) -> bool:
    if not isinstance(norm_first, bool):
        raise TypeError(f"norm_first must be True (pre-LN) or False (post-LN), got {norm_first!r}")
    return norm_first


def _check_count(name: str, value, allow_none: bool = True) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"{name} must be a positive int{' or None' if allow_none else ''}, got {value!r}"
        )
    return value


def _layers(count: int | None) -> str:
    return "× N layers" if count is None else f"× {count} layer{'s' if count > 1 else ''}"


def _order(norm_first: bool) -> str:
    return "pre-LN: x = x + F(LayerNorm(x))" if norm_first else "post-LN: x = LayerNorm(x + F(x))"


def _encoder_block(column: Column, *, norm_first: bool, length: str, mask: str) -> list[str]:
    """Self-attention + feed-forward, each in its residual block; returns the new node keys."""
    start = len(column.nodes)
    column.sublayer(
        "attention",
        "multi-head self-attention",
        "attention",
        norm_first=norm_first,
        note=mask,
        shape=f"(B, {length}, D)",
    )
    column.sublayer(
        "feed_forward",
        "feed-forward",
        "ffn",
        norm_first=norm_first,
        note="each token alone:\nLinear → activation → Linear",
        shape=f"(B, {length}, D)",
    )
    return [node.key for node in column.nodes[start:]]


def _final_norm(column: Column, length: str) -> None:
    column.add(
        "final_norm",
        "final LayerNorm",
        "norm",
        note="once, after the last layer",
        shape=f"(B, {length}, D)",
    )


def _encoder_layer(norm_first: bool, x: float = 2.0, prefix: str = "", title: str = ""):
    column = Column(x, prefix=prefix)
    column.add("input", "input: one vector per token", "io")
    members = _encoder_block(
        column, norm_first=norm_first, length="T", mask="mask: padding (B, 1, 1, T)"
    )
    right = column.residual_x + 0.15
    if norm_first:
        _final_norm(column, "T")
    column.add("output", "output", "io", shape="(B, T, D)")
    frame = Frame(f"EncoderLayer\nnorm_first=\n{norm_first}", tuple(members), right)
    title = title or f"Encoder layer, {_order(norm_first)}"
    return Diagram(title, tuple(column.nodes), tuple(column.edges), (frame,))


def _merge(title: str, *diagrams: Diagram) -> Diagram:
    return Diagram(
        title,
        sum((d.nodes for d in diagrams), ()),
        sum((d.edges for d in diagrams), ()),
        sum((d.frames for d in diagrams), ()),
    )


def _decoder_stack(column: Column, *, norm_first: bool) -> tuple[list[str], str]:
    """The three residual blocks of a decoder layer; returns (node keys, cross-attention key)."""
    start = len(column.nodes)
    column.sublayer(
        "self_attention",
        "masked self-attention",
        "attention",
        norm_first=norm_first,
        shape="(B, T, D)",
        note="mask: causal (T, T), no peeking\n(any [PAD] comes after [EOS])",
    )
    cross = column.sublayer(
        "cross_attention",
        "cross-attention",
        "attention",
        norm_first=norm_first,
        shape="(B, T, D)",
        note="Q: decoder; K, V: memory\nmask: source padding (B, 1, 1, S)",
    )
    column.sublayer(
        "feed_forward",
        "feed-forward",
        "ffn",
        norm_first=norm_first,
        note="each token alone:\nLinear → activation → Linear",
        shape="(B, T, D)",
    )
    return [node.key for node in column.nodes[start:]], cross


def _decoder_layer(norm_first: bool) -> Diagram:
    column = Column(4.2)
    column.add("input", "input: the output so far", "io")
    members, cross = _decoder_stack(column, norm_first=norm_first)
    right = column.residual_x + 0.15
    if norm_first:
        _final_norm(column, "T")
    column.add("output", "output", "io", shape="(B, T, D)")
    at = next(node for node in column.nodes if node.key == cross)
    memory = Node("memory", "memory", "io", 0.9, at.y, 1.3, 0.5, note="the encoder's output")
    edges = [*column.edges, Edge("memory", cross, "memory", "K, V\n(B, S, D)")]
    frame = Frame(f"DecoderLayer\nnorm_first=\n{norm_first}", tuple(members), right)
    title = f"Decoder layer, {_order(norm_first)}"
    return Diagram(title, (memory, *column.nodes), tuple(edges), (frame,))


def _seq2seq(norm_first: bool, num_encoder_layers, num_decoder_layers) -> Diagram:
    embed_note = "× √D, + sinusoidal positions"
    encoder = Column(1.5, width=2.3, prefix="encoder_")
    encoder.add("input", "source ids (B, S)", "io", note="e.g. '3rd of March 1998'")
    encoder.add("embedding", "shared embedding", "embed", note=embed_note, shape="(B, S)")
    members = _encoder_block(
        encoder, norm_first=norm_first, length="S", mask="mask: source padding (B, 1, 1, S)"
    )
    frames = [
        Frame(f"encoder\n{_layers(num_encoder_layers)}", tuple(members), encoder.residual_x + 0.15)
    ]
    if norm_first:
        _final_norm(encoder, "S")
    memory = encoder.add("memory", "memory", "io", note="the encoder's output", shape="(B, S, D)")
    decoder = Column(6.2, width=2.3, prefix="decoder_")
    decoder.add("input", "decoder input ids (B, T)", "io", note="[BOS] y1 … y(T-1)")
    decoder.add("embedding", "shared embedding", "embed", note=embed_note, shape="(B, T)")
    members, cross = _decoder_stack(decoder, norm_first=norm_first)
    frames.append(
        Frame(f"decoder\n{_layers(num_decoder_layers)}", tuple(members), decoder.residual_x + 0.15)
    )
    if norm_first:
        _final_norm(decoder, "T")
    decoder.add(
        "output_layer",
        "Linear to the vocabulary",
        "linear",
        note="weights tied to the embedding",
        shape="(B, T, D)",
    )
    decoder.add(
        "logits",
        "logits (B, T, V)",
        "io",
        note="next character at each position",
        shape="(B, T, V)",
    )
    edges = [*encoder.edges, *decoder.edges, Edge(memory, cross, "memory", "K, V\n(B, S, D)", 4.05)]
    model = "the date translator" if norm_first else "the paper"
    title = f"Encoder–decoder ({model}), {_order(norm_first)}"
    return Diagram(title, (*encoder.nodes, *decoder.nodes), tuple(edges), tuple(frames))


def _bert(num_layers, heads: tuple[str, ...], num_labels: int) -> Diagram:
    x = 4.0
    inputs = [
        Node("input_ids", "input_ids", "io", x - 1.5, 0.27, 1.4, 0.54, "(B, T)"),
        Node("token_type_ids", "token_type_ids", "io", x, 0.27, 1.4, 0.54, "(B, T)"),
        Node("positions", "positions", "io", x + 1.5, 0.27, 1.4, 0.54, "0 … T-1"),
    ]
    names = {"input_ids": "token", "token_type_ids": "segment", "positions": "position"}
    embeddings = [
        Node(
            f"{n.key}_embedding",
            names[n.key],
            "embed",
            n.x,
            1.15,
            1.4,
            0.56,
            note="learned, (B, T, D)",
        )
        for n in inputs
    ]
    column = Column(x, y=1.75)
    column.add("embedding_sum", "+", "add")
    edges = [Edge(n.key, e.key) for n, e in zip(inputs, embeddings, strict=True)]
    edges += [Edge(e.key, "embedding_sum") for e in embeddings]
    column.add("embedding_norm", "LayerNorm", "norm", note="of the embeddings", shape="(B, T, D)")
    members = _encoder_block(
        column, norm_first=False, length="T", mask="mask: padding (B, 1, 1, T)\nfrom attention_mask"
    )
    frame = Frame(
        f"encoder (post-LN)\n{_layers(num_layers)}", tuple(members), column.residual_x + 0.15
    )
    hidden = column.add(
        "hidden", "hidden states", "io", note="one vector per token", shape="(B, T, D)"
    )
    nodes = [*inputs, *embeddings]
    edges += column.edges
    start = column.y + 0.5
    if "mlm" in heads:
        mlm = Column(x - 1.35 if len(heads) == 2 else x, y=start, width=2.45, prefix="mlm_")
        first = mlm.add(
            "head",
            "pretraining: masked-LM head",
            "head",
            note="Linear → GELU → LayerNorm →\nLinear tied to the token embedding",
        )
        mlm.add(
            "logits", "logits (B, T, V)", "io", note="scored at the chosen 15%", shape="(B, T, V)"
        )
        nodes += mlm.nodes
        edges += [Edge(hidden, first, "main", "(B, T, D)"), *mlm.edges]
    if "classifier" in heads:
        classify = Column(
            x + 1.35 if len(heads) == 2 else x, y=start, width=2.45, prefix="classifier_"
        )
        first = classify.add(
            "head",
            "fine-tuning: classifier head",
            "head",
            note="h[:, 0], the [CLS] vector (B, D)\n→ dropout → Linear",
        )
        classify.add(
            "logits",
            f"logits (B, {num_labels})",
            "io",
            note="one label per sentence",
            shape=f"(B, {num_labels})",
        )
        nodes += classify.nodes
        edges += [
            Edge(hidden, first, "main", "" if "mlm" in heads else "(B, T, D)"),
            *classify.edges,
        ]
    return Diagram(
        "BERT: three embeddings + a post-LN encoder + a task head",
        (*nodes, *column.nodes),
        tuple(edges),
        (frame,),
    )


def _vit(num_layers, num_patches, num_classes: int) -> Diagram:
    column = Column(3.0, width=2.6)
    column.add("images", "images (B, C, H, W)", "io")
    column.add(
        "patch_embedding",
        "patch embedding",
        "embed",
        note="cut into P patches, flatten each,\none shared Linear to D",
        shape="(B, C, H, W)",
    )
    column.add(
        "cls", "prepend [CLS]", "embed", note="a learned token with no pixels", shape="(B, P, D)"
    )
    column.add(
        "positions",
        "+ learned positions",
        "embed",
        note="one vector per token",
        shape="(B, P+1, D)",
    )
    members = _encoder_block(
        column, norm_first=True, length="P+1", mask="no mask: every token sees every token"
    )
    frame = Frame(
        f"encoder (pre-LN)\n{_layers(num_layers)}", tuple(members), column.residual_x + 0.15
    )
    _final_norm(column, "P+1")
    column.add("read_cls", "read [CLS]: h[:, 0]", "head", shape="(B, P+1, D)")
    column.add("head", "Linear head", "linear", shape="(B, D)")
    column.add(
        "logits",
        f"logits (B, {num_classes})",
        "io",
        note="one class per image",
        shape=f"(B, {num_classes})",
    )
    tokens = "" if num_patches is None else f": P = {num_patches} patches + [CLS]"
    return Diagram(
        f"Vision Transformer, pre-LN{tokens}", tuple(column.nodes), tuple(column.edges), (frame,)
    )


def diagram_data(name: str, **options) -> Diagram:
    """The picture as data: nodes (label, kind, note), edges (main / residual / memory), frames.

    Args:
        name: "encoder_layer", "norm_placement", "decoder_layer", "seq2seq", "bert" or "vit".
        options: the keyword arguments of the matching `*_diagram` function.

    Returns:
        A `Diagram`; `diagram.path(a, b)` lists the node keys along the main path from a to b.
    """
    builders = {
        "encoder_layer": _encoder_layer_options,
        "norm_placement": _norm_placement,
        "decoder_layer": _decoder_layer_options,
        "seq2seq": _seq2seq_options,
        "bert": _bert_options,
        "vit": _vit_options,
    }
    if name not in builders:
        raise ValueError(f"name must be one of {sorted(builders)}, got {name!r}")
    return builders[name](**options)


def _encoder_layer_options(*, norm_first: bool) -> Diagram:
    return _encoder_layer(_check_flag(norm_first))


def _norm_placement() -> Diagram:
    return _merge(
        "Where LayerNorm sits: post-LN (the paper, left) vs pre-LN (right)",
        _encoder_layer(False, x=2.0, prefix="post_"),
        _encoder_layer(True, x=6.4, prefix="pre_"),
    )


def _decoder_layer_options(*, norm_first: bool) -> Diagram:
    return _decoder_layer(_check_flag(norm_first))


def _seq2seq_options(*, norm_first: bool = True, num_encoder_layers=None, num_decoder_layers=None):
    return _seq2seq(
        _check_flag(norm_first),
        _check_count("num_encoder_layers", num_encoder_layers),
        _check_count("num_decoder_layers", num_decoder_layers),
    )


def _bert_options(*, num_layers=None, heads=BERT_HEADS, num_labels: int = 2) -> Diagram:
    heads = (heads,) if isinstance(heads, str) else tuple(heads)
    if not heads or any(h not in BERT_HEADS for h in heads) or len(set(heads)) != len(heads):
        raise ValueError(f"heads must be a non-empty selection of {BERT_HEADS}, got {heads!r}")
    heads = tuple(h for h in BERT_HEADS if h in heads)
    return _bert(
        _check_count("num_layers", num_layers),
        heads,
        _check_count("num_labels", num_labels, allow_none=False),
    )


def _vit_options(*, num_layers=None, num_patches=None, num_classes: int = 10) -> Diagram:
    return _vit(
        _check_count("num_layers", num_layers),
        _check_count("num_patches", num_patches),
        _check_count("num_classes", num_classes, allow_none=False),
    )


def encoder_layer_diagram(*, norm_first: bool):
    """One `tfm_edu.layers.EncoderLayer`: self-attention (padding mask) and feed-forward, each in
    its residual block, with LayerNorm after the add (post-LN) or before the sublayer (pre-LN).

    Args:
        norm_first: False = post-LN (the paper, BERT), True = pre-LN (the translator, ViT).

    Returns:
        A matplotlib Figure.
    """
    return draw(diagram_data("encoder_layer", norm_first=norm_first))


def norm_placement_diagram():
    """Post-LN and pre-LN encoder layers side by side (chapter 4's comparison).

    Returns:
        A matplotlib Figure.
    """
    return draw(diagram_data("norm_placement"))


def decoder_layer_diagram(*, norm_first: bool):
    """One `tfm_edu.layers.DecoderLayer`: masked self-attention (causal mask), cross-attention to
    the memory (source padding mask), feed-forward.

    Args:
        norm_first: False = post-LN (the paper), True = pre-LN (the date translator).

    Returns:
        A matplotlib Figure.
    """
    return draw(diagram_data("decoder_layer", norm_first=norm_first))


def seq2seq_diagram(*, norm_first: bool = True, num_encoder_layers=None, num_decoder_layers=None):
    """The encoder-decoder of `tfm_edu.models.seq2seq` (the paper's figure 1, our order).

    Args:
        norm_first: True (default) = pre-LN like the shipped date translator; False = post-LN.
        num_encoder_layers, num_decoder_layers: shown as "x n layers" (None: "x N layers").

    Returns:
        A matplotlib Figure.
    """
    return draw(
        diagram_data(
            "seq2seq",
            norm_first=norm_first,
            num_encoder_layers=num_encoder_layers,
            num_decoder_layers=num_decoder_layers,
        )
    )


def bert_diagram(*, num_layers=None, heads=BERT_HEADS, num_labels: int = 2):
    """`tfm_edu.models.bert`: token + segment + position embeddings, LayerNorm, a post-LN encoder
    with the padding mask, and the masked-LM and/or classification head.

    Args:
        num_layers: shown as "x n layers" (None: "x N layers").
        heads: "mlm", "classifier" or both (default).
        num_labels: classes of the classifier head.

    Returns:
        A matplotlib Figure.
    """
    return draw(diagram_data("bert", num_layers=num_layers, heads=heads, num_labels=num_labels))


def vit_diagram(*, num_layers=None, num_patches=None, num_classes: int = 10):
    """`tfm_edu.models.vit.ViT`: patch embedding, [CLS], learned positions, a pre-LN encoder with
    no mask, the final LayerNorm, and the Linear head on [CLS].

    Args:
        num_layers: shown as "x n layers" (None: "x N layers").
        num_patches: P, shown in the title when given.
        num_classes: outputs of the head.

    Returns:
        A matplotlib Figure.
    """
    return draw(
        diagram_data("vit", num_layers=num_layers, num_patches=num_patches, num_classes=num_classes)
    )
