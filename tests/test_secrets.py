"""Secrets stay secret: the token and proxy credentials never appear in log records (DEBUG,
every logger), ``repr`` of clients and streams, or the message of any error, through retries,
refreshes and failures."""

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
    isolate,
    issued_tokens,
    no_provider_backoff,
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
    (Fault(endpoint="token", malformed=True),),
]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(monkeypatch)


@pytest.fixture
def server(aichatonline_server: LocalServer) -> LocalServer:
    return aichatonline_server


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
    with Client(server.base_url, retry_policy=fast(), timeout=SHORT_READ) as client:
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
    assert len(errors) == 13
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
    async with AsyncClient(server.base_url, retry_policy=fast(), timeout=SHORT_READ) as client:
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
    assert len(errors) == 13
    assert not server.pending_faults
    texts = shown + log_texts(caplog)
    for exc in errors:
        texts += error_texts(exc)
    assert_no_secret(texts, tokens)


def test_token_never_leaks_from_the_provider(
    server: LocalServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AICHATONLINE_BASE_URL", server.base_url)
    no_provider_backoff(monkeypatch)
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


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(
            lambda token: Fault(status=400, body=f'{{"msg":"bad UniqueId {token}"}}'.encode()),
            id="status-body",
        ),
        pytest.param(
            lambda token: Fault(error_after=1, error_message=f"UniqueId {token} is over quota"),
            id="in-band-error",
        ),
    ],
)
def test_a_token_echoed_by_the_service_is_kept_out_of_error_messages(
    server: LocalServer, fault: Callable[[str], Fault]
) -> None:
    # A service may quote the rejected id back ("bad UniqueId 1234..."); the SDK promises that
    # no error message contains the token (``_exceptions.py``: "Messages never contain the
    # token or proxy credentials").
    with Client(server.base_url, retry_policy=fast()) as client:
        token = client.get_token()
        server.inject(fault(token))
        with pytest.raises(AiChatOnlineError) as info:
            client.complete(PROMPT)
    assert_no_secret([str(info.value), repr(info.value)], {token})


# --------------------------------------------------------------------------- proxy credentials


def run_through_proxy(server: LocalServer, kind: str) -> tuple[list[BaseException], list[str]]:
    """Every scenario through a proxy with credentials, then wrong credentials, then a proxy
    that is down; return the errors raised and the reprs shown."""
    errors: list[BaseException] = []
    shown: list[str] = []
    with ForwardProxy(kind, username=USER, password=PASSWORD) as proxy:  # type: ignore[arg-type]
        authority = proxy.url.split("://")[1]
        with Client(
            server.base_url,
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
        with Client(server.base_url, proxy=wrong, retry_policy=fast(1)) as client:
            capture(errors, lambda: client.complete(PROMPT))
            shown.append(repr(client))
    down = f"{kind}://{USER}:{PASSWORD}@127.0.0.1:{closed_port()}"
    with Client(server.base_url, proxy=down, retry_policy=fast(1)) as client:
        capture(errors, lambda: client.complete(PROMPT))
        shown.append(repr(client))
    assert len(errors) == 8
    assert not server.pending_faults
    return errors, shown


@pytest.mark.parametrize("kind", ["http", "socks5"])
def test_proxy_credentials_never_leak_from_the_sdk(
    server: LocalServer, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    caplog.set_level(logging.DEBUG)
    errors, shown = run_through_proxy(server, kind)
    ours = [r for r in caplog.records if r.name.startswith("aichatonline")]
    assert any("retrying" in record.getMessage() for record in ours)
    texts = shown + [r.getMessage() for r in ours] + [repr(r.args) for r in ours]
    for exc in errors:
        texts += error_texts(exc)
    assert_no_secret(texts, CREDENTIAL_FORMS)


@pytest.mark.parametrize("kind", ["http", "socks5"])
def test_proxy_credentials_never_reach_any_debug_log(
    server: LocalServer, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    # Every logger, httpx's and httpcore's included: an application that turns on DEBUG
    # logging to chase a problem must not write the proxy password to its logs.
    caplog.set_level(logging.DEBUG)
    run_through_proxy(server, kind)
    assert_no_secret(log_texts(caplog), CREDENTIAL_FORMS)


@pytest.mark.anyio
async def test_async_proxy_credentials_never_leak(
    server: LocalServer, caplog: pytest.LogCaptureFixture, anyio_backend: str
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    with ForwardProxy("http", username=USER, password=PASSWORD) as proxy:
        url = proxy.url_with_credentials
        async with AsyncClient(server.base_url, proxy=url, retry_policy=fast()) as client:
            for faults in SCENARIOS[:4]:
                server.inject(*faults)
                try:
                    await client.complete(PROMPT)
                except AiChatOnlineError as exc:
                    errors.append(exc)
            shown = repr(client)
    down = f"socks5://{USER}:{PASSWORD}@127.0.0.1:{closed_port()}"
    async with AsyncClient(server.base_url, proxy=down, retry_policy=fast(1)) as client:
        try:
            await client.complete(PROMPT)
        except AiChatOnlineError as exc:
            errors.append(exc)
    assert errors
    texts = [shown, *log_texts(caplog)]
    for exc in errors:
        texts += error_texts(exc)
    assert_no_secret(texts, CREDENTIAL_FORMS)


@pytest.mark.parametrize(
    "variable", ["AICHATONLINE_PROXY", "HTTP_PROXY", "ALL_PROXY"], ids=str.lower
)
def test_proxy_credentials_from_the_environment_stay_out_of_repr(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, f"http://{USER}:{PASSWORD}@127.0.0.1:3128")
    with Client("http://127.0.0.1:1") as client:
        assert_no_secret([repr(client), str(client)], CREDENTIAL_FORMS)


def test_a_bad_proxy_url_error_hides_its_credentials() -> None:
    with pytest.raises(AiChatOnlineError) as info:
        Client("http://127.0.0.1:1", proxy=f"ftp://{USER}:{PASSWORD}@127.0.0.1:21")
    assert_no_secret(error_texts(info.value), CREDENTIAL_FORMS)
