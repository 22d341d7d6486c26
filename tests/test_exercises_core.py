"""The check harness: each diagnosis branch, mistake matching, determinism, never raising."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from tfm_edu.exercises import Case, CheckResult, Mistake, check_function, graded
from tfm_edu.exercises.core import GRADING_VARIABLE


def double(x):
    return 2 * x


CASES = [Case((np.arange(3.0),)), Case((np.ones((2, 4)),), label="ones")]


def check(fn, mistakes=(), **kwargs):
    return check_function("double", fn, double, CASES, mistakes, **kwargs)


def test_correct_function_passes():
    result = check(lambda x: x + x)
    assert result.passed and result.status == "passed" and bool(result)
    assert result.message == "✓ double: matches the reference on 2 test cases"


def test_result_reprs_are_the_plain_message():
    result = check(double)
    assert repr(result) == str(result) == result.message
    assert not hasattr(result, "_repr_html_")  # nbval compares text only: keep it that way
    assert isinstance(result, CheckResult) and result.name == "double"


def test_stub_is_not_done():
    def double(x):
        raise NotImplementedError

    result = check(double)
    assert result.status == "not done" and not result and not result.passed
    assert result.message == (
        "… not done yet: `double` still raises NotImplementedError — write your code in the "
        "cell above, then run this cell again."
    )


def test_unfinished_helper_is_named():
    def helper(x):
        raise NotImplementedError

    def double(x):
        return helper(x) * 2

    result = check(double)
    assert result.status == "not done"
    assert "`double` calls `helper`, which still raises NotImplementedError" in result.message


def test_other_exception_is_reported_briefly():
    def double(x):
        return x / 0 if False else {}["key"]

    result = check(double)
    assert result.status == "failed"
    assert result.message == (
        "✗ double: your function raised KeyError on case 1 of 2 (x (3,)): 'key'."
    )
    assert "Traceback" not in result.message


def test_not_a_function():
    result = check(np.arange(3.0))
    assert result.status == "failed"
    assert "pass the function itself, `check_double(double)`" in result.message


@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        (lambda x: None, "your function returned None (did you forget `return`?)"),
        (lambda x: (2 * x)[None], "expected shape (3,), got (1, 3) on case 1 of 2 (x (3,))"),
        (lambda x: list(2 * x), "expected a NumPy array, got a list"),
        (lambda x: torch.from_numpy(2 * x), "expected a NumPy array, got a torch.Tensor"),
        (lambda x: (2 * x).astype(bool), "expected a float array, got dtype bool"),
    ],
)
def test_wrong_type_shape_or_dtype(fn, expected):
    result = check(fn)
    assert result.status == "failed"
    assert expected in result.message


def test_bool_reference_explains_dtype():
    result = check_function("mask", lambda t: np.ones(t), lambda t: np.ones(t, bool), [Case((3,))])
    assert "expected a bool array, got dtype float64 (use dtype=bool" in result.message


def test_tuple_outputs_name_their_items():
    def pair(x):
        return x, 2 * x

    names = ("out", "weights")
    result = check_function("pair", lambda x: x, pair, CASES, output_names=names)
    assert "expected a tuple of 2 (out, weights), got a NumPy array" in result.message
    result = check_function("pair", lambda x: (x, x), pair, CASES, output_names=names)
    assert "weights differs from the reference by up to 2 on case 1 of 2" in result.message
    result = check_function("pair", lambda x: (x, x[:1]), pair, CASES, output_names=names)
    assert "weights: expected shape (3,), got (1,)" in result.message


def test_nan_gets_its_own_message_and_the_matching_hint():
    def nan_at_ones(x):
        return np.full_like(x, np.nan) if x.ndim == 2 else 2 * x

    plain = check(nan_at_ones)
    assert "your output contains NaN on case 2 of 2 (ones: x (2, 4)), where" in plain.message
    assert "Hint" not in plain.message
    hinted = check(nan_at_ones, [Mistake("ones make NaN", nan_at_ones)])
    assert hinted.message.endswith("\n  Hint: ones make NaN")


def test_inf_is_named():
    assert "contains inf" in check(lambda x: 2 * x / (x - 1)).message


def test_values_differ_reports_the_largest_error():
    result = check(lambda x: 2 * x + 0.5)
    assert result.message == (
        "✗ double: differs from the reference by up to 0.5 on case 1 of 2 (x (3,))."
    )


def test_integer_outputs_count_wrong_entries():
    result = check_function(
        "tril",
        lambda t: np.triu(np.ones((t, t), int)),
        lambda t: np.tril(np.ones((t, t), int)),
        [Case((3,))],
    )
    assert "differs from the reference in 6 of 9 entries" in result.message


def test_first_matching_mistake_gives_the_hint():
    mistakes = [
        Mistake("unrelated", lambda x: 3 * x),
        Mistake("you added instead of multiplying", lambda x: x + 2),
        Mistake("also matches, but comes later", lambda x: x + 2.0),
    ]
    result = check(lambda x: x + 2, mistakes)
    assert result.status == "failed"
    assert result.message.endswith("\n  Hint: you added instead of multiplying")


def test_full_agreement_beats_agreement_up_to_the_first_wrong_case():
    def learner(x):
        return 3 * x  # wrong on both cases

    mistakes = [
        Mistake("agrees on case 1 only", lambda x: 3 * x if x.ndim == 1 else x),
        Mistake("agrees everywhere", lambda x: 3 * x),
    ]
    assert check(learner, mistakes).message.endswith("Hint: agrees everywhere")
    assert check(learner, mistakes[:1]).message.endswith("Hint: agrees on case 1 only")


def test_mistake_must_agree_on_the_cases_before_the_first_wrong_one():
    def learner(x):
        return 2 * x if x.ndim == 1 else 5 * x  # right on case 1, wrong on case 2

    mistakes = [Mistake("wrong on case 1 too", lambda x: 5 * x)]
    assert "Hint" not in check(learner, mistakes).message


def test_exceptions_match_only_the_same_error():
    def learner(x):
        return 2 * x if x.ndim == 1 else x @ np.ones((3, 3))  # fails on the (2, 4) case

    same = Mistake("matmul shapes", lambda x: 2 * x if x.ndim == 1 else x @ np.ones((3, 3)))
    other = Mistake("other error", lambda x: 2 * x if x.ndim == 1 else {}["k"])
    result = check(learner, [other, same])
    assert "your function raised ValueError on case 2 of 2 (ones: x (2, 4)): matmul" in str(result)
    assert result.message.endswith("Hint: matmul shapes")


def test_inputs_are_fresh_copies_and_warnings_are_silenced():
    seen = []

    def in_place(x):
        seen.append(x)
        x *= 2  # mutates its argument: must not change the reference's or later calls' input
        np.exp(np.full(2, 1000.0))  # overflow warning: must not reach the learner's output
        return x

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = check(in_place)
    assert result.passed
    assert seen[0] is not CASES[0].args[0]
    np.testing.assert_array_equal(CASES[0].args[0], np.arange(3.0))


def test_same_message_every_run():
    mistakes = [Mistake("off by a little", lambda x: 2 * x + 1e-3)]
    first = check(lambda x: 2 * x + 1e-3, mistakes)
    assert first.message == check(lambda x: 2 * x + 1e-3, mistakes).message
    assert first.message.endswith(
        "by up to 0.001 on case 1 of 2 (x (3,)).\n  Hint: off by a little"
    )


def test_torch_outputs_and_tolerances():
    def reference(x):
        return x * 2

    cases = [Case((torch.arange(4.0),))]
    assert check_function("t", lambda x: x * 2 + 1e-7, reference, cases).passed
    assert not check_function("t", lambda x: x * 2 + 1e-3, reference, cases).passed
    assert check_function("t", lambda x: x * 2 + 1e-3, reference, cases, atol=1e-2).passed
    assert check_function("t", lambda x: (x * 2).double().requires_grad_(), reference, cases)
    result = check_function("t", lambda x: (x * 2).numpy(), reference, cases)
    assert "expected a torch.Tensor, got a NumPy array" in result.message


def test_python_scalars():
    cases = [Case((3,)), Case((4,))]
    assert check_function("sq", lambda n: np.int64(n * n), lambda n: n * n, cases).passed
    result = check_function("even", lambda n: int(n % 2 == 0), lambda n: n % 2 == 0, cases)
    assert "expected a bool, got a int" in result.message


def test_custom_compare_replaces_the_value_comparison():
    def up_to_sign(got, expected):
        return np.allclose(np.abs(got), np.abs(expected))

    assert check(lambda x: -2 * x, compare=up_to_sign).passed
    assert not check(lambda x: 3 * x, compare=up_to_sign).passed


def test_never_raises():
    def broken_compare(got, expected):
        raise RuntimeError("boom")

    result = check(double, compare=broken_compare)
    assert result.status == "failed" and "could not check it (RuntimeError: boom)" in str(result)
    result = check_function("f", double, lambda x: {}["k"], CASES)
    assert result.status == "failed" and "the reference failed on case 1" in result.message


@pytest.fixture
def shell():
    """An in-process IPython shell, as in a notebook's kernel; cleared afterwards."""
    from IPython.core.interactiveshell import InteractiveShell

    yield InteractiveShell.instance()
    InteractiveShell.clear_instance()


def check_in(shell, source: str) -> str:
    shell.run_cell(source, store_history=True)
    return shell.user_ns["_check"]


def test_a_cell_with_a_syntax_error_is_reported_not_its_previous_definition(shell):
    shell.push({"check": check})
    shell.run_cell("def double(x):\n    return 2 * x", store_history=True)
    shell.run_cell("def double(x):\n    return 3 * x +* 1", store_history=True)  # does not parse
    message = str(check_in(shell, "_check = check(double)"))
    assert message.startswith("✗ double: the cell above did not run: SyntaxError on line 2")
    assert "would test your previous `double`" in message
    # once the cell is fixed and run, the check answers for the new code again
    shell.run_cell("def double(x):\n    return 3 * x", store_history=True)
    assert "differs from the reference" in str(check_in(shell, "_check = check(double)"))


def test_a_syntax_error_elsewhere_does_not_block_the_check(shell):
    shell.push({"check": check})
    shell.run_cell("def double(x):\n    return 2 * x", store_history=True)
    shell.run_cell("print('unrelated' +* 1)", store_history=True)
    assert check_in(shell, "_check = check(double)").passed
    shell.run_cell("def double(x):\n    raise ValueError('boom')", store_history=True)  # runs
    assert "raised ValueError" in str(check_in(shell, "_check = check(double)"))


def test_check_against_names_the_reference_that_disagrees():
    from tfm_edu.exercises import check_against

    references = [("ours", double), ("theirs", lambda x: x * 2.0 + (x.size > 3))]
    result = check_against("double", double, references, CASES, passed="matches both")
    assert result.status == "failed" and "differs from theirs by up to 1 on case 2" in str(result)
    result = check_against("double", lambda x: 3 * x, references, CASES, passed="matches both")
    assert "differs from ours" in str(result)
    agreeing = check_against("double", double, references[:1] * 2, CASES, passed="matches both")
    assert agreeing.passed and agreeing.message == "✓ double: matches both"


# ------------------------------------------------------------------ graded by nbgrader

graded_check = graded(check)


def not_done(x):
    raise NotImplementedError


@pytest.mark.parametrize("mode", ["autograde", "validate"])
def test_under_nbgrader_a_check_that_does_not_pass_raises_the_learners_message(monkeypatch, mode):
    learner_sees = [check(lambda x: 3 * x).message, check(not_done).message]
    monkeypatch.setenv(GRADING_VARIABLE, mode)
    for fn, message in zip([lambda x: 3 * x, not_done], learner_sees, strict=True):
        with pytest.raises(AssertionError) as raised:
            graded_check(fn)
        assert str(raised.value) == message
    assert learner_sees[0].startswith("✗ double: differs") and "not done yet" in learner_sees[1]


def test_for_a_learner_a_graded_check_returns_its_result(monkeypatch):
    monkeypatch.delenv(GRADING_VARIABLE, raising=False)
    result = graded_check(not_done)
    assert isinstance(result, CheckResult) and result.status == "not done"
    assert graded_check(double).message == "✓ double: matches the reference on 2 test cases"
    assert graded_check.__name__ == "check" and graded_check.graded


def test_under_nbgrader_a_passing_check_prints_its_tick(monkeypatch, capsys):
    monkeypatch.setenv(GRADING_VARIABLE, "autograde")
    assert graded_check(double) is None  # nbgrader would read a returned value as a score
    assert capsys.readouterr().out == "✓ double: matches the reference on 2 test cases\n"


def _notebook_checks():
    """Every check_* a chapter can import: (module.name, function)."""
    import importlib
    import pkgutil

    import tfm_edu.exercises

    found = []
    for info in pkgutil.iter_modules(tfm_edu.exercises.__path__):
        module = importlib.import_module(f"tfm_edu.exercises.{info.name}")
        for name in module.__all__:
            if name.startswith("check_") and name not in {"check_function", "check_against"}:
                found.append(pytest.param(getattr(module, name), id=f"{info.name}.{name}"))
    return found


@pytest.mark.parametrize("check_fn", _notebook_checks())
def test_every_chapter_check_is_graded(check_fn, monkeypatch):
    """No chapter's check can forget `@graded`: given a stub, each one raises under nbgrader."""
    assert getattr(check_fn, "graded", False), check_fn.__name__

    def stub(*args, **kwargs):
        raise NotImplementedError

    monkeypatch.setenv(GRADING_VARIABLE, "autograde")
    with pytest.raises(AssertionError, match="not done yet"):
        check_fn(stub)


def test_the_chapters_call_only_those_checks():
    import json
    import re
    from pathlib import Path

    graded_names = {param.values[0].__name__ for param in _notebook_checks()}
    called = set()
    for path in (Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] == "code":
                called |= set(re.findall(r"^(check_\w+)\(", "".join(cell["source"]), re.M))
    assert len(called) >= 27 and called <= graded_names, called - graded_names
