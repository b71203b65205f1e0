"""A key's tool policy on the /v1 doors, end to end with the official SDKs.

A key issued with `--tools` may only declare the function tools its patterns allow (403
`tool_not_allowed`, naming the tool), and an answer that calls a tool the request did not
declare is withheld, whole or streamed (422 `undeclared_tool_call`) — the same check for chat
completions, Responses and Messages, since all three are one pipeline.
"""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from audit.models import AuditEvent
from conftest import Gateway
from teams.models import Classification, Team
from teams.services import IssuedKey, api_key_issue
from tests.fakes.openai import FakeOpenAI

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}


@pytest.fixture
def tool_key(team: Team, routing: None, approver: Any) -> IssuedKey:
    return api_key_issue(
        team=team,
        name="Weather agent",
        system_prompt="You answer weather questions.",
        models=["gpt-4o-mini"],
        classification=Classification.NON_SENSITIVE,
        approved_by=approver,
        tools="get_weather,crm__*",
    )


def chat_tool(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": SCHEMA}}


def rows() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event_type="request").order_by("seq"))


def test_a_declared_tool_off_the_list_is_refused_on_every_door(
    gateway: Gateway, tool_key: IssuedKey, cloud_upstream: FakeOpenAI
) -> None:
    client = gateway.openai(tool_key.plaintext)
    with pytest.raises(openai.PermissionDeniedError) as chat:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            tools=[chat_tool("get_weather"), chat_tool("delete_everything")],
        )
    assert chat.value.code == "tool_not_allowed" and "delete_everything" in chat.value.message
    with pytest.raises(openai.PermissionDeniedError) as responses:
        client.responses.create(
            model="gpt-4o-mini", input="hi", tools=[{"type": "function", "name": "wire_money", "parameters": SCHEMA}]
        )
    assert responses.value.code == "tool_not_allowed" and "wire_money" in responses.value.message
    with pytest.raises(anthropic.PermissionDeniedError) as messages:
        gateway.anthropic(tool_key.plaintext).messages.create(
            model="gpt-4o-mini",
            max_tokens=32,
            messages=[{"role": "user", "content": "hi"}],
            tools=[{"name": "crm_export", "input_schema": SCHEMA}],  # crm_export is not crm__anything
        )
    assert "crm_export" in messages.value.message and "tool_not_allowed" in messages.value.message
    assert cloud_upstream.received == []
    assert [(r.endpoint, r.decision, r.status, r.error_code) for r in rows()] == [
        ("chat.completions", "blocked_scope", 403, "tool_not_allowed"),
        ("responses", "blocked_scope", 403, "tool_not_allowed"),
        ("messages", "blocked_scope", 403, "tool_not_allowed"),
    ]


def test_tools_on_the_list_pass(gateway: Gateway, tool_key: IssuedKey, cloud_upstream: FakeOpenAI) -> None:
    cloud_upstream.reply = ""
    cloud_upstream.tool_calls = [("crm__lookup", '{"city":"Paris"}')]
    completion = gateway.openai(tool_key.plaintext).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        tools=[chat_tool("get_weather"), chat_tool("crm__lookup")],
    )
    [call] = completion.choices[0].message.tool_calls or []
    assert call.function.name == "crm__lookup"
    assert [t["function"]["name"] for t in cloud_upstream.received[0].body["tools"]] == ["get_weather", "crm__lookup"]


def test_an_undeclared_tool_call_in_an_answer_is_withheld(
    gateway: Gateway, tool_key: IssuedKey, cloud_upstream: FakeOpenAI
) -> None:
    cloud_upstream.reply = ""
    cloud_upstream.tool_calls = [("crm__delete_all", "{}")]  # allowed by the key's patterns, but not declared
    client = gateway.openai(tool_key.plaintext)
    kwargs: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(openai.UnprocessableEntityError) as whole:
        client.chat.completions.create(**kwargs, tools=[chat_tool("get_weather")])
    assert whole.value.code == "undeclared_tool_call" and "crm__delete_all" in whole.value.message

    seen: list[Any] = []
    with pytest.raises(openai.APIError) as streamed:
        seen.extend(client.chat.completions.create(**kwargs, tools=[chat_tool("get_weather")], stream=True))
    assert "undeclared_tool_call" in str(streamed.value.body) or "crm__delete_all" in str(streamed.value)
    assert not any(chunk.choices and chunk.choices[0].delta.tool_calls for chunk in seen)

    events: list[Any] = []
    with pytest.raises(openai.APIError):
        events.extend(
            client.responses.create(
                model="gpt-4o-mini",
                input="hi",
                tools=[{"type": "function", "name": "get_weather", "parameters": SCHEMA}],
                stream=True,
            )
        )
    assert not [e for e in events if e.type.startswith("response.function_call")]

    with pytest.raises(anthropic.UnprocessableEntityError) as messages:
        gateway.anthropic(tool_key.plaintext).messages.create(
            model="gpt-4o-mini",
            max_tokens=32,
            messages=[{"role": "user", "content": "hi"}],
            tools=[{"name": "get_weather", "input_schema": SCHEMA}],
        )
    assert "undeclared_tool_call" in messages.value.message
    assert [(r.endpoint, r.decision, r.error_code) for r in rows()] == [
        ("chat.completions", "blocked_scope", "undeclared_tool_call"),
        ("chat.completions", "blocked_scope", "undeclared_tool_call"),
        ("responses", "blocked_scope", "undeclared_tool_call"),
        ("messages", "blocked_scope", "undeclared_tool_call"),
    ]


def test_a_key_without_a_tool_policy_declares_its_own_tools(
    gateway: Gateway, cloud_key: IssuedKey, cloud_upstream: FakeOpenAI
) -> None:
    cloud_upstream.reply = ""
    cloud_upstream.tool_calls = [("anything_at_all", "{}")]
    completion = gateway.openai(cloud_key.plaintext).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        tools=[chat_tool("my_tool")],
    )
    assert completion.choices[0].message.tool_calls is not None
