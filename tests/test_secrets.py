"""Secrets stay secret: the token and proxy credentials never appear in log records (DEBUG,
every logger), ``repr`` of clients and streams, or the message of any error, through retries,
refreshes and failures. Every case runs on the blocking client and on the async one (asyncio
and trio); the token cases on the provider class too."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable

import pytest

from aichatonline import AiChatOnline, AiChatOnlineError, AsyncClient, Client
from aichatonline.testing import Fault, ForwardProxy, LocalServer
from tests.helpers import (
    PROMPT,
    SHORT_READ,
    assert_no_secret,
    closed_port,
    error_texts,
    fast,
    issued_tokens,
)

USER, PASSWORD = "proxy-user", "pr0xy-Pa55word"
CREDENTIAL_FORMS = {
    PASSWORD,
    f"{USER}:{PASSWORD}",
    base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
}

#: Faults that make the clients retry, refresh the token, resume, and fail in every way.
SCENARIOS: list[tuple[Fault, ...]] = [
    (Fault(status=503),),
    (Fault(status=429, retry_after="0"),),
    (Fault(drop_after=3),),
    (Fault(drop_after=0, drop_reset=True),),
    (Fault(stall=2.0, stall_after=2),),
    (Fault(expire_token=True),),
    (Fault(status=400, body=b"bad request"),),
    (Fault(cloudflare=True),),
    (Fault(error_after=2, error_code=4001, error_message="quota exceeded"),),
    (Fault(drop_after=3), Fault(variant=True)),
    (Fault(status=500),) * 3,
    (Fault(expire_token=True), Fault(expire_token=True)),
    (Fault(endpoint="token", status=503),),
    (Fault(endpoint="token", malformed=True),) * 3,  # retried, then a ProtocolError
    (Fault(status=307),),
]


pytestmark = pytest.mark.usefixtures("isolated")


def log_texts(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every log record as a reader would see it: message, arguments and traceback."""
    texts = [caplog.text]
    for record in caplog.records:
        texts += [record.getMessage(), repr(record.args), record.exc_text or ""]
    return texts


def forget_token_for(client: Client | AsyncClient, faults: tuple[Fault, ...]) -> None:
    """Make the next call fetch a token when the faults are meant for the token endpoint."""
    if any(fault.endpoint == "token" for fault in faults):
        client.token = None


def capture(errors: list[BaseException], call: Callable[[], object]) -> None:
    try:
        call()
    except AiChatOnlineError as exc:
        errors.append(exc)


def test_token_never_leaks_from_the_sync_client(
    server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    shown: list[str] = []
    with Client(base_url=server.base_url, retry_policy=fast(), timeout=SHORT_READ) as client:
        for faults in SCENARIOS:
            forget_token_for(client, faults)
            server.inject(*faults)
            stream = client.stream(PROMPT)
            capture(errors, lambda stream=stream: list(stream))  # type: ignore[misc]
            shown += [repr(stream), repr(client)]
            forget_token_for(client, faults)
            server.inject(*faults)
            capture(errors, lambda: client.complete(PROMPT))
        tokens = issued_tokens(server) | {client.token or ""}
        shown.append(repr(client))
    assert len(tokens) >= 3  # refreshed along the way
    assert len(errors) == 15
    assert not server.pending_faults
    assert any("retrying" in record.getMessage() for record in caplog.records)
    texts = shown + log_texts(caplog)
    for exc in errors:
        texts += error_texts(exc)
    assert_no_secret(texts, tokens)


@pytest.mark.anyio
async def test_token_never_leaks_from_the_async_client(
    server: LocalServer, caplog: pytest.LogCaptureFixture, anyio_backend: str
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    shown: list[str] = []
    async with AsyncClient(
        base_url=server.base_url, retry_policy=fast(), timeout=SHORT_READ
    ) as client:
        for faults in SCENARIOS:
            forget_token_for(client, faults)
            server.inject(*faults)
            stream = client.stream(PROMPT)
            try:
                async with stream:
                    async for _ in stream:
                        pass
            except AiChatOnlineError as exc:
                errors.append(exc)
            shown += [repr(stream), repr(client)]
            forget_token_for(client, faults)
            server.inject(*faults)
            try:
                await client.complete(PROMPT)
            except AiChatOnlineError as exc:
                errors.append(exc)
        tokens = issued_tokens(server) | {client.token or ""}
        shown.append(repr(client))
    assert len(tokens) >= 3  # refreshed along the way
    assert len(errors) == 15
    assert not server.pending_faults
    assert any("retrying" in record.getMessage() for record in caplog.records)
    texts = shown + log_texts(caplog)
    for exc in errors:
        texts += error_texts(exc)
    assert_no_secret(texts, tokens)


def test_token_never_leaks_from_the_provider(
    server: LocalServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    no_backoff: None,
) -> None:
    monkeypatch.setenv("AICHATONLINE_BASE_URL", server.base_url)
    caplog.set_level(logging.DEBUG)
    AiChatOnline._tokens.clear()
    errors: list[BaseException] = []
    try:
        for faults in SCENARIOS:
            server.inject(*faults)
            capture(
                errors,
                lambda: list(
                    AiChatOnline.create_completion(
                        "gpt-4o-mini", [{"role": "user", "content": PROMPT}], timeout=SHORT_READ
                    )
                ),
            )
        tokens = issued_tokens(server) | set(AiChatOnline._tokens.values())
    finally:
        AiChatOnline._tokens.clear()
    assert errors
    texts = log_texts(caplog)
    for exc in errors:
        texts += error_texts(exc)
    assert_no_secret(texts, tokens)


@pytest.mark.anyio
async def test_token_never_leaks_from_the_async_provider(
    server: LocalServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    no_backoff: None,
    anyio_backend: str,
) -> None:
    monkeypatch.setenv("AICHATONLINE_BASE_URL", server.base_url)
    caplog.set_level(logging.DEBUG)
    AiChatOnline._tokens.clear()
    errors: list[BaseException] = []
    messages = [{"role": "user", "content": PROMPT}]
    try:
        for faults in SCENARIOS:
            server.inject(*faults)
            try:
                async for _ in AiChatOnline.create_async_generator(
                    "gpt-4o-mini", messages, timeout=SHORT_READ
                ):
                    pass
            except AiChatOnlineError as exc:
                errors.append(exc)
        tokens = issued_tokens(server) | set(AiChatOnline._tokens.values())
    finally:
        AiChatOnline._tokens.clear()
    assert errors
    texts = log_texts(caplog)
    for exc in errors:
        texts += error_texts(exc)
    assert_no_secret(texts, tokens)


#: A service may quote the rejected id back ("bad UniqueId 1234..."); the SDK promises that no
#: error message contains the token (``_exceptions.py``: "Messages never contain the token or
#: proxy credentials").
ECHOED = [
    pytest.param(
        lambda token: Fault(status=400, body=f'{{"msg":"bad UniqueId {token}"}}'.encode()),
        id="status-body",
    ),
    pytest.param(
        lambda token: Fault(error_after=1, error_message=f"UniqueId {token} is over quota"),
        id="in-band-error",
    ),
    pytest.param(
        lambda token: Fault(error_after=0, error_message=f"UniqueId {token} is over quota"),
        id="in-band-error-first",
    ),
]


@pytest.mark.parametrize("fault", ECHOED)
def test_a_token_echoed_by_the_service_is_kept_out_of_error_messages(
    server: LocalServer, fault: Callable[[str], Fault]
) -> None:
    with Client(base_url=server.base_url, retry_policy=fast()) as client:
        token = client.get_token()
        server.inject(fault(token))
        with pytest.raises(AiChatOnlineError) as info:
            client.complete(PROMPT)
    assert_no_secret(error_texts(info.value), {token})


@pytest.mark.anyio
@pytest.mark.parametrize("fault", ECHOED)
async def test_a_token_echoed_by_the_service_is_kept_out_of_error_messages_async(
    server: LocalServer, anyio_backend: str, fault: Callable[[str], Fault]
) -> None:
    async with AsyncClient(base_url=server.base_url, retry_policy=fast()) as client:
        token = await client.get_token()
        server.inject(fault(token))
        with pytest.raises(AiChatOnlineError) as info:
            await client.complete(PROMPT)
    assert_no_secret(error_texts(info.value), {token})


# --------------------------------------------------------------------------- proxy credentials


def run_through_proxy(server: LocalServer, kind: str) -> tuple[list[BaseException], list[str]]:
    """Every scenario through a proxy with credentials, then wrong credentials, then a proxy
    that is down; return the errors raised and the reprs shown."""
    errors: list[BaseException] = []
    shown: list[str] = []
    with ForwardProxy(kind, username=USER, password=PASSWORD) as proxy:  # type: ignore[arg-type]
        authority = proxy.url.split("://")[1]
        with Client(
            base_url=server.base_url,
            proxy=proxy.url_with_credentials,
            retry_policy=fast(),
            timeout=SHORT_READ,
        ) as client:
            for faults in SCENARIOS:
                forget_token_for(client, faults)
                server.inject(*faults)
                capture(errors, lambda: client.complete(PROMPT))
            shown.append(repr(client))
        assert proxy.requests
        # Wrong credentials (the real password plus one character, so a leak shows).
        wrong = f"{kind}://{USER}:{PASSWORD}x@{authority}"
        with Client(base_url=server.base_url, proxy=wrong, retry_policy=fast(1)) as client:
            capture(errors, lambda: client.complete(PROMPT))
            shown.append(repr(client))
    down = f"{kind}://{USER}:{PASSWORD}@127.0.0.1:{closed_port()}"
    with Client(base_url=server.base_url, proxy=down, retry_policy=fast(1)) as client:
        capture(errors, lambda: client.complete(PROMPT))
        shown.append(repr(client))
    assert len(errors) == 9
    assert not server.pending_faults
    return errors, shown


async def arun_through_proxy(
    server: LocalServer, kind: str
) -> tuple[list[BaseException], list[str]]:
    """``run_through_proxy`` with the async client."""
    errors: list[BaseException] = []
    shown: list[str] = []

    async def acapture(client: AsyncClient) -> None:
        try:
            await client.complete(PROMPT)
        except AiChatOnlineError as exc:
            errors.append(exc)

    with ForwardProxy(kind, username=USER, password=PASSWORD) as proxy:  # type: ignore[arg-type]
        authority = proxy.url.split("://")[1]
        async with AsyncClient(
            base_url=server.base_url,
            proxy=proxy.url_with_credentials,
            retry_policy=fast(),
            timeout=SHORT_READ,
        ) as client:
            for faults in SCENARIOS:
                forget_token_for(client, faults)
                server.inject(*faults)
                await acapture(client)
            shown.append(repr(client))
        assert proxy.requests
        wrong = f"{kind}://{USER}:{PASSWORD}x@{authority}"
        async with AsyncClient(
            base_url=server.base_url, proxy=wrong, retry_policy=fast(1)
        ) as client:
            await acapture(client)
            shown.append(repr(client))
    down = f"{kind}://{USER}:{PASSWORD}@127.0.0.1:{closed_port()}"
    async with AsyncClient(base_url=server.base_url, proxy=down, retry_policy=fast(1)) as client:
        await acapture(client)
        shown.append(repr(client))
    assert len(errors) == 9
    assert not server.pending_faults
    return errors, shown


def _sdk_texts(caplog: pytest.LogCaptureFixture) -> list[str]:
    ours = [r for r in caplog.records if r.name.startswith("aichatonline")]
    assert any("retrying" in record.getMessage() for record in ours)
    return [r.getMessage() for r in ours] + [repr(r.args) for r in ours]


@pytest.mark.parametrize("kind", ["http", "socks5"])
def test_proxy_credentials_never_leak_from_the_sdk(
    server: LocalServer, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    caplog.set_level(logging.DEBUG)
    errors, shown = run_through_proxy(server, kind)
    texts = shown + _sdk_texts(caplog)
    for exc in errors:
        texts += error_texts(exc)
    assert_no_secret(texts, CREDENTIAL_FORMS)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["http", "socks5"])
async def test_proxy_credentials_never_leak_from_the_async_sdk(
    server: LocalServer, caplog: pytest.LogCaptureFixture, anyio_backend: str, kind: str
) -> None:
    caplog.set_level(logging.DEBUG)
    errors, shown = await arun_through_proxy(server, kind)
    texts = shown + _sdk_texts(caplog)
    for exc in errors:
        texts += error_texts(exc)
    assert_no_secret(texts, CREDENTIAL_FORMS)


@pytest.mark.parametrize("kind", ["http", "socks5"])
def test_proxy_credentials_never_reach_any_debug_log(
    server: LocalServer, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    # Every logger, asyncio's and any library's included: an application that turns on DEBUG
    # logging to chase a problem must not write the proxy password to its logs.
    caplog.set_level(logging.DEBUG)
    run_through_proxy(server, kind)
    assert_no_secret(log_texts(caplog), CREDENTIAL_FORMS)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["http", "socks5"])
async def test_async_proxy_credentials_never_reach_any_debug_log(
    server: LocalServer, caplog: pytest.LogCaptureFixture, anyio_backend: str, kind: str
) -> None:
    caplog.set_level(logging.DEBUG)
    await arun_through_proxy(server, kind)
    assert_no_secret(log_texts(caplog), CREDENTIAL_FORMS)


@pytest.mark.parametrize("kind", [Client, AsyncClient], ids=["sync", "async"])
@pytest.mark.parametrize(
    "variable", ["AICHATONLINE_PROXY", "HTTP_PROXY", "ALL_PROXY"], ids=str.lower
)
def test_proxy_credentials_from_the_environment_stay_out_of_repr(
    monkeypatch: pytest.MonkeyPatch, variable: str, kind: type[Client]
) -> None:
    monkeypatch.setenv(variable, f"http://{USER}:{PASSWORD}@127.0.0.1:3128")
    client = kind(base_url="http://127.0.0.1:1")
    # The SDK's own variable is the SDK's proxy; the standard ones are httpx's (trust_env).
    assert (client.proxy is not None) is (variable == "AICHATONLINE_PROXY")
    assert_no_secret([repr(client), str(client)], CREDENTIAL_FORMS)


@pytest.mark.parametrize("kind", [Client, AsyncClient], ids=["sync", "async"])
def test_a_bad_proxy_url_error_hides_its_credentials(kind: type[Client]) -> None:
    with pytest.raises(AiChatOnlineError) as info:
        kind(base_url="http://127.0.0.1:1", proxy=f"ftp://{USER}:{PASSWORD}@127.0.0.1:21")
    assert_no_secret(error_texts(info.value), CREDENTIAL_FORMS)
