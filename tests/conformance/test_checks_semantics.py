"""The semantic checks on synthetic answers."""

from __future__ import annotations

import json
from typing import Any

from conformance.checks.semantics import (
    check_completion_text,
    check_max_tokens,
    check_models_scoped,
    check_n_choices,
    check_path_model,
    check_seed_repeatable,
    check_stop_absent,
    check_stop_prefix,
    check_stream_agrees,
    check_streamed_n_choices,
    check_streamed_path_model,
    check_streamed_text_deltas,
    check_usage_sum,
    choice_texts,
)
from conformance.checks.streaming import StreamObservation


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


def _stream(*chunks: dict[str, Any]) -> StreamObservation:
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    return StreamObservation.from_bytes(body.encode(), include_usage=True)


def _chunk(content: str | None, index: int = 0, model: str = "mythomax") -> dict[str, Any]:
    return {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [{"index": index, "delta": {"content": content}, "finish_reason": None}],
        "usage": None,
    }


def test_max_tokens_names_the_stream() -> None:
    (finding,) = check_max_tokens(completion("a", completion_tokens=5), 3, where="the stream")
    assert "in the stream usage.completion_tokens is 5" in finding.message


def test_streamed_text_deltas_within_max_tokens() -> None:
    within = _stream(_chunk(""), _chunk("a"), _chunk("b"), _chunk("c"))
    assert check_streamed_text_deltas(within, 3) == []  # an empty delta carries no token
    over = _stream(_chunk("a"), _chunk("b"), _chunk("c"), _chunk("d"), _chunk("x", index=1))
    (finding,) = check_streamed_text_deltas(over, 3)
    assert finding.requirement_id == "SEM-MAX-TOKENS"
    assert "choice 0 streamed 4 deltas that carry text (events 1, 2, 3, 4)" in finding.message
    assert finding.event_numbers == (1, 2, 3, 4)


def test_stop_prefix_leaked_only_when_the_plain_answer_lacks_it() -> None:
    assert check_stop_prefix({0: "Hello wo"}, {0: "Hello wo"}, ["wor"]) == []
    assert check_stop_prefix({0: "Hello"}, {0: "Hello"}, ["wor"]) == []
    (finding,) = check_stop_prefix({0: "Hello w"}, {0: "Hello"}, ["wor"])
    assert finding.requirement_id == "SEM-STOP-ABSENT"
    assert "ends with 'w', the start of the stop sequence 'wor'" in finding.message
    (longest,) = check_stop_prefix({0: "Hello wo"}, {0: "Hello"}, ["wor"])
    assert "ends with 'wo'" in longest.message


def test_streamed_path_model_on_every_chunk() -> None:
    good = _stream(_chunk("a", model="asha"), _chunk("b", model="asha"))
    assert check_streamed_path_model(good, "asha", "soji") == []
    bad = _stream(_chunk("a", model="asha"), _chunk("b", model="soji"))
    (finding,) = check_streamed_path_model(bad, "asha", "soji")
    assert finding.requirement_id == "SEM-PATH-MODEL"
    assert "1 of the stream's 2 chunks carry another model (events 2)" in finding.message
    assert "(the body said 'soji')" in finding.message
