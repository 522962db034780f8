"""The gateway's settings (issue 18): every one a ``create_app`` argument, an
``AICHATONLINE_GATEWAY_*`` variable and a flag of ``aichatonline gateway``; checked before
any I/O; handed to ``--workers`` processes whole; a flag or an argument wins over its
variable."""

from __future__ import annotations

from typing import Any

import pytest

from aichatonline import InvalidRequestError
from aichatonline._cli import main
from aichatonline.gateway import GatewaySettings

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from aichatonline.gateway import create_app
from aichatonline.gateway._settings import ENV_NAMES, SETTINGS_ENV

ENV = {
    "AICHATONLINE_GATEWAY_SSE_KEEPALIVE": "15",
    "AICHATONLINE_GATEWAY_SHUTDOWN_TIMEOUT": "0",
    "AICHATONLINE_GATEWAY_READY_TTL": "2.5",
    "AICHATONLINE_GATEWAY_LOG_FORMAT": "json",
    "AICHATONLINE_GATEWAY_DROP_PARAMS": "yes",
    "AICHATONLINE_GATEWAY_AIOHTTP": "0",
    "AICHATONLINE_GATEWAY_MAX_CONCURRENCY": "7",
    "AICHATONLINE_GATEWAY_CORS_ORIGINS": "https://a.example, https://b.example",
    "AICHATONLINE_GATEWAY_NO_AUTH": "on",
    "AICHATONLINE_GATEWAY_TIMEOUT": "12",
}


@pytest.fixture(autouse=True)
def _no_gateway_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [*ENV_NAMES.values(), SETTINGS_ENV]:
        monkeypatch.delenv(name, raising=False)


def test_every_field_but_base_url_and_proxy_has_a_variable() -> None:
    fields = set(GatewaySettings.__dataclass_fields__)
    assert set(ENV_NAMES) == fields - {"base_url", "proxy"}
    assert ENV_NAMES["api_key"] == "AICHATONLINE_GATEWAY_API_KEY"
    assert ENV_NAMES["sse_keepalive"] == "AICHATONLINE_GATEWAY_SSE_KEEPALIVE"


def test_variables_are_read_and_arguments_win() -> None:
    settings = GatewaySettings.from_environ(ENV)
    assert settings.sse_keepalive == 15.0
    assert settings.shutdown_timeout == 0.0
    assert settings.ready_ttl == 2.5
    assert settings.log_format == "json"
    assert settings.drop_params is True
    assert settings.aiohttp is False
    assert settings.max_concurrency == 7
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert settings.no_auth is True
    assert settings.timeout == 12.0
    given = GatewaySettings.from_environ(ENV, sse_keepalive=2, drop_params=False, cors_origins=[])
    assert (given.sse_keepalive, given.drop_params, given.cors_origins) == (2, False, ())
    defaults = GatewaySettings.from_environ({"AICHATONLINE_GATEWAY_SSE_KEEPALIVE": ""})
    assert defaults == GatewaySettings()
    assert defaults.sse_keepalive is None
    assert (defaults.shutdown_timeout, defaults.ready_ttl, defaults.log_format) == (30, 30, "text")


@pytest.mark.parametrize(
    ("name", "value", "field"),
    [
        ("AICHATONLINE_GATEWAY_SSE_KEEPALIVE", "soon", "sse_keepalive"),
        ("AICHATONLINE_GATEWAY_SSE_KEEPALIVE", "0", "sse_keepalive"),
        ("AICHATONLINE_GATEWAY_SHUTDOWN_TIMEOUT", "-1", "shutdown_timeout"),
        ("AICHATONLINE_GATEWAY_READY_TTL", "inf", "ready_ttl"),
        ("AICHATONLINE_GATEWAY_LOG_FORMAT", "xml", "log_format"),
        ("AICHATONLINE_GATEWAY_DROP_PARAMS", "maybe", "drop_params"),
        ("AICHATONLINE_GATEWAY_MAX_CONCURRENCY", "1.5", "max_concurrency"),
    ],
)
def test_bad_values_name_the_setting(name: str, value: str, field: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        GatewaySettings.from_environ({name: value})
    assert info.value.field == field


def test_create_app_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    settings = create_app(base_url="http://127.0.0.1:9").state.gateway.settings
    assert settings == GatewaySettings.from_environ(ENV, base_url="http://127.0.0.1:9")
    assert (
        create_app(
            sse_keepalive=1, base_url="http://127.0.0.1:9"
        ).state.gateway.settings.sse_keepalive
        == 1
    )
    with pytest.raises(InvalidRequestError):
        create_app(log_format="yaml")


def test_the_workers_get_every_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = GatewaySettings.from_environ(ENV, api_key="sk-w", base_url="http://x:1")
    monkeypatch.setenv(SETTINGS_ENV, settings.to_env())
    monkeypatch.setenv(ENV_NAMES["api_key"], "sk-w")
    assert "sk-w" not in settings.to_env()
    assert GatewaySettings.from_env() == settings


def run_command(
    monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[GatewaySettings, dict[str, Any]]:
    seen: list[tuple[GatewaySettings, dict[str, Any]]] = []

    def serve(settings: GatewaySettings, **options: Any) -> bool:
        seen.append((settings, options))
        return True

    monkeypatch.setattr("aichatonline.gateway._run.serve", serve)
    assert main(["gateway", "--base-url", "http://127.0.0.1:9", *args]) == 0
    (result,) = seen
    return result


def test_the_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    settings, options = run_command(
        monkeypatch,
        "--sse-keepalive",
        "10",
        "--shutdown-timeout",
        "5",
        "--ready-ttl",
        "1",
        "--log-format",
        "json",
        "--drop-params",
        "-v",
    )  # fmt: skip  (--aiohttp: tested with DefaultAioHttpClient, by the HTTP work)
    assert settings.sse_keepalive == 10
    assert settings.shutdown_timeout == 5
    assert settings.ready_ttl == 1
    assert settings.log_format == "json"
    assert settings.drop_params is True
    assert options["verbose"] == 1
    settings, options = run_command(monkeypatch)
    assert settings == GatewaySettings(base_url="http://127.0.0.1:9")
    assert (options["host"], options["port"], options["workers"]) == ("127.0.0.1", 8000, 1)


def test_the_flags_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AICHATONLINE_GATEWAY_PORT", "0")
    monkeypatch.setenv("AICHATONLINE_GATEWAY_WORKERS", "3")
    settings, options = run_command(monkeypatch, "--max-concurrency", "9")
    assert settings == GatewaySettings.from_environ(
        ENV, base_url="http://127.0.0.1:9", max_concurrency=9
    )
    assert (options["port"], options["workers"]) == (0, 3)
    monkeypatch.setenv("AICHATONLINE_GATEWAY_WORKERS", "none")
    assert main(["gateway", "--local"]) == 2


def test_help_names_the_new_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gateway", "--help"]) == 0
    text = capsys.readouterr().out
    for flag in (
        "--sse-keepalive",
        "--shutdown-timeout",
        "--ready-ttl",
        "--log-format",
        "--drop-params",
        "--aiohttp",
        "AICHATONLINE_GATEWAY_<FLAG>",
    ):
        assert flag in text
