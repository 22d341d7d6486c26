"""Chapter 9: what a character GPT would write next, and why: the numbers behind its sampling.

A language model ends every step with one distribution over its V tokens, softmax(logits) at the
last position. `tfm_edu.decode.generate` reshapes it with three knobs before it draws (Holtzman
et al., 2020, "The Curious Case of Neural Text Degeneration", compare them):
- temperature: softmax(logits / temperature); below 1 sharpens, above 1 flattens, 0 is greedy;
- top-k: only the k most likely tokens may be drawn;
- top-p: only the smallest set of most likely tokens whose probability reaches p (the nucleus);
then it renormalises what is left to sum to 1. `next_token_table` lays these steps side by side
for the most likely characters: the raw probability, after temperature, kept or cut, and the final
probability `generate` draws from, computed with `decode`'s own functions (`next_token_probs`,
`filter_top_k`, `filter_top_p`), so the table shows exactly what sampling does.

`last_position_attention` gives what the last character reads in every layer and head: the
attention row that decides the next character. `sample_next` and `generate_text` continue the
prompt with `generate` (KV cache on), seeded through a `torch.Generator` the caller passes in.

Every function reads the prompt through `check_prompt`: a prompt longer than the model's context
(`block_size`) is cut to the window generation reads (`decode.context_start`), characters outside
the alphabet are
read as [UNK], and both are said in plain sentences (`notes`) rather than warned about.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from tfm_edu.decode import context_start, filter_top_k, filter_top_p, generate, next_token_probs
from tfm_edu.maps import AttentionMaps

__all__ = [
    "PromptCheck",
    "NextTokenTable",
    "display_char",
    "token_label",
    "check_prompt",
    "next_token_table",
    "last_position_attention",
    "sample_next",
    "generate_text",
]

# Whitespace drawn so that it can be seen (on an axis, in a table, in a one-line text box).
GLYPHS = {" ": "␣", "\n": "⏎", "\t": "⇥"}
_NAMES = {" ": "a space", "\n": "a new line", "\t": "a tab"}


@dataclass(frozen=True)
class PromptCheck:
    """A prompt as the model will read it, and what was changed on the way."""

    ids: list[int]  # the ids of the characters the model reads (empty for an empty prompt)
    notes: list[str] = field(default_factory=list)  # plain sentences: [UNK]s, cropping
    error: str | None = None  # why there is nothing to read (an empty prompt), else None


@dataclass(frozen=True)
class NextTokenTable:
    """The next-character distribution of one prompt, for its `top` most likely characters.

    All arrays have one entry per row: N = min(top, V) characters, most likely first (by the raw
    probability; ties by id).
    """

    labels: list[str]  # N display labels: "␣" space, "⏎" new line, "⇥" tab, "[EOS]"...
    ids: np.ndarray  # (N,) int64 token ids
    raw: np.ndarray  # (N,) softmax(logits): the model's own probabilities (temperature 1)
    tempered: np.ndarray  # (N,) softmax(logits / temperature) (one-hot at temperature 0)
    kept: np.ndarray  # (N,) bool: survives top-k and top-p (only the argmax when greedy)
    final: np.ndarray  # (N,) what `generate` draws from: the kept ones renormalised, 0 elsewhere
    vocab_size: int  # V
    num_kept: int  # how many of the V tokens may be drawn
    kept_mass: float  # the probability (after temperature) the kept tokens had before renormalising
    other_raw: float  # raw probability of the V - N tokens not in the table
    other_final: float  # final probability of the V - N tokens not in the table
    temperature: float
    top_k: int | None
    top_p: float | None
    greedy: bool  # temperature == 0: the most likely token, always
    notes: list[str] = field(default_factory=list)  # from `check_prompt`

    @property
    def summary(self) -> str:
        """One sentence: which knobs keep how many tokens and how much of the mass."""
        if self.greedy:
            best = self.labels[int(np.argmax(self.final))]
            return (
                f"temperature 0 (greedy): only the most likely character, '{best}', is kept "
                f"(top-k and top-p do not matter), with probability 100 %"
            )
        knobs = [f"top-k {self.top_k}"] if self.top_k is not None else []
        knobs += [f"top-p {self.top_p:g}"] if self.top_p is not None else []
        start = f"temperature {self.temperature:g}: "
        if not knobs:
            return start + f"no top-k or top-p: all {self.vocab_size} tokens may be drawn"
        verb = "keeps" if len(knobs) == 1 else "keep"
        return start + (
            f"{' and '.join(knobs)} {verb} {self.num_kept} of {self.vocab_size} tokens "
            f"({100 * self.kept_mass:.0f} % of the mass), renormalised to 100 %"
        )


def display_char(char: str) -> str:
    """A character as it can be seen: "␣" space, "⏎" new line, "⇥" tab, repr for other
    non-printables ('\\x0b'), the character itself otherwise."""
    if char in GLYPHS:
        return GLYPHS[char]
    return char if char.isprintable() else repr(char)


def token_label(tokenizer, token_id: int) -> str:
    """The display label of one id: a special token's name ("[UNK]") or `display_char`."""
    token = tokenizer.itos[int(token_id)]
    return token if len(token) != 1 else display_char(token)


def check_prompt(tokenizer, text: str, block_size: int) -> PromptCheck:
    """Read a prompt as a model with a context of `block_size` characters will. Never raises
    for a text.

    Args:
        tokenizer: a `CharTokenizer` (`encode(text, unknown="unk-quiet")`, `unknown_chars`).
        text: what the learner typed.
        block_size: the model's context (`model.config.block_size`).

    Returns:
        PromptCheck: ids of the characters the model reads (`tfm_edu.decode.context_start`:
        all of them up to `block_size`, then the window generation uses), notes on characters
        read as [UNK] and on cropping, or an error for an empty prompt.
    """
    if not isinstance(text, str):
        return PromptCheck([], [], f"The prompt must be text, got {type(text).__name__}.")
    if not text:
        return PromptCheck(
            [], [], "The prompt is empty: type a few characters (e.g. 'def ') and press Enter."
        )
    notes = []
    kept = text[context_start(len(text), block_size) :]  # the window `generate` reads
    if len(text) > block_size:
        notes.append(
            f"The prompt has {len(text)} characters, more than the model's context of "
            f"{block_size}: like generation, it reads only the last {len(kept)} "
            f"({len(text) - len(kept)} dropped; the window jumps forward by half a context "
            "at a time)."
        )
    unknown = tokenizer.unknown_chars(kept)
    if unknown:
        count = sum(char in unknown for char in kept)
        shown = ", ".join(_describe(char) for char in unknown)
        notes.append(
            f"{count} character{'s' if count != 1 else ''} of the prompt "
            f"{'are' if count != 1 else 'is'} not in the model's alphabet and "
            f"{'were' if count != 1 else 'was'} read as [UNK]: {shown}."
        )
    return PromptCheck(tokenizer.encode(kept, unknown="unk-quiet"), notes)


def next_token_table(
    model: nn.Module,
    tokenizer,
    text: str,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    top: int = 20,
) -> NextTokenTable:
    """The model's next-character distribution after `text`, step by step as `generate` makes it.

    Args:
        model: a GPT: `model(ids)` returns `.logits` (1, T, V); `.config.block_size`.
        tokenizer: its `CharTokenizer`.
        text: the prompt (cut to its last block_size characters, see `check_prompt`).
        temperature, top_k, top_p: as for `tfm_edu.decode.generate`; temperature 0 is greedy.
        top: how many characters the table lists (the most likely, by raw probability).

    Returns:
        NextTokenTable with (N,) arrays, N = min(top, V).

    Raises:
        ValueError for an empty prompt (the sentence `check_prompt` gives) or bad settings.
    """
    if not isinstance(top, int) or isinstance(top, bool) or top < 1:
        raise ValueError(f"top must be a positive int, got {top!r}")
    check = _checked(model, tokenizer, text)
    logits = _forward(model, check.ids).logits[0, -1].double().cpu()  # (V,)
    greedy = temperature == 0
    settings = {"temperature": temperature, "top_k": top_k, "top_p": top_p}
    final = next_token_probs(logits[None], **settings)[0]  # (V,); checks the settings too
    raw = torch.softmax(logits, dim=-1)  # (V,)
    if greedy:
        tempered = final  # (V,) the limit of softmax(logits / t) as t -> 0: one-hot
        kept = final > 0  # (V,)
    else:
        scaled = logits / temperature  # (V,)
        tempered = torch.softmax(scaled, dim=-1)  # (V,)
        filtered = scaled if top_k is None else filter_top_k(scaled, top_k)  # (V,)
        filtered = filtered if top_p is None else filter_top_p(filtered, top_p)  # (V,)
        kept = torch.isfinite(filtered)  # (V,)
    V = logits.shape[0]
    order = torch.sort(raw, descending=True, stable=True).indices[: min(top, V)]  # (N,)
    return NextTokenTable(
        labels=[token_label(tokenizer, i) for i in order.tolist()],
        ids=order.numpy().astype(np.int64),
        raw=raw[order].numpy(),
        tempered=tempered[order].numpy(),
        kept=kept[order].numpy(),
        final=final[order].numpy(),
        vocab_size=V,
        num_kept=int(kept.sum()),
        kept_mass=float(tempered[kept].sum()),
        other_raw=float(max(1.0 - raw[order].sum().item(), 0.0)),
        other_final=float(max(1.0 - final[order].sum().item(), 0.0)),
        temperature=float(temperature),
        top_k=top_k,
        top_p=top_p,
        greedy=greedy,
        notes=list(check.notes),
    )


def last_position_attention(model: nn.Module, tokenizer, text: str) -> AttentionMaps:
    """What the last character of the prompt reads, in every layer and head.

    Args:
        model: a GPT (`model(ids, return_attention=True)`, one (1, H, T, S) map per layer).
        tokenizer: its `CharTokenizer`.
        text: the prompt (cut to its last block_size characters, see `check_prompt`).

    Returns:
        AttentionMaps with attentions (L, H, 1, S), S = the characters read; query_tokens the
        last character's label, key_tokens every character's label; its `notice` holds the
        prompt's notes (None when there are none).

    Raises:
        ValueError for an empty prompt.
    """
    check = _checked(model, tokenizer, text)
    out = _forward(model, check.ids, return_attention=True)
    rows = torch.stack([a[0, :, -1:].cpu() for a in out.attentions])  # (L, H, 1, S)
    labels = [token_label(tokenizer, i) for i in check.ids]  # S
    return AttentionMaps(
        query_tokens=labels[-1:],
        attentions=rows,
        key_tokens=labels,
        notice=" ".join(check.notes) or None,
    )


def sample_next(
    model: nn.Module,
    tokenizer,
    text: str,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> str:
    """One character drawn after `text`, from the distribution `next_token_table` shows.

    Returns:
        The character; "" when the model drew a special token ([EOS], [UNK], ...), which is
        not a character.
    """
    return generate_text(
        model, tokenizer, text, 1, temperature=temperature, top_k=top_k, top_p=top_p,
        generator=generator,
    )  # fmt: skip


def generate_text(
    model: nn.Module,
    tokenizer,
    text: str,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> str:
    """`max_new_tokens` tokens drawn after `text` with `tfm_edu.decode.generate` (KV cache on).

    Args:
        model, tokenizer, text: as for `next_token_table`; the model reads the prompt through
            the window generation uses (`check_prompt`).
        max_new_tokens: how many tokens to draw.
        temperature, top_k, top_p: as for `generate`; temperature 0 is greedy.
        generator: a seeded `torch.Generator` (on the model's device) makes the draws repeatable.

    Returns:
        The new characters only (special tokens the model drew are left out, so the text may be
        shorter than `max_new_tokens`).
    """
    check = _checked(model, tokenizer, text)
    prompt = torch.tensor([check.ids], dtype=torch.long, device=_device(model))  # (1, T0)
    ids = generate(
        model, prompt, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
        use_cache=True, generator=generator,
    )  # fmt: skip  # (1, T0 + max_new_tokens)
    return tokenizer.decode(ids[0, prompt.shape[1] :].tolist(), stop_at_eos=False)


def _checked(model, tokenizer, text: str) -> PromptCheck:
    check = check_prompt(tokenizer, text, model.config.block_size)
    if check.error:
        raise ValueError(check.error)
    return check


def _device(model) -> torch.device:
    tensor = next(iter(model.parameters()), None)
    tensor = next(iter(model.buffers()), None) if tensor is None else tensor
    return torch.device("cpu") if tensor is None else tensor.device


@torch.no_grad()
def _forward(model, ids: list[int], return_attention: bool = False):
    """One forward pass over (1, T) ids in eval mode (the model's mode is put back)."""
    was_training = model.training
    model.eval()
    try:
        batch = torch.tensor([ids], dtype=torch.long, device=_device(model))  # (1, T)
        out = model(batch, return_attention=return_attention)
    finally:
        model.train(was_training)
    return out


def _describe(char: str) -> str:
    if char in _NAMES:
        return f"{display_char(char)} ({_NAMES[char]})"
    return repr(char)
