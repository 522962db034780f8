"""Asking once and printing the answer: the prompt from the argument or stdin, then one turn.

A turn is a :class:`~aichatonline._history.History`'s (the system line, the exchanges so
far, the question, one ``conversationId``), asked with a blocking
:class:`~aichatonline.Client`: the interactive session and the one-shot ``chat`` and
``demo`` ask the same way. The answer is printed as it arrives (or whole, with
``--no-stream``) as text or JSON lines; the history keeps the exchange once the answer is
complete.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from dataclasses import dataclass

from .._core.prompt import EMPTY_PROMPT
from .._exceptions import AiChatOnlineError, InvalidRequestError, StreamInterrupted
from .._history import History
from .._sync.client import Client
from ._output import Output, error_record
from ._target import Target

__all__ = ["Answer", "answer_once", "ask", "read_prompt"]

_log = logging.getLogger("aichatonline.cli")


def read_prompt(argument: str | None) -> str | None:
    """The prompt: the argument, or stdin for ``-`` or a piped stdin; ``None`` for a session.

    Trailing whitespace (the newline of ``echo``) is dropped; a prompt with no text is the
    SDK's refusal (``client.complete("")`` says the same: ``EMPTY_PROMPT``), with where the
    prompt came from.
    """
    stdin = sys.stdin
    if argument is None and stdin is not None and stdin.isatty():
        return None
    from_stdin = argument is None or argument == "-"
    if from_stdin:
        try:
            argument = stdin.read() if stdin is not None else ""
        except UnicodeDecodeError as exc:
            raise InvalidRequestError(f"stdin is not valid {exc.encoding} text") from None
    assert argument is not None
    prompt = argument.rstrip()
    if not prompt:
        where = "stdin held no text" if from_stdin else "the argument holds no text"
        raise InvalidRequestError(
            f"{EMPTY_PROMPT}: {where}; give one as an argument or on stdin "
            "(or run without one on a terminal for a session)",
            field="messages",
        )
    return prompt


@dataclass
class Answer:
    """One answer as printed: its text, how many pieces (``None``: not streamed), and time."""

    text: str
    pieces: int | None
    conversation_id: str
    seconds: float


def ask(client: Client, history: History, prompt: str, out: Output, stream: bool) -> Answer:
    """Ask ``prompt`` as ``history``'s next turn, printing the answer as it arrives (or at the
    end, when not ``stream``); the history keeps the exchange once the answer is complete.

    On failure the text received so far is on stdout (for ``--no-stream``, the partial text
    of a :class:`StreamInterrupted` is printed here) and the cursor is at a line start.
    """
    started = time.monotonic()
    turn = history.ask(prompt)
    messages, conversation_id = history.messages_for(prompt), history.conversation_id
    if not stream:
        try:
            text = client.complete(messages, conversation_id=conversation_id)
        except StreamInterrupted as exc:
            if not out.as_json:
                out.text(exc.partial)
                out.end_line()
            raise
        history.answered(turn, text)
        out.piece(text)
        if not out.as_json:
            out.end_line()
        return Answer(text, None, conversation_id, time.monotonic() - started)
    count = 0
    with client.stream(messages, conversation_id=conversation_id) as pieces:
        try:
            for piece in pieces:
                count += 1
                out.piece(piece)
        finally:
            # Whatever happened, what follows starts on a new line; a broken pipe has no lines.
            with contextlib.suppress(BrokenPipeError):
                out.end_line()
        if pieces.completed:
            history.answered(turn, pieces.text)
        return Answer(pieces.text, count, conversation_id, time.monotonic() - started)


def answer_once(target: Target, prompt: str, args: argparse.Namespace) -> Answer:
    """``chat PROMPT`` and ``demo``: one answer, printed; with ``--json``, a last line that
    says how it went (``done``, or the ``error``)."""
    out = Output(args.json)
    with target.client() as client:
        _log.info("asking %s", target.describe())
        try:
            answer = ask(client, History(args.system), prompt, out, stream=not args.no_stream)
        except (AiChatOnlineError, KeyboardInterrupt) as exc:
            if args.json:  # the promised last line, Ctrl-C included
                with contextlib.suppress(BrokenPipeError):
                    out.record(error_record(exc, "".join(out.delivered)))
            raise
    if args.json:
        out.record(
            {
                "type": "done",
                "text": answer.text,
                "chars": len(answer.text),
                "pieces": answer.pieces,
                "conversation_id": answer.conversation_id,
                "seconds": round(answer.seconds, 3),
            }
        )
    return answer
