"""What both clients share and that does no I/O: their settings, and turning a call into a ``Call``.

Every setting is checked here, at construction or when it is set (``client.timeout = 5``
converts and validates, as httpx's setters do), so that bad input is an
:class:`~aichatonline.InvalidRequestError` before anything is sent. ``_call`` turns one
request of the caller (messages and per-call options) into the core's ``Call``.
"""

from __future__ import annotations

import copy
import dataclasses
import ssl
from collections.abc import Mapping
from typing import ClassVar, Final, TypeVar

from ._config import ProxyURL, environment_proxy_secrets, redact, resolve_base_url, resolve_proxy
from ._core import (
    Call,
    ChatRequest,
    RetryPolicy,
    Timeout,
    TimeoutTypes,
    TokenCache,
    build_headers,
    check_headers,
    format_prompt,
    is_header_text,
)
from ._exceptions import InvalidRequestError
from ._messages import Messages

__all__ = ["NOT_GIVEN", "BaseClient", "NotGiven"]


class NotGiven:
    """The type of :data:`NOT_GIVEN`: "not given", where ``None`` means something."""

    _instance: ClassVar[NotGiven | None] = None

    def __new__(cls) -> NotGiven:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __reduce__(self) -> str:
        return "NOT_GIVEN"


#: A per-call option that was not given: the client's setting applies.
NOT_GIVEN: Final = NotGiven()

_Self = TypeVar("_Self", bound="BaseClient")


def _tls_context(verify: object, *, given: bool) -> ssl.SSLContext | bool:
    """What ``verify=`` asks for, checked now: ``True`` (httpx's default), or a context."""
    if verify is True:
        return True  # certifi's CA bundle, or SSL_CERT_FILE / SSL_CERT_DIR with trust_env
    if given:
        raise InvalidRequestError(
            "pass verify= to your own httpx client, not to the SDK's", field="verify"
        )
    if isinstance(verify, ssl.SSLContext):
        return verify
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if isinstance(verify, str):
        try:
            return ssl.create_default_context(cafile=verify)
        except (OSError, ssl.SSLError) as exc:
            raise InvalidRequestError(
                f"verify: cannot load the CA bundle {verify!r} ({exc})", field="verify"
            ) from None
    raise InvalidRequestError(
        f"verify must be True, False, a CA bundle path or an ssl.SSLContext, not {verify!r}",
        field="verify",
    )


def _check_max_retries(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRequestError(
            f"max_retries must be an int >= 0, not {value!r}", field="max_retries"
        )
    return value


class BaseClient:
    """Settings and token cache of a client; no I/O."""

    #: The httpx client class ``http_client=`` takes (``Client`` or ``AsyncClient``).
    _http_client_class: ClassVar[str] = "Client"
    _tokens_cache: TokenCache

    def __init__(
        self,
        *,
        base_url: str | None,
        proxy: str | None,
        timeout: TimeoutTypes,
        max_retries: int | NotGiven,
        retry_policy: RetryPolicy | None,
        user_agent: str | None,
        strict: bool,
        max_line_bytes: int,
        http_client: object,
        trust_env: bool = True,
        verify: ssl.SSLContext | str | bool = True,
    ) -> None:
        self._base_url = resolve_base_url(base_url)
        if http_client is not None:
            self._check_http_client(http_client)
            if proxy is not None:
                raise InvalidRequestError(
                    "pass either proxy= or http_client=, not both: "
                    "configure the proxy on your own httpx client",
                    field="proxy",
                )
        if not isinstance(trust_env, bool):
            raise InvalidRequestError(
                f"trust_env must be a bool, not {trust_env!r}", field="trust_env"
            )
        self._proxy: ProxyURL | None = (
            None if http_client is not None else resolve_proxy(proxy, trust_env=trust_env)
        )
        # What no message may repeat: the proxy's credentials, and those of any proxy the
        # environment may give httpx (it picks one; any of them could be echoed).
        secrets = self._proxy.secrets if self._proxy is not None else ()
        self._secrets = secrets + (environment_proxy_secrets() if trust_env else ())
        self.timeout = timeout
        if retry_policy is not None:
            if not isinstance(max_retries, NotGiven):
                raise InvalidRequestError(
                    "pass either max_retries= or retry_policy=, not both "
                    "(RetryPolicy has max_retries)",
                    field="max_retries",
                )
            self.retry_policy = retry_policy
        else:
            retries = 2 if isinstance(max_retries, NotGiven) else max_retries
            self._retry_policy = RetryPolicy(max_retries=_check_max_retries(retries))
        self.strict = strict
        if (
            isinstance(max_line_bytes, bool)
            or not isinstance(max_line_bytes, int)
            or max_line_bytes < 1
        ):
            raise InvalidRequestError(
                f"max_line_bytes must be a positive int, not {max_line_bytes!r}",
                field="max_line_bytes",
            )
        self._max_line_bytes = max_line_bytes
        if user_agent is not None and not (
            isinstance(user_agent, str) and user_agent and is_header_text(user_agent)
        ):
            raise InvalidRequestError(
                "user_agent must be a non-empty string of printable ASCII characters",
                field="user_agent",
            )
        self._user_agent = user_agent
        self._headers = build_headers(self._base_url, user_agent)
        #: How the SDK makes its own httpx client (with ``http_client=`` unused).
        self._http_options: dict[str, object] = {
            "verify": _tls_context(verify, given=http_client is not None),
            "trust_env": trust_env,
        }
        if self._proxy is not None:
            self._http_options["proxy"] = self._proxy.for_httpx()

    def _check_http_client(self, http_client: object) -> None:
        kind = type(http_client)
        names = {klass.__name__ for klass in kind.__mro__ if klass.__module__.startswith("httpx")}
        if self._http_client_class not in names:
            raise InvalidRequestError(
                f"http_client must be an httpx.{self._http_client_class}, not {kind.__name__}",
                field="http_client",
            )

    # -- settings -----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The service's base URL (read-only: make another client for another service)."""
        return self._base_url

    @property
    def proxy(self) -> str | None:
        """The proxy URL in use, as given (``repr`` and errors show it masked)."""
        return self._proxy.url if self._proxy is not None else None

    @property
    def timeout(self) -> Timeout:
        """Each call's time limits; set a number, ``None``, a ``Timeout`` or ``httpx.Timeout``."""
        return self._timeout

    @timeout.setter
    def timeout(self, value: TimeoutTypes) -> None:
        self._timeout = Timeout.of(value)

    @property
    def retry_policy(self) -> RetryPolicy:
        """Which failures are retried, how often, and how long to wait between."""
        return self._retry_policy

    @retry_policy.setter
    def retry_policy(self, value: RetryPolicy) -> None:
        if not isinstance(value, RetryPolicy):
            raise InvalidRequestError(
                f"retry_policy must be an aichatonline.RetryPolicy, not {type(value).__name__}",
                field="retry_policy",
            )
        self._retry_policy = value

    @property
    def max_retries(self) -> int:
        """How many times a failed attempt is retried (the retry policy's ``max_retries``)."""
        return self._retry_policy.max_retries

    @max_retries.setter
    def max_retries(self, value: int) -> None:
        self._retry_policy = dataclasses.replace(
            self._retry_policy, max_retries=_check_max_retries(value)
        )

    @property
    def strict(self) -> bool:
        """Whether an unreadable stream line is an error (else it is counted and skipped)."""
        return self._strict

    @strict.setter
    def strict(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise InvalidRequestError(f"strict must be a bool, not {value!r}", field="strict")
        self._strict = value

    @property
    def token(self) -> str | None:
        """The cached unique id (``None`` until the first call fetches one).

        Setting it starts the client with a unique id kept from earlier, which saves the
        first fetch; a rejected one is replaced automatically.
        """
        return self._tokens_cache.token

    @token.setter
    def token(self, value: str | None) -> None:
        self._tokens_cache.token = value

    def _secrets_for_logs(self) -> tuple[str, ...]:
        """What the HTTP libraries' log lines must not show (``_log_secrets``)."""
        token = self._tokens_cache.token
        return (token, *self._secrets) if token else self._secrets

    def _with_options(
        self: _Self,
        *,
        timeout: TimeoutTypes | NotGiven,
        max_retries: int | NotGiven,
        retry_policy: RetryPolicy | NotGiven | None,
        strict: bool | NotGiven,
    ) -> _Self:
        if not isinstance(max_retries, NotGiven) and not isinstance(
            retry_policy, (NotGiven, type(None))
        ):
            raise InvalidRequestError(
                "pass either max_retries= or retry_policy=, not both", field="max_retries"
            )
        clone = copy.copy(self)  # shares the connections, the token and the open streams
        clone.__dict__.pop("chat", None)  # a cached ``client.chat`` belongs to the original
        if not isinstance(timeout, NotGiven):
            clone.timeout = timeout
        if retry_policy is not None and not isinstance(retry_policy, NotGiven):
            clone.retry_policy = retry_policy  # the setter checks it
        if not isinstance(max_retries, NotGiven):
            clone.max_retries = max_retries
        if not isinstance(strict, NotGiven):
            clone.strict = strict
        return clone

    # -- one call -----------------------------------------------------------------------

    def _call(
        self,
        messages: Messages | str,
        *,
        resume: bool,
        conversation_id: str | None,
        timeout: TimeoutTypes | NotGiven,
        max_retries: int | NotGiven,
        extra_headers: Mapping[str, str] | None,
        keep_text: bool = True,
    ) -> Call:
        """Check the input (before any I/O) and fix what every attempt of the call sends."""
        if not isinstance(keep_text, bool):
            raise InvalidRequestError(
                f"keep_text must be True or False, not {keep_text!r}", field="keep_text"
            )
        prompt = format_prompt(messages)
        if conversation_id is not None and (
            not isinstance(conversation_id, str) or not conversation_id
        ):
            raise InvalidRequestError(
                "conversation_id must be a non-empty string", field="conversation_id"
            )
        headers: Mapping[str, str] = self._headers
        if extra_headers:
            extra = check_headers(extra_headers)
            replaced = {name.lower() for name in extra}  # header names are case-insensitive
            headers = {k: v for k, v in headers.items() if k.lower() not in replaced} | extra
        if conversation_id is None:
            chat = ChatRequest(self._base_url, headers, prompt)
        else:
            chat = ChatRequest(self._base_url, headers, prompt, conversation_id)
        policy = self._retry_policy
        if not isinstance(max_retries, NotGiven):
            policy = dataclasses.replace(policy, max_retries=_check_max_retries(max_retries))
        return Call(
            chat,
            tokens=self._tokens_cache,
            policy=policy,
            timeout=self._timeout if isinstance(timeout, NotGiven) else Timeout.of(timeout),
            resume=resume,
            keep_text=keep_text,
            strict=self._strict,
            max_line_bytes=self._max_line_bytes,
            secrets=self._secrets,
        )

    def __repr__(self) -> str:
        proxy = f", proxy={self._proxy.shown!r}" if self._proxy is not None else ""
        return f"<{type(self).__name__} base_url={redact(self._base_url)!r}{proxy}>"
