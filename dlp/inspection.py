"""DLP applied to OpenAI-shaped requests and responses: where the text is, and what to do with it.

The engine (engine.py, stream.py) scans text; this module knows where text lives in a chat
request, an embeddings request, a completion and a stream of completion chunks, and rewrites
it in place of the original when a pattern redacts. It decides nothing about HTTP: the
pipeline turns a `Verdict` into a refusal, an audit entry or both.

What is scanned in a chat request: every message (not only the last user turn), every text
content part, tool-call and legacy function-call arguments, and tool results (tool messages'
content). The bound system prompt is not scanned: it was approved with the key.

Monitor mode: patterns whose action is `block` run as `alert`, so nothing is stopped, and the
verdict still names what would have been blocked. Redaction still applies.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .engine import Action, Finding, Scanner
from .stream import DEFAULT_WINDOW, StreamGuard

TEXT_PART_TYPES = frozenset({"text", "input_text", "output_text", "refusal"})


@dataclass(slots=True)
class Verdict:
    """What the scan found in one direction of one request; never the matched values."""

    findings: list[Finding] = field(default_factory=list)
    blocked: tuple[str, ...] = ()  # categories that block (or would, in monitor mode)

    def add(self, findings: list[Finding], blocking: Mapping[str, bool]) -> None:
        for finding in findings:
            would_block = finding.action == Action.BLOCK or blocking.get(finding.pattern, False)
            action = Action.BLOCK if would_block else finding.action
            self.findings.append(Finding(finding.category, finding.pattern, action, finding.count))
            if would_block and finding.category not in self.blocked:
                self.blocked = (*self.blocked, finding.category)

    def merged(self) -> list[Finding]:
        counts: Counter[tuple[str, str, str]] = Counter()
        for f in self.findings:
            counts[(f.category, f.pattern, f.action)] += f.count
        return [Finding(category=c, pattern=p, action=a, count=n) for (c, p, a), n in counts.items()]


@dataclass(frozen=True, slots=True)
class Inspector:
    """One request's DLP: the team's policy, in the key's enforcement mode."""

    prompt: Scanner
    response: Scanner
    overrides: Mapping[str, str]
    monitor: bool = False

    def _mode(self, scanner: Scanner) -> tuple[Mapping[str, str], dict[str, bool]]:
        """Overrides to scan with, and which patterns block (monitor mode downgrades them)."""
        if not self.monitor:
            return self.overrides, {}
        blocking = {s.name: True for s in scanner.specs if self.overrides.get(s.name, s.action) == Action.BLOCK}
        return {**self.overrides, **dict.fromkeys(blocking, Action.ALERT)}, blocking

    def _scan(self, scanner: Scanner, text: str, verdict: Verdict) -> str:
        overrides, blocking = self._mode(scanner)
        result = scanner.scan(text, overrides=overrides)
        if not result.hits:
            return text
        verdict.add(result.findings(), blocking)
        return result.redacted()

    # ── prompts ──

    def messages(self, messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], Verdict]:
        """Scan every text of a chat request; a copy with redactions, or the same list if none."""
        verdict = Verdict()
        rewritten: list[dict[str, Any]] = []
        changed = False
        for message in messages:
            copy_ = _rewrite_message(message, lambda text: self._scan(self.prompt, text, verdict))
            changed = changed or copy_ is not message
            rewritten.append(copy_)
        return (rewritten if changed else messages), verdict

    def embeddings_input(self, value: Any) -> tuple[Any, Verdict]:
        verdict = Verdict()
        if isinstance(value, str):
            return self._scan(self.prompt, value, verdict), verdict
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return [self._scan(self.prompt, item, verdict) for item in value], verdict
        return value, verdict  # token ids: see non_text_input()

    # ── responses ──

    def completion(self, result: dict[str, Any]) -> Verdict:
        """Scan a chat.completion's messages, redacting in place."""
        verdict = Verdict()
        for choice in result.get("choices") or []:
            message = choice.get("message") if isinstance(choice, dict) else None
            if isinstance(message, dict):
                choice["message"] = _rewrite_message(message, lambda text: self._scan(self.response, text, verdict))
        return verdict

    # ── tool calls (the /mcp gateway) ──

    def tool_arguments(self, arguments: Any) -> tuple[Any, Verdict]:
        """Scan every string in a tool call's arguments (at any depth) with the prompt rules.

        Strings are scanned one by one, not the serialised JSON: a redaction then rewrites a
        value and the arguments stay the shape the tool's schema expects.
        """
        verdict = Verdict()
        return _rewrite_strings(arguments, lambda text: self._scan(self.prompt, text, verdict)), verdict

    def tool_result(self, result: dict[str, Any]) -> tuple[dict[str, Any], Verdict]:
        """Scan a CallToolResult with the answer rules: text content blocks, embedded text
        resources and structured content (which usually repeats the text). Images, audio and
        blobs are not text and pass unscanned."""
        verdict = Verdict()

        def scan(text: str) -> str:
            return self._scan(self.response, text, verdict)

        out = dict(result)
        content = result.get("content")
        if isinstance(content, list):
            blocks = []
            for block in content:
                if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
                    block = {**block, "text": scan(block["text"])}
                elif isinstance(block, dict) and block.get("type") == "resource" and isinstance(block.get("resource"), dict):
                    resource = block["resource"]
                    if isinstance(resource.get("text"), str):
                        block = {**block, "resource": {**resource, "text": scan(resource["text"])}}
                blocks.append(block)
            out["content"] = blocks
        if "structuredContent" in result:
            out["structuredContent"] = _rewrite_strings(result["structuredContent"], scan)
        return out, verdict

    def stream(self, window: int = DEFAULT_WINDOW) -> StreamFilter:
        overrides, blocking = self._mode(self.response)
        return StreamFilter(self.response, overrides, blocking, window)


class StreamFilter:
    """Rewrites chat.completion.chunk deltas so no part of a match reaches the client.

    One hold-back guard per choice's content and per tool call's arguments. A choice's guards
    are flushed into the chunk that carries its `finish_reason`; `finish()` flushes whatever
    an upstream left open. Once `blocked`, nothing more may be sent.
    """

    def __init__(self, scanner: Scanner, overrides: Mapping[str, str], blocking: dict[str, bool], window: int) -> None:
        self._scanner = scanner
        self._overrides = overrides
        self._blocking = blocking
        self._window = window
        self._guards: dict[Hashable, StreamGuard] = {}
        self._flushed: list[StreamGuard] = []  # guards of finished choices, for the verdict
        self.blocked: tuple[str, ...] = ()

    def _feed(self, key: Hashable, text: str) -> str:
        guard = self._guards.get(key)
        if guard is None:
            guard = self._guards[key] = StreamGuard(self._scanner, overrides=self._overrides, window=self._window)
        return self._step(guard.feed(text))

    def _step(self, step: Any) -> str:
        if step.blocked:
            self.blocked = step.categories
        return step.text

    def chunk(self, chunk: dict[str, Any]) -> None:
        """Rewrite one chunk in place (its deltas become the text that is safe to send)."""
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                continue
            if isinstance(delta.get("content"), str):
                delta["content"] = self._feed(("content", index), delta["content"])
            for call in _tool_calls(delta):
                function = call["function"]
                function["arguments"] = self._feed(("tool", index, call.get("index", 0)), function["arguments"])
            if self.blocked:
                return
            if choice.get("finish_reason"):
                self._flush_into(delta, index)

    def _flush_into(self, delta: dict[str, Any], index: int) -> None:
        for key in [k for k in self._guards if k[1] == index]:  # type: ignore[index]
            guard = self._guards.pop(key)
            self._flushed.append(guard)
            tail = self._step(guard.flush())
            if self.blocked or not tail:
                continue
            if key[0] == "content":  # type: ignore[index]
                delta["content"] = (delta.get("content") or "") + tail
                continue
            calls = delta.setdefault("tool_calls", [])
            call = next((c for c in calls if c.get("index", 0) == key[2]), None)  # type: ignore[index]
            if call is None:
                calls.append({"index": key[2], "function": {"arguments": tail}})  # type: ignore[index]
            else:
                function = call.setdefault("function", {})
                function["arguments"] = (function.get("arguments") or "") + tail

    def finish(self) -> dict[str, Any] | None:
        """A delta chunk with what is still held back (upstreams that never said finish_reason)."""
        choices: dict[int, dict[str, Any]] = {}
        for index in {k[1] for k in self._guards}:  # type: ignore[index]
            delta: dict[str, Any] = {}
            self._flush_into(delta, index)
            if delta:
                choices[index] = {"index": index, "delta": delta, "finish_reason": None}
        if self.blocked or not choices:
            return None
        return {"object": "chat.completion.chunk", "choices": list(choices.values())}

    def verdict(self) -> Verdict:
        verdict = Verdict()
        for guard in [*self._flushed, *self._guards.values()]:
            verdict.add(guard.findings(), self._blocking)
        verdict.findings = verdict.merged()
        return verdict


def _tool_calls(delta: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for call in delta.get("tool_calls") or []:
        if (
            isinstance(call, dict)
            and isinstance(call.get("function"), dict)
            and isinstance(call["function"].get("arguments"), str)
        ):
            yield call


def _rewrite_message(message: dict[str, Any], scan: Any) -> dict[str, Any]:
    """The message with `scan` applied to each of its texts; the same object if nothing changed."""
    if not isinstance(message, dict):
        return message
    out = message
    content = message.get("content")
    if isinstance(content, str):
        new = scan(content)
        if new != content:
            out = {**out, "content": new}
    elif isinstance(content, list):
        parts = []
        for part in content:
            text = part.get("text") if isinstance(part, dict) and part.get("type") in TEXT_PART_TYPES else None
            if isinstance(text, str) and (new := scan(text)) != text:
                part = {**part, "text": new}
            parts.append(part)
        if any(a is not b for a, b in zip(parts, content, strict=True)):
            out = {**out, "content": parts}
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        new_calls = copy.deepcopy(calls)
        changed = False
        for call in new_calls:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                new = scan(function["arguments"])
                changed = changed or new != function["arguments"]
                function["arguments"] = new
        if changed:
            out = {**out, "tool_calls": new_calls}
    legacy = message.get("function_call")
    if isinstance(legacy, dict) and isinstance(legacy.get("arguments"), str):
        new = scan(legacy["arguments"])
        if new != legacy["arguments"]:
            out = {**out, "function_call": {**legacy, "arguments": new}}
    return out


def _rewrite_strings(value: Any, scan: Any) -> Any:
    """`value` (parsed JSON) with `scan` applied to every string in it; keys are left alone."""
    if isinstance(value, str):
        return scan(value)
    if isinstance(value, list):
        return [_rewrite_strings(item, scan) for item in value]
    if isinstance(value, dict):
        return {key: _rewrite_strings(item, scan) for key, item in value.items()}
    return value


def non_text_parts(messages: list[dict[str, Any]]) -> list[str]:
    """The kinds of content parts DLP cannot read (images, audio, files), in order of appearance."""
    kinds: dict[str, None] = {}
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            for part in content:
                kind = part.get("type") if isinstance(part, dict) else None
                if isinstance(kind, str) and kind not in TEXT_PART_TYPES:
                    kinds[kind] = None
    return list(kinds)


def non_text_input(value: Any) -> bool:
    """Embeddings input given as token ids: text DLP cannot read without the model's tokenizer."""
    return isinstance(value, list) and bool(value) and not all(isinstance(item, str) for item in value)
