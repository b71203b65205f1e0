"""The field model: what is scanned, what is refused, what a backend may allow."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from dlp.builtin import BUILTIN_PATTERNS
from dlp.engine import scanner_for
from dlp.fields import CHAT_FIELDS, MESSAGE_FIELDS, extra_field_problem, unknown_fields
from dlp.inspection import Inspector
from routing.services import routing_import

CARD = "4111 1111 1111 1111"


@pytest.fixture(scope="module")
def inspector() -> Inspector:
    return Inspector(scanner_for(BUILTIN_PATTERNS, "prompt"), scanner_for(BUILTIN_PATTERNS, "response"), {})


def test_unknown_fields_are_listed_and_template_controls_are_never_allowed() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x", "weight": 1}], "top_k": 5, "chat_template": "t"}
    assert unknown_fields(body, embeddings=False) == ["top_k", "chat_template", "messages[0].weight"]
    assert unknown_fields(body, embeddings=False, extra=["top_k", "chat_template"]) == ["chat_template", "messages[0].weight"]
    assert unknown_fields({"model": "m", "input": "x", "messages": []}, embeddings=True) == ["messages"]


@pytest.mark.parametrize(
    "name", ["chat_template", "chat_template_kwargs", "continue_final_message", "add_generation_prompt", "Top-K", "", 3, "stop"]
)
def test_an_extra_field_may_not_be_a_template_a_standard_field_or_a_bad_name(name: Any) -> None:
    assert extra_field_problem(name) is not None


@pytest.mark.django_db
def test_the_routing_import_validates_extra_fields() -> None:
    backend = {"name": "v", "kind": "vllm", "base_url": "http://127.0.0.1:9/v1", "location": "on_prem"}
    routing_import(document={"backends": [{**backend, "extra_fields": ["top_k", "repetition_penalty"]}]})
    from routing.models import Backend

    assert Backend.objects.get(name="v").options == {"extra_fields": ["repetition_penalty", "top_k"]}
    with pytest.raises(ValidationError, match="chat template"):
        routing_import(document={"backends": [{**backend, "extra_fields": ["chat_template_kwargs"]}]})
    with pytest.raises(ValidationError, match="chat template"):
        routing_import(document={"backends": [{**backend, "options": {"extra_fields": ["continue_final_message"]}}]})


def _strings(r: random.Random, depth: int = 0) -> Any:
    """A random JSON value whose strings are placeholders ("@") to be filled in."""
    kind = r.randrange(5 if depth < 3 else 2)
    if kind == 0:
        return "@"
    if kind == 1:
        return r.choice([1, 2.5, True, None])
    if kind == 2:
        return [_strings(r, depth + 1) for _ in range(r.randint(1, 3))]
    return {f"k{i}": _strings(r, depth + 1) for i in range(r.randint(1, 3))}


def _fill(value: Any, slot: int, counter: list[int], secret: str) -> Any:
    if value == "@":
        counter[0] += 1
        return f"value {secret} here" if counter[0] - 1 == slot else "plain words"
    if isinstance(value, list):
        return [_fill(v, slot, counter, secret) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, slot, counter, secret) for k, v in value.items()}
    return value


def _request(r: random.Random) -> dict[str, Any]:
    message: dict[str, Any] = {name: "@" for name in MESSAGE_FIELDS - {"content", "tool_calls"}}
    message["content"] = [{"type": "text", "text": "@"}, {"type": "refusal", "refusal": "@"}]
    message["tool_calls"] = [{"id": "@", "type": "function", "function": {"name": "@", "arguments": "@"}}]
    body: dict[str, Any] = {name: _strings(r) for name in CHAT_FIELDS - {"model", "messages"}}
    body["messages"] = [message, {"role": "user", "content": "@"}]
    return body


@pytest.mark.parametrize("seed", range(20))
def test_a_secret_in_any_string_of_a_generated_request_is_redacted(inspector: Inspector, seed: int) -> None:
    r = random.Random(seed)
    template = {"model": "m", **_request(r)}
    slots = json.dumps(template).count('"@"')
    for slot in range(slots):
        body = _fill(template, slot, [0], CARD)
        rewritten, verdict = inspector.request(body)
        assert CARD not in json.dumps(rewritten), f"slot {slot} of seed {seed}"
        assert [f.category for f in verdict.findings] == ["CREDIT_CARD"]


def test_a_secret_in_an_object_key_is_redacted(inspector: Inspector) -> None:
    rewritten, _ = inspector.request({"model": "m", "messages": [], "metadata": {CARD: "x"}, "logit_bias": {CARD: 1}})
    assert CARD not in json.dumps(rewritten)


def test_a_clean_request_is_the_same_object_and_binary_payloads_are_not_scanned(inspector: Inspector) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "QUtJQVo3UTRNQjJLWE41UExSM1c=" * 3}}
    body = {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}, image]}], "n": 1}
    rewritten, verdict = inspector.request(body)
    assert rewritten is body and verdict.findings == []
