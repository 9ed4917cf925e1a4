"""The FIELD rules' operation selection and probe values, read from the kit's own spec."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest

import spec
from conformance.suite._operations import SELECTORS, field_operations, ignored_fields
from conformance.suite._probe import value_for


@pytest.fixture(scope="module")
def contract() -> spec.Contract:
    return spec.Contract(spec.load())


def labels(contract: spec.Contract, rule: str) -> list[str]:
    return [op.label for op in field_operations(contract, rule)]


def test_each_rule_runs_once_per_request_shape(contract: spec.Contract) -> None:
    assert labels(contract, "tools") == ["POST /v1/chat/completions"]
    assert labels(contract, "chat-logprobs") == ["POST /v1/chat/completions"]
    assert labels(contract, "legacy-logprobs") == ["POST /v1/completions"]
    assert labels(contract, "best_of") == ["POST /v1/completions"]
    assert sorted(labels(contract, "logit_bias")) == [
        "POST /v1/chat/completions",
        "POST /v1/completions",
    ]
    assert SELECTORS["field:echo"](contract) == field_operations(contract, "echo")


def test_a_spec_without_the_field_selects_nothing(contract: spec.Contract) -> None:
    document = copy.deepcopy(contract.document)
    for name in ("ChatCompletionRequest", "CompletionRequest"):
        document["components"]["schemas"][name]["properties"].pop("logit_bias")
    assert field_operations(spec.Contract(document), "logit_bias") == []


def test_ignored_fields_come_from_the_spec_marks(contract: spec.Contract) -> None:
    chat = field_operations(contract, "tools")[0]
    fields = ignored_fields(contract, chat)
    assert {"store", "service_tier", "web_search_options"} <= set(fields)
    assert "temperature" not in fields and "tools" not in fields


def resolved(contract: spec.Contract, schema: Any) -> Any:
    """The schema with its references inlined, for a plain jsonschema check."""
    if isinstance(schema, dict):
        if isinstance(schema.get("$ref"), str):
            return resolved(contract, contract.resolve(schema["$ref"][1:]))
        return {k: resolved(contract, v) for k, v in schema.items() if not k.startswith("x-")}
    if isinstance(schema, list):
        return [resolved(contract, item) for item in schema]
    return schema


def test_probe_values_are_valid_and_present(contract: spec.Contract) -> None:
    chat = field_operations(contract, "tools")[0]
    for name, schema in ignored_fields(contract, chat).items():
        value = value_for(contract, schema)
        assert value is not None, name
        jsonschema.validate(value, resolved(contract, schema))
