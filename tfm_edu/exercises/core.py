"""The harness behind every "Your turn" check: run the learner's function, compare, give a hint.

A check calls the learner's function and our reference on the same few seeded inputs (`Case`s),
so it prints the same verdict on every run (nbval stores it). When the outputs differ, it also
runs a list of typical wrong implementations (`Mistake`s) on those inputs; the first one that
behaves like the learner's function names the bug in its hint. The learner reads one
`CheckResult` (a line, plus the hint), in this order of diagnosis:

0. the cell defining it did not run (SyntaxError)  -> "✗ … the cell above did not run: ..."
1. the function still raises NotImplementedError   -> "… not done yet: ..."
2. it raises anything else                         -> "✗ your function raised TypeError: ..."
3. wrong type, tuple length, shape or dtype kind   -> expected vs got
4. NaN or inf where the reference has none         -> "your output contains NaN ..."
5. different values                                -> "differs from the reference by up to ..."

and a "Hint:" line whenever a `Mistake` matches. A check never raises: a broken check says so in
its message. Outputs may be NumPy arrays, torch tensors, Python numbers, or tuples of them;
torch is only touched when an output is a tensor, so chapter 1 never imports it.

Graded by nbgrader, a check speaks the grader's language instead. Every notebook-facing
`check_*` is wrapped by `@graded`, the one place that looks at the `NBGRADER_EXECUTION`
variable nbgrader sets while it runs a notebook ("autograde", or "validate"): there, a check
that did not pass raises `AssertionError` with the very message the learner would read, so the
check cell fails (no points) and the feedback shows the hint; a check that passes prints its ✓
line and returns None, because nbgrader would read a returned value as a partial score.
"""

from __future__ import annotations

import copy
import functools
import inspect
import os
import re
import sys
import textwrap
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "Case",
    "Mistake",
    "CheckResult",
    "check_function",
    "check_against",
    "graded",
    "GRADING_VARIABLE",
]

GRADING_VARIABLE = "NBGRADER_EXECUTION"  # set by nbgrader while it autogrades or validates

_KINDS = {"b": "bool", "i": "int", "u": "int", "f": "float", "c": "complex"}


@dataclass(frozen=True)
class Case:
    """One input to try: `fn(*args, **kwargs)`. Checks build them from a seeded RNG."""

    args: tuple = ()  # positional arguments, deep-copied before every call
    kwargs: dict = field(default_factory=dict)  # keyword arguments, deep-copied too
    label: str = ""  # what is special about this case, e.g. "large logits near 1000"


@dataclass(frozen=True)
class Mistake:
    """A typical wrong implementation, and the hint to show when the learner's function matches it.

    "Behaving alike" on a case: both return the same output (within the check's tolerance, NaN
    equal to NaN), or both raise the same exception with the same message. The first mistake
    that behaves like the learner's function on every case wins; failing that, the first one
    that does on every case up to the first case the learner gets wrong.
    """

    hint: str  # what is wrong and how to fix it, in one or two sentences
    wrong: Callable[..., Any]  # same signature as the function under check


@dataclass(frozen=True, repr=False)
class CheckResult:
    """The verdict of one check; Jupyter shows `message` (plain text only, deterministic).

    `bool(result)` is `result.passed`, so `assert check_softmax(softmax)` works in tests.
    """

    name: str  # the function checked, e.g. "softmax"
    status: str  # "passed", "failed" or "not done"
    message: str  # the text the learner reads: "✓ ...", "✗ ..." or "… not done yet: ..."

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return self.message

    __str__ = __repr__


@dataclass(frozen=True)
class _Raised:
    """Stands for an exception where an output would be."""

    error: Exception

    @property
    def summary(self) -> str:
        return f"{type(self.error).__name__}: {_first_line(self.error)}"


def check_function(
    name: str,
    fn: Callable[..., Any],
    reference: Callable[..., Any],
    cases: Sequence[Case],
    mistakes: Sequence[Mistake] = (),
    compare: Callable[[Any, Any], bool] | None = None,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    *,
    output_names: Sequence[str] | None = None,
) -> CheckResult:
    """Run `fn` and `reference` on every case and diagnose the first case where they differ.

    Args:
        name: the function's name as the notebook writes it, e.g. "softmax".
        fn: the learner's function (or any callable).
        reference: the correct implementation, same signature (its parameter names label cases).
        cases: the inputs, at least one; keep them small and seeded.
        mistakes: typical wrong implementations with their hints, most specific first.
        compare: optional `(got, expected) -> bool` replacing the value comparison (the type,
            shape, dtype-kind and NaN checks still come first); default: allclose per array.
        atol, rtol: tolerances of the default comparison (`np.allclose` semantics).
        output_names: names of a tuple output's items, e.g. ("out", "weights"), for messages.

    Returns:
        A `CheckResult`; this function never raises.
    """
    try:
        if not callable(fn):
            return _failed(
                name,
                f"expected a function, got {type(fn).__name__}: pass the function itself, "
                f"`check_{name}({name})`, not the result of calling it.",
            )
        stale = _definition_did_not_run(name, fn)
        if stale is not None:
            return _failed(name, stale)
        settings = _Settings(compare, atol, rtol, tuple(output_names or ()))
        expected = [_call(reference, case) for case in cases]
        for k, out in enumerate(expected):
            if isinstance(out, _Raised):
                return _failed(name, f"the reference failed on case {k + 1} ({out.summary}).")
        got = [_call(fn, case) for case in cases]
        for out in got:
            if isinstance(out, _Raised) and isinstance(out.error, NotImplementedError):
                return _not_done(name, fn, out.error)
        for k, (mine, ref) in enumerate(zip(got, expected, strict=True)):
            problem = _diagnose(mine, ref, settings)
            if problem is not None:
                what, after = problem
                where = f"case {k + 1} of {len(cases)} ({_describe(reference, cases[k])})"
                hint = _matching_hint(got, k, cases, mistakes, settings)
                text = f"{what} on {where}{after}"
                return _failed(name, text if text.endswith((".", "!", "?")) else text + ".", hint)
        return CheckResult(
            name, "passed", f"✓ {name}: matches the reference on {len(cases)} test cases"
        )
    except Exception as error:  # a check must never break the learner's notebook
        return _failed(name, f"could not check it ({type(error).__name__}: {_first_line(error)}).")


def check_against(
    name: str,
    fn: Callable[..., Any],
    references: Sequence[tuple[str, Callable[..., Any]]],
    cases: Sequence[Case],
    mistakes: Sequence[Mistake] = (),
    *,
    passed: str,
    **options: Any,
) -> CheckResult:
    """`check_function` against several references in turn, e.g. the package's module, then
    PyTorch's own: the first that disagrees gives the verdict, naming it.

    Args:
        name, fn, cases, mistakes: as for `check_function`.
        references: (label, reference) pairs, e.g. ("nn.TransformerEncoderLayer", run_torch);
            a failure says "differs from <label>" instead of "differs from the reference".
        passed: what the ✓ line says after the name, e.g. "matches EncoderLayer and ...".
        options: `check_function`'s keyword arguments (atol, rtol, output_names, compare).

    Returns:
        A `CheckResult`; this function never raises.
    """
    for label, reference in references:
        result = check_function(name, fn, reference, cases, mistakes, **options)
        if not result.passed:
            return CheckResult(name, result.status, result.message.replace("the reference", label))
    return CheckResult(name, "passed", f"✓ {name}: {passed}")


def graded(check: Callable[..., CheckResult]) -> Callable[..., CheckResult | None]:
    """Make `check` answer nbgrader too: the decorator every notebook's `check_*` carries.

    For a learner nothing changes: the check returns its `CheckResult` and Jupyter shows it.
    While nbgrader runs the notebook (`GRADING_VARIABLE` set), a result that did not pass raises
    `AssertionError(result.message)` (the check cell then scores zero and the feedback shows the
    hint), and a passing result is printed and None returned, since nbgrader reads a cell's
    returned value as its partial score.
    """

    @functools.wraps(check)
    def run(*args: Any, **kwargs: Any) -> CheckResult | None:
        result = check(*args, **kwargs)
        if not os.environ.get(GRADING_VARIABLE):
            return result
        if not result.passed:
            raise AssertionError(result.message)
        print(result.message)
        return None

    run.graded = True  # what tests look for: every notebook-facing check_* is wrapped
    return run


@dataclass(frozen=True)
class _Settings:
    compare: Callable[[Any, Any], bool] | None
    atol: float
    rtol: float
    output_names: tuple[str, ...]


def _call(fn: Callable[..., Any], case: Case) -> Any:
    """fn on a fresh copy of the case (so in-place edits cannot leak), silencing warnings."""
    args, kwargs = copy.deepcopy(case.args), copy.deepcopy(case.kwargs)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            return fn(*args, **kwargs)
        except Exception as error:
            return _Raised(error)


def _diagnose(got: Any, expected: Any, settings: _Settings) -> tuple[str, str] | None:
    """What is wrong with `got` as (problem, after the case), or None if it is right."""
    if isinstance(got, _Raised):
        return f"your function raised {type(got.error).__name__}", f": {_first_line(got.error)}"
    mismatch = _structure_mismatch(got, expected, settings.output_names)
    if mismatch is not None:
        return mismatch, ""
    bad = _non_finite(got, expected, settings.output_names)
    if bad is not None:
        return bad, ", where the reference has none"
    if settings.compare is not None:
        return None if settings.compare(got, expected) else ("differs from the reference", "")
    for label, mine, ref in _leaves(got, expected, settings.output_names):
        a, b = _as_numpy(mine), _as_numpy(ref)
        if a.dtype.kind in "biu" or b.dtype.kind in "biu":
            wrong = int(np.sum(a != b))
            if wrong:
                return f"{label}differs from the reference in {wrong} of {a.size} entries", ""
        elif not np.allclose(a, b, atol=settings.atol, rtol=settings.rtol):
            error = float(np.max(np.abs(a - b)))
            return f"{label}differs from the reference by up to {error:.3g}", ""
    return None


def _agree(a: Any, b: Any, settings: _Settings) -> bool:
    """Do two outputs count as the same behaviour? (Used to match a Mistake.)"""
    if isinstance(a, _Raised) or isinstance(b, _Raised):
        return isinstance(a, _Raised) and isinstance(b, _Raised) and a.summary == b.summary
    if _structure_mismatch(a, b, ()) is not None:
        return False
    if settings.compare is not None:
        return bool(settings.compare(a, b))
    for _, x, y in _leaves(a, b, ()):
        x, y = _as_numpy(x), _as_numpy(y)
        if x.dtype.kind in "biu" or y.dtype.kind in "biu":
            if not np.array_equal(x, y):
                return False
        elif not np.allclose(x, y, atol=settings.atol, rtol=settings.rtol, equal_nan=True):
            return False
    return True


def _matching_hint(got, first_wrong, cases, mistakes, settings) -> str | None:
    """The hint of the first mistake that agrees with the learner on every case; failing that,
    of the first one that agrees up to the first wrong case (a learner's slip may differ from
    ours on a later, harsher case, e.g. -1e9 instead of -inf on a fully masked row)."""
    agreements = []
    for mistake in mistakes:
        wrong = [_call(mistake.wrong, case) for case in cases]
        agreements.append([_agree(g, w, settings) for g, w in zip(got, wrong, strict=True)])
    for mistake, agree in zip(mistakes, agreements, strict=True):
        if all(agree):
            return mistake.hint
    for mistake, agree in zip(mistakes, agreements, strict=True):
        if all(agree[: first_wrong + 1]):
            return mistake.hint
    return None


def _structure_mismatch(got: Any, expected: Any, names: tuple[str, ...]) -> str | None:
    """Type, tuple length, shape or dtype kind that differ, said plainly; None if they agree."""
    if isinstance(expected, tuple):
        if not isinstance(got, (tuple, list)):
            what = f" ({', '.join(names)})" if names else ""
            return f"expected a tuple of {len(expected)}{what}, got {_type_name(got)}"
        if len(got) != len(expected):
            return f"expected a tuple of {len(expected)} items, got {len(got)}"
        for i, (mine, ref) in enumerate(zip(got, expected, strict=True)):
            problem = _structure_mismatch(mine, ref, ())
            if problem is not None:
                label = names[i] if i < len(names) else f"item {i}"
                return f"{label}: {problem}"
        return None
    if got is None:
        return "your function returned None (did you forget `return`?)"
    if _is_tensor(expected) and not _is_tensor(got):
        return f"expected a torch.Tensor, got {_type_name(got)}"
    if isinstance(expected, np.ndarray) and not isinstance(got, (np.ndarray, np.generic)):
        return f"expected a NumPy array, got {_type_name(got)}"
    if not (_is_tensor(expected) or isinstance(expected, np.ndarray)):
        if isinstance(got, (np.ndarray, np.generic)) and np.ndim(got) == 0:
            got = got.item()
        kind_ok = isinstance(got, bool) == isinstance(expected, bool)
        if not kind_ok or not isinstance(got, (int, float, complex)):
            return f"expected {_type_name(expected)}, got {_type_name(got)}"
        return None
    got_shape, expected_shape = tuple(got.shape), tuple(expected.shape)
    if got_shape != expected_shape:
        return f"expected shape {expected_shape}, got {got_shape}"
    got_kind, expected_kind = _kind(got), _kind(expected)
    if got_kind != expected_kind:
        advice = " (use dtype=bool, or `.astype(bool)`)" if expected_kind == "bool" else ""
        return f"expected a {expected_kind} array, got dtype {_dtype_name(got)}{advice}"
    return None


def _non_finite(got: Any, expected: Any, names: tuple[str, ...]) -> str | None:
    for label, mine, ref in _leaves(got, expected, names):
        a, b = _as_numpy(mine), _as_numpy(ref)
        if a.dtype.kind not in "fc":
            continue
        for test, word in ((np.isnan, "NaN"), (np.isinf, "inf")):
            if np.any(test(a) & ~test(b)):
                return f"your {label or 'output '}contains {word}"
    return None


def _leaves(got: Any, expected: Any, names: tuple[str, ...]):
    """(label, got_leaf, expected_leaf) for each array or number; label is "" or "weights "."""
    if isinstance(expected, tuple):
        for i, (mine, ref) in enumerate(zip(got, expected, strict=True)):
            label = names[i] if i < len(names) else f"item {i}"
            for _, a, b in _leaves(mine, ref, ()):
                yield f"{label} ", a, b
    else:
        yield "", got, expected


def _as_numpy(x: Any) -> np.ndarray:
    """Arrays to compare: tensors detached to the CPU, floats as float64 (bfloat16 has no NumPy
    twin)."""
    if _is_tensor(x):
        x = x.detach().cpu()
        return (x.double() if x.is_floating_point() else x).numpy()
    return np.asarray(x)


def _is_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")  # never imported here: chapter 1 runs without torch
    return torch is not None and isinstance(x, torch.Tensor)


def _kind(x: Any) -> str:
    """'bool', 'int', 'float' or 'complex': what must match (float32 vs float64 need not)."""
    if _is_tensor(x):
        if x.dtype.is_complex:
            return "complex"
        if x.is_floating_point():
            return "float"
        return "bool" if x.dtype == sys.modules["torch"].bool else "int"
    dtype = np.asarray(x).dtype
    return _KINDS.get(dtype.kind, str(dtype))


def _dtype_name(x: Any) -> str:
    return str(x.dtype) if _is_tensor(x) else str(np.asarray(x).dtype)


def _type_name(x: Any) -> str:
    if _is_tensor(x):
        return "a torch.Tensor"
    if isinstance(x, np.ndarray):
        return "a NumPy array"
    return "None" if x is None else f"a {type(x).__name__}"


def _describe(reference: Callable[..., Any], case: Case) -> str:
    """'x (3, 5), axis=0' using the reference's parameter names, prefixed by the case label."""
    try:
        bound = inspect.signature(reference).bind(*case.args, **case.kwargs).arguments
    except (TypeError, ValueError):
        bound = {f"arg{i + 1}": a for i, a in enumerate(case.args)} | dict(case.kwargs)
    parts = []
    for key, value in bound.items():
        if hasattr(value, "shape") and hasattr(value, "dtype"):
            parts.append(f"{key} {tuple(value.shape)}")
        elif value is None or isinstance(value, (bool, int, float, str)):
            parts.append(f"{key}={value!r}")
        else:
            parts.append(f"{key}: {type(value).__name__}")
    text = ", ".join(parts)
    return f"{case.label}: {text}" if case.label else text


def _definition_did_not_run(name: str, fn: Callable[..., Any]) -> str | None:
    """Why `fn` is stale, if the last cell the learner ran defines it but never ran.

    A cell with a SyntaxError runs nothing, so `fn` is still the previous definition (often the
    stub, or an earlier attempt): checking it would answer for code the learner no longer sees.
    IPython's `last_execution_result` is the cell run before this check's cell; outside IPython
    (scripts, tests) there is nothing to look at.
    """
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    result = getattr(shell, "last_execution_result", None)
    error = getattr(result, "error_before_exec", None)
    if not isinstance(error, SyntaxError):
        return None
    source = getattr(getattr(result, "info", None), "raw_cell", "") or ""
    names = {name, getattr(fn, "__name__", name)}
    alternatives = "|".join(map(re.escape, names))
    pattern = rf"^\s*(?:async\s+)?(?:def|class)\s+(?:{alternatives})\b"
    if not re.search(pattern, source, re.MULTILINE):
        return None
    where = f" on line {error.lineno}" if error.lineno else ""
    return (
        f"the cell above did not run: {type(error).__name__}{where} ({error.msg}). Nothing in "
        f"that cell was defined, so this check would test your previous `{name}`. Fix the "
        "cell, run it, then run this check again."
    )


def _not_done(name: str, fn: Callable[..., Any], error: Exception) -> CheckResult:
    """'not done yet', naming the unfinished helper when the stub is not `fn` itself."""
    innermost = error.__traceback__
    while innermost is not None and innermost.tb_next is not None:
        innermost = innermost.tb_next
    raiser = innermost.tb_frame.f_code.co_name if innermost is not None else name
    owner = innermost.tb_frame.f_locals.get("self") if innermost is not None else None
    own = getattr(fn, "__name__", name)
    if owner is not None and type(owner).__name__ == name:  # a method of the class under check
        text = (
            f"… not done yet: `{name}.{raiser}` still raises NotImplementedError — write your "
            "code in the cell above, then run this cell again."
        )
    elif raiser not in (own, name, "<lambda>", "<module>", "_call") and raiser.isidentifier():
        text = (
            f"… not done yet: `{name}` calls `{raiser}`, which still raises NotImplementedError "
            f"— finish `{raiser}` first, then run this cell again."
        )
    else:
        text = (
            f"… not done yet: `{name}` still raises NotImplementedError — write your code in "
            "the cell above, then run this cell again."
        )
    return CheckResult(name, "not done", text)


def _failed(name: str, problem: str, hint: str | None = None) -> CheckResult:
    text = f"✗ {name}: {problem}"
    if hint:
        text += "\n" + textwrap.fill(
            hint, width=96, initial_indent="  Hint: ", subsequent_indent="        "
        )
    return CheckResult(name, "failed", text)


def _first_line(error: BaseException, limit: int = 200) -> str:
    lines = str(error).strip().splitlines()
    line = lines[0] if lines else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"
