"""DLP end to end: the official OpenAI SDK → the real server → fake upstreams, both directions."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from audit.models import AuditEvent
from conftest import Gateway
from dlp.services import pack_apply
from teams.models import Classification, Enforcement, Team
from teams.services import IssuedKey, api_key_issue
from tests.fakes.openai import FakeOpenAI

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]

AWS_KEY = "AKIAZ7Q4MB2KXN5PLR3W"
CARD = "4111 1111 1111 1111"


@pytest.fixture(autouse=True)
def baseline(db: None) -> None:
    # Transactional tests flush the tables the migration filled; install the pack again.
    pack_apply(name_or_path="baseline")


def row() -> AuditEvent:
    return AuditEvent.objects.filter(event_type="request").latest("seq")


def findings(event: AuditEvent) -> list[tuple[str, str, str]]:
    return sorted((f["direction"], f["category"], f["action"]) for f in event.dlp)


def chat(gateway: Gateway, key: IssuedKey, text: str, **kwargs: Any) -> Any:
    return gateway.openai(key.plaintext).chat.completions.create(
        model="llama-3-8b", messages=[{"role": "user", "content": text}], **kwargs
    )


def test_a_prompt_with_a_credential_is_blocked_before_the_model_sees_it(
    gateway: Gateway, sensitive_key: IssuedKey, onprem_upstream: FakeOpenAI
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        chat(gateway, sensitive_key, f"deploy with {AWS_KEY} please")
    error = caught.value.body
    assert isinstance(error, dict) and error["code"] == "dlp_blocked" and "AWS_CREDENTIAL" in error["message"]
    assert AWS_KEY not in str(caught.value)
    assert onprem_upstream.received == []
    event = row()
    assert (event.decision, event.status) == ("blocked_dlp", 400)
    assert findings(event) == [("prompt", "AWS_CREDENTIAL", "block")]


def test_a_card_number_is_redacted_before_it_is_forwarded(
    gateway: Gateway, sensitive_key: IssuedKey, onprem_upstream: FakeOpenAI
) -> None:
    completion = chat(gateway, sensitive_key, f"refund card {CARD} today")
    [received] = onprem_upstream.received
    assert received.body["messages"][-1]["content"] == "refund card [REDACTED:CREDIT_CARD] today"
    # The fake echoes what it got: the answer is the redacted text too.
    assert completion.choices[0].message.content == "echo: refund card [REDACTED:CREDIT_CARD] today"
    event = row()
    assert event.decision == "allowed" and ("prompt", "CREDIT_CARD", "redact") in findings(event)


def test_embeddings_input_is_scanned_too(gateway: Gateway, sensitive_key: IssuedKey, onprem_upstream: FakeOpenAI) -> None:
    client = gateway.openai(sensitive_key.plaintext)
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="llama-3-8b", input=["fine", f"secret {AWS_KEY}"])
    assert onprem_upstream.received == []
    client.embeddings.create(model="llama-3-8b", input=f"card {CARD}")
    [received] = onprem_upstream.received
    assert received.body["input"] == "card [REDACTED:CREDIT_CARD]"


def test_a_sensitive_key_refuses_content_dlp_cannot_read(
    gateway: Gateway, sensitive_key: IssuedKey, onprem_upstream: FakeOpenAI
) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    with pytest.raises(openai.BadRequestError) as caught:
        gateway.openai(sensitive_key.plaintext).chat.completions.create(
            model="llama-3-8b", messages=[{"role": "user", "content": [{"type": "text", "text": "what is this?"}, image]}]
        )
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "dlp_unreadable_content"
    assert onprem_upstream.received == []


def test_an_answer_with_a_credential_is_withheld(gateway: Gateway, sensitive_key: IssuedKey, onprem_upstream: FakeOpenAI) -> None:
    onprem_upstream.reply = f"Sure, use {AWS_KEY} to deploy."
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        chat(gateway, sensitive_key, "how do I deploy?")
    assert AWS_KEY not in caught.value.response.text
    event = row()
    assert (event.decision, event.status) == ("blocked_dlp", 422)
    assert findings(event) == [("response", "AWS_CREDENTIAL", "block")]


def test_an_answer_with_a_card_is_redacted(gateway: Gateway, sensitive_key: IssuedKey, onprem_upstream: FakeOpenAI) -> None:
    onprem_upstream.reply = f"The card on file is {CARD}."
    completion = chat(gateway, sensitive_key, "which card?")
    assert completion.choices[0].message.content == "The card on file is [REDACTED:CREDIT_CARD]."


@pytest.mark.parametrize("cut", [1, 7, 13, 19])
def test_a_credential_split_across_stream_chunks_never_reaches_the_client(
    gateway: Gateway, sensitive_key: IssuedKey, onprem_upstream: FakeOpenAI, cut: int
) -> None:
    onprem_upstream.pieces = ["Use the key ", AWS_KEY[:cut], AWS_KEY[cut:], " to deploy, then rotate it."]
    received: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in chat(gateway, sensitive_key, "how do I deploy?", stream=True):
            received.extend(choice.delta.content or "" for choice in chunk.choices)
    assert "withheld by data-loss prevention" in str(caught.value)
    streamed = "".join(received)
    assert "Use the key ".startswith(streamed) and AWS_KEY[:cut] not in streamed.removeprefix("Use the key ")
    event = row()
    assert (event.decision, event.status, event.stream) == ("blocked_dlp", 422, True)


def test_a_card_split_across_stream_chunks_is_redacted(
    gateway: Gateway, sensitive_key: IssuedKey, onprem_upstream: FakeOpenAI
) -> None:
    onprem_upstream.pieces = ["Card: ", CARD[:6], CARD[6:13], CARD[13:], " is on file."]
    chunks = list(chat(gateway, sensitive_key, "which card?", stream=True))
    text = "".join(choice.delta.content or "" for chunk in chunks for choice in chunk.choices)
    assert text == "Card: [REDACTED:CREDIT_CARD] is on file."
    event = row()
    assert event.decision == "allowed" and ("response", "CREDIT_CARD", "redact") in findings(event)


def test_monitor_mode_lets_a_dlp_hit_through_and_audits_what_would_have_happened(
    gateway: Gateway, team: Team, routing: None, onprem_upstream: FakeOpenAI
) -> None:
    monitored = api_key_issue(
        team=team,
        name="Pilot",
        system_prompt="You help with deployments.",
        models=["llama-3-8b"],
        classification=Classification.SENSITIVE,
        enforcement=Enforcement.MONITOR,
    )
    completion = chat(gateway, monitored, f"deploy with {AWS_KEY} and card {CARD}")
    [received] = onprem_upstream.received
    assert AWS_KEY in received.body["messages"][-1]["content"]  # let through
    assert CARD not in received.body["messages"][-1]["content"]  # redaction still applies
    assert completion.choices[0].message.content.startswith("echo: deploy with")
    event = row()
    assert (event.decision, event.status, event.error_code) == ("monitor_blocked_dlp", 200, "dlp_blocked")
    assert ("prompt", "AWS_CREDENTIAL", "block") in findings(event)
