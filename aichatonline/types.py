"""The objects the SDK answers with: a ``Completion``, and the OpenAI-shaped objects.

:class:`Completion` is what ``complete(..., full=True)`` returns: the text and how it came.
The rest are OpenAI's shapes (chat completions, streamed chunks, models and errors), the one
source of truth for the JSON of the OpenAI-shaped surface:
``client.chat.completions.create()`` returns them and the OpenAI-compatible gateway
(``aichatonline.gateway``) serializes them. They are plain dataclasses (slots, no pydantic):
attribute access as on openai's objects (``completion.choices[0].message.content``), and
``to_dict()`` giving exactly the JSON the OpenAI API sends, which openai's own models parse.

What the service cannot report is said, not invented: ``usage`` is ``None`` (the service
counts no tokens), ``system_fingerprint`` and ``service_tier`` are ``None``, ``logprobs`` is
``None``. Fields OpenAI sends only in some cases follow its rules in ``to_dict()``:

- a ``ChoiceDelta`` carries only the keys that are set (the first delta ``{"role":
  "assistant", "content": ""}``, then ``{"content": "..."}``, the last one ``{}``);
- a ``ChatCompletionChunk`` carries ``usage`` when it has usage, or when it is the usage
  chunk of ``stream_options.include_usage`` (``choices == []``, ``"usage": null`` here).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

__all__ = [
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionMessage",
    "Choice",
    "ChoiceDelta",
    "ChunkChoice",
    "Completion",
    "CompletionUsage",
    "ErrorObject",
    "FinishReason",
    "Model",
    "ModelPage",
]

#: Why an answer ended. The service only ever ends with ``"stop"``.
FinishReason: TypeAlias = Literal["stop", "length", "tool_calls", "content_filter", "function_call"]


@dataclass(frozen=True)
class Completion:
    """A whole answer and how it came: what ``complete(..., full=True)`` returns.

    ``str(completion)`` is the text.
    """

    text: str
    #: The ``conversationId`` the call sent (pass it again to continue the conversation).
    conversation_id: str
    #: Why the answer ended: always ``"stop"`` (the service has no other end).
    finish_reason: Literal["stop"] = "stop"
    #: How many retries the call took.
    retries: int = 0
    #: Unreadable lines skipped on the way (and surrogate halves replaced).
    anomalies: int = 0
    #: The response headers of the last attempt (lower-case names).
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)

    def __str__(self) -> str:
        return self.text


@dataclass(slots=True, kw_only=True)
class CompletionUsage:
    """Token counts. The service reports none, so the SDK never fills one in."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    def to_dict(self) -> dict[str, Any]:
        """OpenAI's JSON shape of ``usage``."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


def _usage(usage: CompletionUsage | None) -> dict[str, Any] | None:
    return None if usage is None else usage.to_dict()


# --------------------------------------------------------------------------- whole answers


@dataclass(slots=True, kw_only=True)
class ChatCompletionMessage:
    """The answer's message: ``role`` is always ``"assistant"``, ``content`` the text."""

    content: str | None
    role: Literal["assistant"] = "assistant"
    refusal: str | None = None
    annotations: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """OpenAI's JSON shape of ``choices[i].message``."""
        return {
            "role": self.role,
            "content": self.content,
            "refusal": self.refusal,
            "annotations": list(self.annotations),
        }


@dataclass(slots=True, kw_only=True)
class Choice:
    """One answer of a ``ChatCompletion`` (there is always exactly one, ``index`` 0)."""

    message: ChatCompletionMessage
    finish_reason: FinishReason = "stop"
    index: int = 0
    logprobs: None = None

    def to_dict(self) -> dict[str, Any]:
        """OpenAI's JSON shape of ``choices[i]``."""
        return {
            "index": self.index,
            "message": self.message.to_dict(),
            "logprobs": self.logprobs,
            "finish_reason": self.finish_reason,
        }


@dataclass(slots=True, kw_only=True)
class ChatCompletion:
    """A whole answer: ``completion.choices[0].message.content`` is its text."""

    id: str
    created: int
    model: str
    choices: list[Choice]
    object: Literal["chat.completion"] = "chat.completion"
    usage: CompletionUsage | None = None
    service_tier: str | None = None
    system_fingerprint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """OpenAI's JSON shape of a ``chat.completion`` object."""
        return {
            "id": self.id,
            "object": self.object,
            "created": self.created,
            "model": self.model,
            "choices": [choice.to_dict() for choice in self.choices],
            "usage": _usage(self.usage),
            "service_tier": self.service_tier,
            "system_fingerprint": self.system_fingerprint,
        }


# --------------------------------------------------------------------------- streamed answers


@dataclass(slots=True, kw_only=True)
class ChoiceDelta:
    """What one chunk adds to the answer: the role (first chunk) or some text."""

    content: str | None = None
    role: Literal["assistant"] | None = None
    refusal: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """OpenAI's JSON shape of ``choices[i].delta``: only the keys that are set."""
        delta: dict[str, Any] = {}
        if self.role is not None:
            delta["role"] = self.role
        if self.content is not None:
            delta["content"] = self.content
        if self.refusal is not None:
            delta["refusal"] = self.refusal
        return delta


@dataclass(slots=True, kw_only=True)
class ChunkChoice:
    """One choice of a ``ChatCompletionChunk``; ``finish_reason`` is set on the last one."""

    delta: ChoiceDelta
    finish_reason: FinishReason | None = None
    index: int = 0
    logprobs: None = None

    def to_dict(self) -> dict[str, Any]:
        """OpenAI's JSON shape of ``choices[i]`` in a chunk."""
        return {
            "index": self.index,
            "delta": self.delta.to_dict(),
            "logprobs": self.logprobs,
            "finish_reason": self.finish_reason,
        }


@dataclass(slots=True, kw_only=True)
class ChatCompletionChunk:
    """One event of a streamed answer; every chunk of one answer has the same ``id`` and
    ``created``. With ``stream_options.include_usage`` the last chunk has ``choices == []``."""

    id: str
    created: int
    model: str
    choices: list[ChunkChoice]
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    usage: CompletionUsage | None = None
    service_tier: str | None = None
    system_fingerprint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """OpenAI's JSON shape of a ``chat.completion.chunk`` object."""
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": self.object,
            "created": self.created,
            "model": self.model,
            "service_tier": self.service_tier,
            "system_fingerprint": self.system_fingerprint,
            "choices": [choice.to_dict() for choice in self.choices],
        }
        if self.usage is not None or not self.choices:
            chunk["usage"] = _usage(self.usage)
        return chunk


# --------------------------------------------------------------------------- models


@dataclass(slots=True, kw_only=True)
class Model:
    """One model of ``GET /v1/models``."""

    id: str
    created: int
    owned_by: str
    object: Literal["model"] = "model"

    def to_dict(self) -> dict[str, Any]:
        """OpenAI's JSON shape of a ``model`` object."""
        return {
            "id": self.id,
            "object": self.object,
            "created": self.created,
            "owned_by": self.owned_by,
        }


@dataclass(slots=True, kw_only=True)
class ModelPage:
    """The answer of ``GET /v1/models``: ``{"object": "list", "data": [...]}``; iterable."""

    data: list[Model]
    object: Literal["list"] = "list"

    def __iter__(self) -> Iterator[Model]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def to_dict(self) -> dict[str, Any]:
        """OpenAI's JSON shape of a model list."""
        return {"object": self.object, "data": [model.to_dict() for model in self.data]}


# --------------------------------------------------------------------------- errors


@dataclass(slots=True, kw_only=True)
class ErrorObject:
    """An OpenAI error body: ``{"error": {"message", "type", "param", "code"}}``.

    ``type`` is the kind (``"invalid_request_error"``, ``"server_error"``, ...), ``param``
    the request parameter at fault (or ``None``), ``code`` a machine-readable reason.
    """

    message: str
    type: str
    param: str | None = None
    code: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """OpenAI's JSON shape of an error response body (and of an in-stream error event)."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }
