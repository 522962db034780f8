"""OpenAI ``chat.completions.create`` parameters: what we honour, what we ignore, what we refuse.

Shared by the OpenAI-shaped client surface (``client.chat.completions.create``) and the
OpenAI-compatible gateway, so both accept and refuse exactly the same requests. Pure
functions, no I/O. :func:`check_chat_params` takes the parameters as a mapping (the
keyword arguments of ``create()``, or the gateway's JSON body) and returns a
:class:`ChatParams` with what the SDK needs, or raises :class:`InvalidRequestError` whose
``field`` names the parameter (``"n"``, ``"messages[2].content[0]"``, ...).

The rules, parameter by parameter:

- Honoured: ``model`` (the provider's models and their aliases; an unknown one is a
  :class:`ModelNotFoundError` naming the models there are), ``messages`` (roles system,
  user, assistant, developer; content a string or text parts), ``stream``,
  ``stream_options.include_usage``.
- Accepted and ignored (the service has no such knob; an answer is still an answer):
  ``IGNORED`` below: sampling and length knobs, ``user``, ``seed``, ``stop``, ``metadata``,
  ``store``, ``service_tier``, ... Their values are checked for type, as OpenAI does.
- Refused, because honouring them silently would change what the caller gets: ``n`` > 1,
  ``tools`` / ``functions`` (unless ``tool_choice`` / ``function_call`` is ``"none"``),
  ``tool_choice`` / ``function_call`` other than ``"none"``, ``response_format`` other than
  ``text``, ``logprobs`` / ``top_logprobs``, ``audio`` and ``modalities`` with audio,
  ``web_search_options``, image / audio / file content parts, and ``tool`` / ``function``
  messages (or assistant messages carrying tool calls).
- Unknown parameters are refused, as OpenAI refuses them; with ``drop_unknown=True`` (the
  gateway's ``--drop-params``, as LiteLLM's ``drop_params``) they are accepted, not checked,
  and named in :attr:`ChatParams.dropped`. The refusals above stay refusals either way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._core import MODEL_ALIASES, MODELS, resolve_model
from ._core.prompt import ROLES
from ._exceptions import InvalidRequestError, ModelNotFoundError
from ._messages import Message

__all__ = [
    "IGNORED",
    "ChatParams",
    "ModelNotFoundError",
    "check_chat_params",
    "check_model",
]

_ROLES = tuple(sorted(ROLES))  # one list of roles, the prompt formatter's

# Accepted and ignored: name -> (kind, low, high). ``kind``: "number", "int", "bool", "str",
# "stop", "mapping", "any". Bounds (inclusive) apply to numbers; None means unbounded.
_IGNORED_SPECS: dict[str, tuple[str, float | None, float | None]] = {
    "temperature": ("number", 0.0, 2.0),
    "top_p": ("number", 0.0, 1.0),
    "presence_penalty": ("number", -2.0, 2.0),
    "frequency_penalty": ("number", -2.0, 2.0),
    "max_tokens": ("int", 1, None),
    "max_completion_tokens": ("int", 1, None),
    "seed": ("int", None, None),
    "stop": ("stop", None, None),
    "logit_bias": ("mapping", None, None),
    "user": ("str", None, None),
    "safety_identifier": ("str", None, None),
    "prompt_cache_key": ("str", None, None),
    "prompt_cache_retention": ("str", None, None),
    "metadata": ("mapping", None, None),
    "store": ("bool", None, None),
    "service_tier": ("str", None, None),
    "reasoning_effort": ("str", None, None),
    "verbosity": ("str", None, None),
    "parallel_tool_calls": ("bool", None, None),
    "prediction": ("mapping", None, None),
}

#: Parameters accepted and ignored: the service has no such setting.
IGNORED: frozenset[str] = frozenset(_IGNORED_SPECS)

_HONOURED = frozenset({"model", "messages", "stream", "stream_options"})
# Accepted only with a harmless value; checked one by one below.
_CONDITIONAL = frozenset(
    {
        "n",
        "tools",
        "tool_choice",
        "functions",
        "function_call",
        "response_format",
        "logprobs",
        "top_logprobs",
        "audio",
        "modalities",
        "web_search_options",
    }
)
_KNOWN = _HONOURED | IGNORED | _CONDITIONAL


@dataclass(frozen=True, slots=True)
class ChatParams:
    """What the SDK needs from a valid ``chat.completions.create`` request."""

    model: str
    """The provider's name of the requested model (aliases resolved)."""
    messages: list[Message]
    """The messages as ``{"role", "content"}`` dicts, content a string (text parts joined)."""
    stream: bool
    include_usage: bool
    """``stream_options.include_usage``: end the stream with a usage chunk."""
    ignored: tuple[str, ...] = ()
    """The accepted-and-ignored parameters the request set (not null), in request order."""
    dropped: tuple[str, ...] = ()
    """The unknown parameters accepted and ignored under ``drop_unknown``, in request order."""


def check_model(model: object) -> str:
    """The provider's name for ``model``; :class:`ModelNotFoundError` when it has none.

    The models there are: ``MODELS`` and the aliases of ``MODEL_ALIASES``.
    """
    if not isinstance(model, str) or not model:
        raise InvalidRequestError(
            "model must be a non-empty string naming one of " + ", ".join(MODELS), field="model"
        )
    try:
        return resolve_model(model)
    except InvalidRequestError:
        names = ", ".join([*MODELS, *MODEL_ALIASES])
        raise ModelNotFoundError(
            f"The model {model!r} does not exist here; the models are: {names}", field="model"
        ) from None


def check_chat_params(params: Mapping[str, Any], *, drop_unknown: bool = False) -> ChatParams:
    """Check OpenAI ``chat.completions.create`` parameters; see the module docstring.

    ``params`` maps parameter names to values (``None`` counts as not given, as in the
    OpenAI API). ``model`` and ``messages`` are required. ``drop_unknown``: accept and ignore
    parameters this module does not know (listed in ``dropped``) instead of refusing them.
    """
    if not isinstance(params, Mapping):
        raise InvalidRequestError(
            f"the request must be a JSON object, not {type(params).__name__}", field=None
        )
    dropped = [str(name) for name in params if name not in _KNOWN]
    if dropped and not drop_unknown:
        raise InvalidRequestError(
            f"Unrecognized request argument supplied: {dropped[0]}", field=dropped[0]
        )
    if params.get("model") is None:
        raise InvalidRequestError("you must provide a model parameter", field="model")
    if params.get("messages") is None:
        raise InvalidRequestError("you must provide a messages parameter", field="messages")
    model = check_model(params["model"])
    messages = _messages(params["messages"])
    stream = _optional(params, "stream", "bool", None, None) or False
    include_usage = _stream_options(params.get("stream_options"), stream)
    _refusals(params)
    ignored = []
    for name, value in params.items():
        spec = _IGNORED_SPECS.get(name)
        if spec is not None and value is not None:
            _optional(params, name, *spec)
            ignored.append(name)
    return ChatParams(model, messages, stream, include_usage, tuple(ignored), tuple(dropped))


# --------------------------------------------------------------------------- values


_KIND_WORDS = {
    "number": "a number",
    "int": "an integer",
    "bool": "a boolean",
    "str": "a string",
    "stop": "a string or a list of strings",
    "mapping": "an object",
    "any": "any value",
}


def _optional(
    params: Mapping[str, Any], name: str, kind: str, low: float | None, high: float | None
) -> Any:
    """``params[name]`` checked against ``kind`` and the bounds; ``None`` when not given."""
    value = params.get(name)
    if value is None:
        return None
    ok = True
    if kind in ("number", "int"):
        # An int of any size is finite and whole (and past float's range, math.isfinite and
        # float() would raise OverflowError on it instead of answering).
        ok = not isinstance(value, bool) and (
            isinstance(value, int)
            or (
                isinstance(value, float)
                and math.isfinite(value)
                and (kind == "number" or value.is_integer())
            )
        )
    elif kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "str":
        ok = isinstance(value, str)
    elif kind == "stop":
        ok = isinstance(value, str) or (
            isinstance(value, list) and all(isinstance(item, str) for item in value)
        )
    elif kind == "mapping":
        ok = isinstance(value, Mapping)
    if not ok:
        raise InvalidRequestError(
            f"{name} must be {_KIND_WORDS[kind]}, not {_describe(value)}", field=name
        )
    if low is not None and value < low:
        raise InvalidRequestError(f"{name} must be at least {low:g}, got {value!r}", field=name)
    if high is not None and value > high:
        raise InvalidRequestError(f"{name} must be at most {high:g}, got {value!r}", field=name)
    return value


def _describe(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _stream_options(options: object, stream: bool) -> bool:
    if options is None:
        return False
    if not isinstance(options, Mapping):
        raise InvalidRequestError(
            f"stream_options must be an object, not {_describe(options)}", field="stream_options"
        )
    if not stream:
        raise InvalidRequestError(
            "stream_options is only allowed when stream is true", field="stream_options"
        )
    for key, value in options.items():
        if key not in ("include_usage", "include_obfuscation"):
            raise InvalidRequestError(
                f"stream_options.{key} is not supported", field=f"stream_options.{key}"
            )
        if value is not None and not isinstance(value, bool):
            raise InvalidRequestError(
                f"stream_options.{key} must be a boolean", field=f"stream_options.{key}"
            )
    return bool(options.get("include_usage"))


def _refusals(params: Mapping[str, Any]) -> None:
    """Raise for the parameters that would change the meaning of the answer."""
    n = _optional(params, "n", "int", 1, None)
    if n is not None and n > 1:
        raise InvalidRequestError(
            f"n={n} is not supported: the service gives one answer per request", field="n"
        )
    tool_choice = params.get("tool_choice")
    if tool_choice is not None and tool_choice != "none":
        raise InvalidRequestError(
            "tool_choice is not supported (only 'none'): the service cannot call tools",
            field="tool_choice",
        )
    function_call = params.get("function_call")
    if function_call is not None and function_call != "none":
        raise InvalidRequestError(
            "function_call is not supported (only 'none'): the service cannot call functions",
            field="function_call",
        )
    for name, choice in (("tools", tool_choice), ("functions", function_call)):
        value = params.get(name)
        if value is None:
            continue
        if not isinstance(value, list):
            raise InvalidRequestError(f"{name} must be a list", field=name)
        if value and choice != "none":
            raise InvalidRequestError(
                f"{name} is not supported: the service cannot call tools "
                f"(send {'tool_choice' if name == 'tools' else 'function_call'}='none', "
                "or no tools)",
                field=name,
            )
    response_format = params.get("response_format")
    if response_format is not None:
        kind = response_format.get("type") if isinstance(response_format, Mapping) else None
        if kind != "text":
            raise InvalidRequestError(
                f"response_format {kind or response_format!r} is not supported: the service "
                "answers free text only ({'type': 'text'})",
                field="response_format",
            )
    if _optional(params, "logprobs", "bool", None, None):
        raise InvalidRequestError(
            "logprobs is not supported: the service reports no log probabilities",
            field="logprobs",
        )
    top_logprobs = _optional(params, "top_logprobs", "int", 0, 20)
    if top_logprobs:
        raise InvalidRequestError(
            "top_logprobs is not supported: the service reports no log probabilities",
            field="top_logprobs",
        )
    if params.get("audio") is not None:
        raise InvalidRequestError("audio output is not supported", field="audio")
    modalities = params.get("modalities")
    if modalities is not None and (
        not isinstance(modalities, list) or any(item != "text" for item in modalities)
    ):
        raise InvalidRequestError(
            "modalities other than ['text'] are not supported", field="modalities"
        )
    if params.get("web_search_options") is not None:
        raise InvalidRequestError(
            "web_search_options is not supported: the service does not search the web",
            field="web_search_options",
        )


# --------------------------------------------------------------------------- messages


def _messages(messages: object) -> list[Message]:
    if isinstance(messages, (str, bytes, bytearray, Mapping)) or not isinstance(messages, Sequence):
        raise InvalidRequestError(
            f"messages must be a list of messages, not {type(messages).__name__}",
            field="messages",
        )
    if not messages:
        raise InvalidRequestError("messages must not be empty", field="messages")
    return [_message(message, index) for index, message in enumerate(messages)]


def _message(message: object, index: int) -> Message:
    where = f"messages[{index}]"
    if not isinstance(message, Mapping):
        raise InvalidRequestError(
            f"{where} must be an object with role and content, not {type(message).__name__}",
            index=index,
            field=where,
        )
    role = message.get("role")
    if role in ("tool", "function"):
        raise InvalidRequestError(
            f"{where}.role {role!r} is not supported: the service cannot call tools",
            index=index,
            field=f"{where}.role",
        )
    if not isinstance(role, str) or role not in _ROLES:
        raise InvalidRequestError(
            f"{where}.role must be one of {', '.join(_ROLES)}; got {role!r}",
            index=index,
            field=f"{where}.role",
        )
    if role == "assistant":
        for key in ("tool_calls", "function_call", "audio"):
            if message.get(key):
                raise InvalidRequestError(
                    f"{where}.{key} is not supported: the service cannot call tools or speak",
                    index=index,
                    field=f"{where}.{key}",
                )
    content = message.get("content")
    if content is None and role != "assistant":
        raise InvalidRequestError(f"{where} has no content", index=index, field=f"{where}.content")
    return {"role": role, "content": _content(content, role, where, index)}  # type: ignore[typeddict-item]


def _content(content: object, role: str, where: str, index: int) -> str:
    if content is None:  # an assistant turn without text
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, (bytes, bytearray, Mapping)) or not isinstance(content, Sequence):
        raise InvalidRequestError(
            f"{where}.content must be a string or a list of text parts, "
            f"not {type(content).__name__}",
            index=index,
            field=f"{where}.content",
        )
    texts = []
    for number, part in enumerate(content):
        at = f"{where}.content[{number}]"
        kind = part.get("type", "text") if isinstance(part, Mapping) else None
        if kind == "text" and isinstance(part, Mapping):  # no type: text, as complete() reads it
            text = part.get("text")
        elif kind == "refusal" and role == "assistant" and isinstance(part, Mapping):
            text = part.get("refusal")
        elif kind is not None:
            raise InvalidRequestError(
                f"{at} has type {kind!r}: only text parts can be sent (the service reads text)",
                index=index,
                field=at,
            )
        else:
            raise InvalidRequestError(
                f"{at} must be an object like {{'type': 'text', 'text': '...'}}",
                index=index,
                field=at,
            )
        if not isinstance(text, str):
            raise InvalidRequestError(f"{at} has no text string", index=index, field=at)
        texts.append(text)
    return "".join(texts)
