"""DLP applied to OpenAI-shaped requests and responses: where the text is, and what to do with it.

The engine (engine.py, stream.py) scans text; this module knows where text lives in a chat
request, an embeddings request, a completion and a stream of completion chunks, and rewrites
it in place of the original when a pattern redacts. It decides nothing about HTTP: the
pipeline turns a `Verdict` into a refusal, an audit entry or both.

What is scanned in a chat request: every field the field model (fields.py) knows, not only
the messages: every string and object key in every message (content, parts, names, refusals,
tool-call names and arguments, tool results) and in the structured fields (tools and their
JSON schemas, legacy functions, response_format, stop, user, metadata, prediction, ...). The
bound system prompt is not scanned: it was approved with the key.

What is scanned in an answer: every string of each choice's message (content, refusal,
reasoning_content, tool-call arguments, ...) and its logprobs tokens, which are redacted like
the text they spell (see `logprobs.py`); in streams every text channel passes a hold-back window.

Monitor mode: patterns whose action is `block` run as `alert`, so nothing is stopped, and the
verdict still names what would have been blocked. Redaction still applies.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import decode, fields
from .budget import scan_budget, size_check
from .engine import Action, Finding, Scanner, ScanResult, redact
from .logprobs import TokenGuard, redact_tokens
from .stream import DEFAULT_WINDOW, StreamGuard


def _texts(body: dict[str, Any]) -> list[str]:
    """Every text of a request body that the prompt scan reads."""
    texts: list[str] = []

    def collect(text: str) -> str:
        texts.append(text)
        return text

    fields.rewrite_body(body, collect)
    return texts


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
        result = decode.scan(scanner, text, overrides=overrides)  # the decoded views too
        if not result.hits:
            return text
        verdict.add(result.findings(), blocking)
        return result.redacted()

    # ── prompts ──

    def messages(self, messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], Verdict]:
        """Scan every text of a chat request; a copy with redactions, or the same list if none."""
        verdict = Verdict()
        rewritten = fields.rewrite(messages, lambda text: self._scan(self.prompt, text, verdict))
        return rewritten, verdict

    def request(self, body: dict[str, Any], *, max_bytes: int = 0, budget_ms: int = 0) -> tuple[dict[str, Any], Verdict]:
        """Scan every field of a canonical chat or embeddings body (fields.py says which);
        a copy with redactions, or the same dict if nothing changed.

        Bounded (budget.py): raises `ScanBudgetError` without scanning when the text to scan is
        over `max_bytes`, and stops with it once the scan has run `budget_ms` (0: unbounded).
        """
        if max_bytes and len(self.prompt):
            size_check(iter(_texts(body)), limit=max_bytes)
        verdict = Verdict()
        with scan_budget(budget_ms):
            rewritten = fields.rewrite_body(body, lambda text: self._scan(self.prompt, text, verdict))
            messages = rewritten.get("messages")
            if isinstance(messages, list):
                joined = self._across(messages, verdict)
                if joined is not messages:
                    rewritten = {**rewritten, "messages": joined}
        return rewritten, verdict

    def prompt_size(self, body: dict[str, Any]) -> int:
        """The UTF-8 size of the text `request()` would scan (0 when the policy has no prompt patterns)."""
        return size_check(iter(_texts(body)), limit=0) if len(self.prompt) else 0

    def _across(self, messages: list[Any], verdict: Verdict) -> list[Any]:
        """Scan the conversation as the model reads it, one text after the other, for values
        split over messages or parts; what each text showed alone was dealt with already."""
        texts = [text for _, _, text in _text_slots(messages)]
        if len(texts) < 2:
            return messages
        joined = "".join(texts)
        bounds: list[int] = []
        position = 0
        for text in texts:
            position += len(text)
            bounds.append(position)
        overrides, blocking = self._mode(self.prompt)
        result = decode.scan(self.prompt, joined, overrides=overrides)
        crossing = [h for h in result.hits if any(h.start < b < h.end for b in bounds[:-1])]
        if not crossing:
            return messages
        verdict.add(ScanResult(joined, crossing).findings(), blocking)
        copied = copy.deepcopy(messages)  # the client's body stays as it came (its hash is audited)
        start = 0
        for (container, key, text), end in zip(_text_slots(copied), bounds, strict=True):
            # A value that began in an earlier text is removed from the start of this one; one
            # that begins here becomes the redaction marker.
            skip = max([min(h.end, end) - start for h in crossing if h.start < start < h.end] or [0])
            marked = [
                h._replace(start=h.start - start - skip, end=min(h.end, end) - start - skip)
                for h in crossing
                if start + skip <= h.start < end
            ]
            if skip or marked:
                container[key] = redact(text[skip:], marked)
            start = end
        return copied

    def embeddings_input(self, value: Any) -> tuple[Any, Verdict]:
        verdict = Verdict()
        if isinstance(value, str):
            return self._scan(self.prompt, value, verdict), verdict
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return [self._scan(self.prompt, item, verdict) for item in value], verdict
        return value, verdict  # token ids: see non_text_input()

    # ── responses ──

    def completion(self, result: dict[str, Any]) -> Verdict:
        """Scan a chat.completion's messages and logprobs, redacting in place."""
        verdict = Verdict()
        for choice in result.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            message = choice.get("message")
            if isinstance(message, dict):
                choice["message"] = fields.rewrite(message, lambda text: self._scan(self.response, text, verdict))
            logprobs = choice.get("logprobs")
            if isinstance(logprobs, dict):
                for channel in ("content", "refusal"):
                    if isinstance(logprobs.get(channel), list):
                        logprobs[channel] = self._tokens(logprobs[channel], verdict)
        return verdict

    def _tokens(self, entries: list[Any], verdict: Verdict) -> list[Any]:
        """Logprob entries with the tokens that spell a match redacted, as the text is."""
        overrides, blocking = self._mode(self.response)
        text = "".join(e["token"] for e in entries if isinstance(e, dict) and isinstance(e.get("token"), str))
        result = self.response.scan(text, overrides=overrides)
        if not result.hits:
            return entries
        # The same text is in the message: count only what it did not already show.
        seen = {(f.category, f.pattern) for f in verdict.findings}
        verdict.add([f for f in result.findings() if (f.category, f.pattern) not in seen], blocking)
        return redact_tokens(entries, result.hits)

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


# The text channels of a streamed delta, each with its own hold-back guard.
DELTA_TEXT = ("content", "refusal", "reasoning_content", "reasoning")


class StreamFilter:
    """Rewrites chat.completion.chunk deltas so no part of a match reaches the client.

    One hold-back guard per choice's text channel (content, refusal, reasoning), per tool
    call's arguments and per logprobs list (tokens are held with the text they spell). A
    choice's guards are flushed into the chunk that carries its `finish_reason`; `finish()`
    flushes whatever an upstream left open. Once `blocked`, nothing more may be sent.
    """

    def __init__(self, scanner: Scanner, overrides: Mapping[str, str], blocking: dict[str, bool], window: int) -> None:
        self._scanner = scanner
        self._overrides = overrides
        self._blocking = blocking
        self._window = window
        self._guards: dict[tuple[Any, ...], StreamGuard] = {}  # (channel, choice) or ("tool", choice, call)
        self._tokens: dict[tuple[str, int], TokenGuard] = {}
        self._flushed: list[StreamGuard] = []  # guards of finished choices, for the verdict
        self._flushed_tokens: list[TokenGuard] = []
        self.blocked: tuple[str, ...] = ()

    def _new_guard(self) -> StreamGuard:
        return StreamGuard(self._scanner, overrides=self._overrides, window=self._window)

    def _feed(self, key: tuple[Any, ...], text: str) -> str:
        guard = self._guards.get(key)
        if guard is None:
            guard = self._guards[key] = self._new_guard()
        return self._step(guard.feed(text))

    def _feed_tokens(self, channel: str, index: int, entries: list[Any]) -> list[Any]:
        guard = self._tokens.get((channel, index))
        if guard is None:
            guard = self._tokens[(channel, index)] = TokenGuard(self._new_guard())
        released = guard.feed(entries)
        if guard.blocked:
            self.blocked = guard.blocked
        return released

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
            for channel in DELTA_TEXT:
                if isinstance(delta.get(channel), str):
                    delta[channel] = self._feed((channel, index), delta[channel])
            for call in _tool_calls(delta):
                function = call["function"]
                function["arguments"] = self._feed(("tool", index, call.get("index", 0)), function["arguments"])
            logprobs = choice.get("logprobs")
            if isinstance(logprobs, dict):
                for channel in ("content", "refusal"):
                    if isinstance(logprobs.get(channel), list):
                        logprobs[channel] = self._feed_tokens(channel, index, logprobs[channel])
            if self.blocked:
                return
            if choice.get("finish_reason"):
                self._flush_into(delta, index, choice)

    def _flush_into(self, delta: dict[str, Any], index: int, choice: dict[str, Any]) -> None:
        for token_key in [k for k in self._tokens if k[1] == index]:
            token_guard = self._tokens.pop(token_key)
            self._flushed_tokens.append(token_guard)
            rest = token_guard.flush()
            if token_guard.blocked:
                self.blocked = token_guard.blocked
            elif rest:
                logprobs = choice.get("logprobs")
                if not isinstance(logprobs, dict):
                    logprobs = choice["logprobs"] = {}
                logprobs[token_key[0]] = [*(logprobs.get(token_key[0]) or []), *rest]
        for key in [k for k in self._guards if k[1] == index]:
            guard = self._guards.pop(key)
            self._flushed.append(guard)
            tail = self._step(guard.flush())
            if self.blocked or not tail:
                continue
            if key[0] in DELTA_TEXT:
                delta[key[0]] = (delta.get(key[0]) or "") + tail
                continue
            calls = delta.setdefault("tool_calls", [])
            call = next((c for c in calls if c.get("index", 0) == key[2]), None)
            if call is None:
                calls.append({"index": key[2], "function": {"arguments": tail}})
            else:
                function = call.setdefault("function", {})
                function["arguments"] = (function.get("arguments") or "") + tail

    def finish(self) -> dict[str, Any] | None:
        """A delta chunk with what is still held back (upstreams that never said finish_reason)."""
        choices: dict[int, dict[str, Any]] = {}
        for index in {k[1] for k in self._guards} | {k[1] for k in self._tokens}:
            delta: dict[str, Any] = {}
            choice: dict[str, Any] = {"index": index, "delta": delta, "finish_reason": None}
            self._flush_into(delta, index, choice)
            if delta or choice.get("logprobs"):
                choices[index] = choice
        if self.blocked or not choices:
            return None
        return {"object": "chat.completion.chunk", "choices": list(choices.values())}

    def verdict(self) -> Verdict:
        verdict = Verdict()
        for guard in [*self._flushed, *self._guards.values()]:
            verdict.add(guard.findings(), self._blocking)
        # Tokens spell the text already counted: only what the text did not show is added.
        seen = {(f.category, f.pattern) for f in verdict.findings}
        for token_guard in [*self._flushed_tokens, *self._tokens.values()]:
            extra = [f for f in token_guard.guard.findings() if (f.category, f.pattern) not in seen]
            verdict.add(extra, self._blocking)
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


def _text_slots(messages: list[Any]) -> Iterator[tuple[dict[str, Any], str, str]]:
    """(object, key, text) for each text the model reads in `messages`, in reading order."""
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            yield message, "content", content
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") in TEXT_PART_TYPES:
                    key = "refusal" if part.get("type") == "refusal" else "text"
                    if isinstance(part.get(key), str):
                        yield part, key, part[key]


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
        content = message.get("content")
        if isinstance(content, list):
            for part in content:
                kind = part.get("type") if isinstance(part, dict) else None
                if isinstance(kind, str) and kind not in TEXT_PART_TYPES:
                    kinds[kind] = None
    return list(kinds)


def non_text_input(value: Any) -> bool:
    """Embeddings input given as token ids: text DLP cannot read without the model's tokenizer."""
    return isinstance(value, list) and bool(value) and not all(isinstance(item, str) for item in value)
