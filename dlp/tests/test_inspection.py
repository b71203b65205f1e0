"""Where DLP looks in OpenAI-shaped requests and responses, and what it writes back."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dlp.builtin import BUILTIN_PATTERNS
from dlp.engine import Action, scanner_for
from dlp.inspection import Inspector, non_text_input, non_text_parts

CARD = "4111 1111 1111 1111"
AWS_KEY = "AKIAZ7Q4MB2KXN5PLR3W"


@pytest.fixture(scope="module")
def inspector() -> Inspector:
    return Inspector(scanner_for(BUILTIN_PATTERNS, "prompt"), scanner_for(BUILTIN_PATTERNS, "response"), {})


def chunk(content: str | None = None, *, finish: str | None = None, index: int = 0, **delta: Any) -> dict[str, Any]:
    body: dict[str, Any] = dict(delta)
    if content is not None:
        body["content"] = content
    return {"object": "chat.completion.chunk", "choices": [{"index": index, "delta": body, "finish_reason": finish}]}


def sent(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def test_every_message_part_and_tool_argument_is_scanned(inspector: Inspector) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": f"card {CARD}"},
        {"role": "user", "content": [{"type": "text", "text": f"my card is {CARD}"}, {"type": "image_url", "image_url": {}}]},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "pay", "arguments": json.dumps({"card": CARD})}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": f"charged {CARD}"},
        {"role": "user", "content": "thanks"},
    ]
    original = json.dumps(messages)
    rewritten, verdict = inspector.messages(messages)

    assert CARD not in json.dumps(rewritten)
    assert rewritten[0]["content"] == "card [REDACTED:CREDIT_CARD]"
    assert rewritten[1]["content"][0]["text"] == "my card is [REDACTED:CREDIT_CARD]"
    assert rewritten[1]["content"][1] == {"type": "image_url", "image_url": {}}
    assert json.loads(rewritten[2]["tool_calls"][0]["function"]["arguments"]) == {"card": "[REDACTED:CREDIT_CARD]"}
    assert rewritten[3]["content"] == "charged [REDACTED:CREDIT_CARD]"
    assert rewritten[4] is messages[4]  # untouched messages are not copied
    assert json.dumps(messages) == original  # the client's body is left as it was (its hash is audited)
    assert [(f.category, f.action, f.count) for f in verdict.findings] == [("CREDIT_CARD", "redact", 1)] * 4
    assert verdict.blocked == ()


def test_a_clean_request_comes_back_as_the_same_list(inspector: Inspector) -> None:
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    rewritten, verdict = inspector.messages(messages)
    assert rewritten is messages and verdict.findings == [] and verdict.blocked == ()


def test_a_blocking_category_is_named(inspector: Inspector) -> None:
    _, verdict = inspector.messages([{"role": "user", "content": f"deploy with {AWS_KEY}"}])
    assert verdict.blocked == ("AWS_CREDENTIAL",)
    assert [(f.category, f.action) for f in verdict.findings] == [("AWS_CREDENTIAL", Action.BLOCK)]


def test_monitor_mode_lets_a_block_through_but_says_it_would_have_blocked() -> None:
    monitor = Inspector(scanner_for(BUILTIN_PATTERNS, "prompt"), scanner_for(BUILTIN_PATTERNS, "response"), {}, monitor=True)
    text = f"deploy with {AWS_KEY} and card {CARD}"
    rewritten, verdict = monitor.messages([{"role": "user", "content": text}])
    assert AWS_KEY in rewritten[0]["content"]  # forwarded: monitor mode blocks nothing
    assert CARD not in rewritten[0]["content"]  # redaction still applies
    assert verdict.blocked and {f.action for f in verdict.findings} == {"block", "redact"}


def test_a_team_override_changes_the_action(inspector: Inspector) -> None:
    card_patterns = {s.name: Action.OFF for s in inspector.prompt.specs if s.category == "CREDIT_CARD"}
    relaxed = Inspector(inspector.prompt, inspector.response, card_patterns)
    rewritten, verdict = relaxed.messages([{"role": "user", "content": f"card {CARD}"}])
    assert rewritten[0]["content"] == f"card {CARD}" and verdict.findings == []


def test_embeddings_input_strings_are_scanned_and_token_ids_are_unreadable(inspector: Inspector) -> None:
    value, verdict = inspector.embeddings_input(["plain", f"card {CARD}"])
    assert value == ["plain", "card [REDACTED:CREDIT_CARD]"] and verdict.findings
    assert non_text_input([[1, 2, 3]]) and non_text_input([1, 2]) and not non_text_input(["a"]) and not non_text_input("a")


def test_non_text_parts_are_listed() -> None:
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "image_url"}, {"type": "input_audio"}]},
        {"role": "user", "content": [{"type": "image_url"}]},
    ]
    assert non_text_parts(messages) == ["image_url", "input_audio"]
    assert non_text_parts([{"role": "user", "content": "just text"}]) == []


def test_a_completion_is_redacted_in_place(inspector: Inspector) -> None:
    message = {"role": "assistant", "content": f"Your card {CARD} is on file."}
    result: dict[str, Any] = {"choices": [{"index": 0, "message": message}]}
    verdict = inspector.completion(result)
    assert result["choices"][0]["message"]["content"] == "Your card [REDACTED:CREDIT_CARD] is on file."
    assert verdict.findings and not verdict.blocked


@pytest.mark.parametrize("cut", range(1, len(AWS_KEY)))
def test_a_secret_split_across_chunks_never_reaches_the_client(inspector: Inspector, cut: int) -> None:
    guard = inspector.stream()
    out = []
    for piece in ("The key is ", AWS_KEY[:cut], AWS_KEY[cut:], " — keep it safe."):
        c = chunk(piece)
        guard.chunk(c)
        if guard.blocked:
            break
        out.append(c)
    assert guard.blocked
    assert "The key is ".startswith(sent(out))  # not one character of the key went out
    assert guard.verdict().blocked == ("AWS_CREDENTIAL",)


@pytest.mark.parametrize("cut", [1, 5, 9, 14, 18])
def test_a_split_card_is_redacted_in_the_stream(inspector: Inspector, cut: int) -> None:
    guard = inspector.stream()
    out = []
    for piece in ("Card: ", CARD[:cut], CARD[cut:], " ok"):
        out.append(chunk(piece))
        guard.chunk(out[-1])
    out.append(chunk(finish="stop"))
    guard.chunk(out[-1])
    assert sent(out) == "Card: [REDACTED:CREDIT_CARD] ok"
    assert guard.finish() is None
    assert [(f.category, f.action) for f in guard.verdict().findings] == [("CREDIT_CARD", "redact")]


def test_tool_call_arguments_are_held_back_per_call(inspector: Inspector) -> None:
    guard = inspector.stream()
    arguments = json.dumps({"card": CARD})
    out = []
    for piece in (arguments[:12], arguments[12:]):
        call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "pay", "arguments": piece}}
        out.append(chunk(tool_calls=[call]))
        guard.chunk(out[-1])
    out.append(chunk(finish="tool_calls"))
    guard.chunk(out[-1])
    streamed = "".join(call["function"]["arguments"] for c in out for call in c["choices"][0]["delta"].get("tool_calls") or [])
    assert json.loads(streamed) == {"card": "[REDACTED:CREDIT_CARD]"}


def test_what_an_upstream_leaves_open_is_flushed_at_the_end(inspector: Inspector) -> None:
    guard = inspector.stream()
    first = chunk("Total due: 4111 1111")
    guard.chunk(first)
    tail = guard.finish()
    assert tail is not None
    assert sent([first]) + sent([tail]) == "Total due: 4111 1111"
