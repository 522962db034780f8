"""The models the service answers as, and the names accepted for them. No I/O.

The service has one model and its chat request carries no model field: the name matters
only to the faces that take one (the OpenAI-shaped surface, the gateway, the provider
class), which resolve it here so that an unknown name is refused the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping

from .._exceptions import InvalidRequestError

__all__ = ["DEFAULT_MODEL", "MODELS", "MODEL_ALIASES", "resolve_model"]

DEFAULT_MODEL = "gpt-4o-mini"
#: The models the service answers as (it has one; the request carries no model field).
MODELS: tuple[str, ...] = (DEFAULT_MODEL,)
#: Other names accepted for them.
MODEL_ALIASES: Mapping[str, str] = {"gpt-4o-mini-2024-07-18": DEFAULT_MODEL}


def resolve_model(model: str | None) -> str:
    """The service's name for ``model``: empty or ``None`` means the default; aliases resolve.

    An unknown model is an :class:`InvalidRequestError` naming the models there are.
    """
    if model is None or model == "":
        return DEFAULT_MODEL
    if not isinstance(model, str):
        raise InvalidRequestError(
            f"model must be a string, not {type(model).__name__}", field="model"
        )
    if model in MODELS:
        return model
    alias = MODEL_ALIASES.get(model)
    if alias is not None:
        return alias
    raise InvalidRequestError(
        f"model {model!r} is not supported; choose one of {', '.join(MODELS)}", field="model"
    )
