"""The semantic checks on synthetic answers."""

from __future__ import annotations

from typing import Any

from conformance.checks.semantics import (
    check_completion_text,
    check_max_tokens,
    check_models_scoped,
    check_n_choices,
    check_path_model,
    check_seed_repeatable,
    check_stop_absent,
    check_stream_agrees,
    check_streamed_n_choices,
    check_usage_sum,
    choice_texts,
)


def completion(
    *texts: str,
    finish: str = "stop",
    completion_tokens: int = 3,
    prompt_tokens: int = 5,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "model": "mythomax",
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": t},
                "text": t,
                "finish_reason": finish,
            }
            for i, t in enumerate(texts)
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        **extra,
    }


def ids(findings: list[Any]) -> list[str]:
    return [f.requirement_id for f in findings]


def test_max_tokens() -> None:
    assert check_max_tokens(completion("a", completion_tokens=2), 3) == []
    assert check_max_tokens(completion("a", completion_tokens=3, finish="length"), 3) == []
    assert ids(check_max_tokens(completion("a", completion_tokens=9, finish="length"), 3)) == [
        "SEM-MAX-TOKENS"
    ]
    (finding,) = check_max_tokens(completion("a", completion_tokens=3, finish="stop"), 3)
    assert "'length'" in finding.message
    assert (
        check_max_tokens(
            completion("a", completion_tokens=3, finish="stop"), 3, may_stop_early=True
        )
        == []
    )
    assert check_max_tokens({"choices": []}, 3) == []  # no usage: the schema rules say so


def test_usage_sum() -> None:
    assert check_usage_sum({"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}) == []
    (finding,) = check_usage_sum({"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 6})
    assert "2 + 3 = 5" in finding.message


def test_stop_absent() -> None:
    assert check_stop_absent({0: "Hello there"}, ["xyz"]) == []
    (finding,) = check_stop_absent({0: "Hello there", 1: "fine"}, ["the"], "the streamed answer")
    assert "choice 0" in finding.message and "streamed" in finding.message


def test_n_choices() -> None:
    assert check_n_choices(completion("a", "b"), 2) == []
    assert ids(check_n_choices(completion("a"), 2)) == ["SEM-N-CHOICES"]
    broken = completion("a", "b")
    broken["choices"][1]["index"] = 0
    assert ids(check_n_choices(broken, 2)) == ["SEM-N-CHOICES"]


def test_path_model() -> None:
    assert check_path_model(completion("a"), "mythomax", "asha") == []
    (finding,) = check_path_model(completion("a", model="asha"), "mythomax", "asha")
    assert "'asha'" in finding.message and "'mythomax'" in finding.message


def test_models_scoped() -> None:
    one = {"object": "list", "data": [{"id": "soji"}]}
    assert check_models_scoped(one, "soji") == []
    assert ids(check_models_scoped({"data": [{"id": "soji"}, {"id": "asha"}]}, "soji")) == [
        "SEM-MODELS-SCOPED"
    ]
    assert ids(check_models_scoped({"data": []}, "soji")) == ["SEM-MODELS-SCOPED"]


def test_seed_repeatable() -> None:
    assert check_seed_repeatable({0: "a"}, {0: "a"}, "t0") == []
    assert ids(check_seed_repeatable({0: "a"}, {0: "b"}, "t0")) == ["SEM-SEED-REPEATABLE"]


def test_stream_agrees() -> None:
    plain = completion("Hello", completion_tokens=2)
    usage = dict(plain["usage"])
    assert check_stream_agrees(plain, {0: "Hello"}, usage) == []
    assert "texts differ" in check_stream_agrees(plain, {0: "Hello!"}, usage)[0].message
    assert (
        "usage differs"
        in check_stream_agrees(plain, {0: "Hello"}, {**usage, "completion_tokens": 9})[0].message
    )
    assert check_stream_agrees(plain, {0: "Hello"}, None) == []


def test_completion_text() -> None:
    assert check_completion_text(completion("a")) == []
    broken = completion("a")
    broken["choices"][0]["text"] = "b"
    assert ids(check_completion_text(broken)) == ["SEM-COMPLETION-TEXT"]


def test_choice_texts_prefers_message_content() -> None:
    answer = {
        "choices": [
            {"index": 0, "text": "t"},
            {"index": 1, "message": {"content": "m"}, "text": "t"},
        ]
    }
    assert choice_texts(answer) == {0: "t", 1: "m"}


def test_streamed_n_choices() -> None:
    assert check_streamed_n_choices([0, 0, 1, 1, 0], 2) == []
    assert [f.requirement_id for f in check_streamed_n_choices([0, 0], 2)] == ["SEM-N-CHOICES"]
    assert check_streamed_n_choices([0, 1, 2], 2)
    assert check_streamed_n_choices([0, "1"], 2)
