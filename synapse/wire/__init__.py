"""The /v1 wire formats: translations at the edge of the one governed pipeline.

Inside, the pipeline speaks one canonical language — an OpenAI chat-completions request, a
`chat.completion` answer, `chat.completion.chunk` stream events — which is also what every
provider adapter speaks. Each door (chat completions, the Responses API, the Messages API)
is a `Wire`: it turns its request into the canonical one, the canonical answer and stream
into its own, and the gateway's refusals into its own error shape. Governance (keys, DLP,
limits, routing, audit) is never repeated per door.
"""

from .base import StreamEncoder, Wire

__all__ = ["StreamEncoder", "Wire"]
