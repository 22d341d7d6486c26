"""What the exercise-check tests share: a learner's unfinished stub, and the hint assertion."""


def assert_hint(result, fragment):
    """The check failed, gave a hint, and the hint contains `fragment` (whitespace-insensitive)."""
    assert result.status == "failed", result.message
    assert "Hint:" in result.message, result.message
    assert fragment in " ".join(result.message.split()), result.message


def stub(*args, **kwargs):
    """What an exercise cell holds before the learner writes anything."""
    raise NotImplementedError
