"""The commands that talk to the service: ``chat`` (one answer, or a session), ``demo``, ``serve``.

Where answers come from is ``_target.py``; asking once and printing, ``_answer.py``; the
interactive session, ``_session.py``. Everything goes through the public blocking
:class:`~aichatonline.Client`. The bundled server (:mod:`aichatonline.testing`) is imported
only by the commands that start it, so ``chat`` starts quickly.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from .._config import BASE_URL_ENV, redact, resolve_base_url, resolve_proxy
from .._core import DEFAULT_BASE_URL
from .._exceptions import APIConnectionError, InvalidRequestError
from .._openai import check_model
from ._answer import answer_once, read_prompt
from ._output import ExitCode, notice, one_line
from ._session import Session
from ._target import (
    LOCAL_HINT,
    PROBE_SECONDS,
    Target,
    client_options,
    probe,
    proxy_url,
    start_local_server,
)

__all__ = ["DEMO_PROMPT", "PROBE_SECONDS", "cmd_chat", "cmd_demo", "cmd_serve"]

DEMO_PROMPT = "Hello! What can you do?"


def _chat_target(args: argparse.Namespace, stack: contextlib.ExitStack) -> Target:
    options = client_options(args)
    if args.local:
        return Target(start_local_server(stack), None, True, options)
    args.failure_hint = LOCAL_HINT
    return Target(resolve_base_url(args.base_url), proxy_url(args.proxy), False, options)


def _check_request_options(args: argparse.Namespace) -> None:
    """Fail on bad input before any I/O (these raise InvalidRequestError)."""
    if args.model:  # the SDK's own check: the same names, the same ModelNotFoundError
        check_model(args.model)
    if args.base_url is not None:
        resolve_base_url(args.base_url)
    resolve_proxy(args.proxy)


def cmd_chat(args: argparse.Namespace) -> ExitCode:
    """``aichatonline chat``: one answer, or an interactive session."""
    _check_request_options(args)
    prompt = read_prompt(args.prompt)
    if prompt is None and args.json:
        raise InvalidRequestError(
            "--json needs a prompt (an argument or stdin); the interactive session prints text"
        )
    with contextlib.ExitStack() as stack:
        target = _chat_target(args, stack)
        if prompt is None:
            return Session(target, args).run()
        answer_once(target, prompt, args)
    return ExitCode.OK


def cmd_demo(args: argparse.Namespace) -> ExitCode:
    """``aichatonline demo``: the real service if it answers, else the bundled server."""
    _check_request_options(args)
    prompt = read_prompt(args.prompt)
    assert prompt is not None  # demo's PROMPT has a default, so never a session
    with contextlib.ExitStack() as stack:
        if args.local or args.base_url is not None or os.environ.get(BASE_URL_ENV):
            target = _chat_target(args, stack)
        else:
            proxy = proxy_url(args.proxy)
            found = probe(DEFAULT_BASE_URL, proxy, PROBE_SECONDS)
            if found.token is not None:
                target = Target(DEFAULT_BASE_URL, proxy, False, client_options(args))
                target.token = found.token  # the probe's token saves the chat a fetch
            else:
                url = start_local_server(stack)
                target = Target(url, None, True, client_options(args))
                state = "reachable" if isinstance(found.error, APIConnectionError) else "usable"
                reason = one_line(str(found.error))
                notice(
                    f"the service is not {state}; using the bundled local server at {url} "
                    f"({type(found.error).__name__}: {redact(reason)})"
                )
        if not args.json:
            notice(f"asking {target.describe()}: {prompt}")
        answer = answer_once(target, prompt, args)
    if not args.json:
        pieces = "" if answer.pieces is None else f" in {answer.pieces} pieces"
        notice(f"done: {len(answer.text)} characters{pieces}, {answer.seconds:.2f} s")
    return ExitCode.OK


def cmd_serve(args: argparse.Namespace) -> ExitCode:
    """``aichatonline serve``: the bundled local server in the foreground."""
    from ..testing import ServerOptions, run_server  # only serve pays for the server's import

    def announce(url: str) -> None:
        # stderr first: whoever has read the URL from stdout (a script, a test) may stop the
        # server at once, and these lines must already be out by then.
        notice(f"serving the bundled local AiChatOnline server at {url}; Ctrl-C stops it")
        print(f"export {BASE_URL_ENV}={url}", file=sys.stderr, flush=True)
        print(url, flush=True)  # the first stdout line is exactly the URL, for scripts

    try:
        run_server(
            args.host, args.port, options=ServerOptions.from_namespace(args), on_ready=announce
        )
    except OSError as exc:
        hint = " (in use? --port 0 picks a free port)" if args.port else ""
        notice(f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}{hint}")
        return ExitCode.ERROR
    notice("stopped")
    return ExitCode.OK
