"""``aichatonline chat`` on a terminal: an interactive session, one turn per input line.

The session keeps a :class:`~aichatonline._history.History` (the ``--system`` text, the
exchanges, one ``conversationId``) and asks each turn with a blocking client
(``_answer.ask``). Ctrl-C while an answer streams stops it; that turn is not kept, and the
session goes on with a fresh client (the interrupt may have landed anywhere inside the old
one) and the same history and token.
"""

from __future__ import annotations

import argparse
import contextlib

from .._exceptions import AiChatOnlineError
from .._history import History
from .._sync.client import Client
from ._answer import ask
from ._output import ExitCode, Output, notice, report
from ._target import LOCAL_HINT, Target

__all__ = ["SESSION_COMMANDS", "Session", "show_history"]

PROMPT = "> "
#: The interactive session's commands, for /help.
SESSION_COMMANDS = {
    "/history": "show the conversation so far",
    "/reset": "forget the conversation (the --system text stays)",
    "/undo": "take the last exchange back",
    "/exit": "leave the session (so do /quit and Ctrl-D)",
    "/help": "show this list",
}


class Session:
    """The interactive chat: one history; one turn per input line."""

    def __init__(self, target: Target, args: argparse.Namespace) -> None:
        self.target = target
        self.history = History(args.system)
        self.stream = not args.no_stream
        self.show_traceback = bool(args.debug)

    def run(self) -> ExitCode:
        """Read lines until /exit, Ctrl-D or two Ctrl-C in a row."""
        with contextlib.suppress(ImportError):  # line editing where the platform has it
            import readline  # noqa: F401
        notice(
            f"chatting with {self.target.describe()}. /help lists the commands; "
            "Ctrl-C stops an answer; /exit or Ctrl-D leaves."
        )
        with contextlib.ExitStack() as stack:
            client = stack.enter_context(self.target.client())
            interrupted_at_prompt = False
            while True:
                try:
                    line = input(PROMPT)
                except EOFError:
                    print()
                    return ExitCode.OK
                except KeyboardInterrupt:
                    print()
                    if interrupted_at_prompt:
                        return ExitCode.INTERRUPTED
                    interrupted_at_prompt = True
                    notice("(Ctrl-C again, /exit or Ctrl-D to leave)")
                    continue
                interrupted_at_prompt = False
                line = line.strip()
                if not line:
                    continue
                if line.startswith("/"):
                    if self.command(line):
                        return ExitCode.OK
                    continue
                if not self.turn(client, line):
                    # The interrupt may have landed anywhere inside the client: carry on
                    # with a fresh one, keeping the token (the history is ours).
                    self.target.token = client.token
                    stack.close()
                    client = stack.enter_context(self.target.client())

    def command(self, line: str) -> bool:
        """Run a /command; True means leave."""
        name = line.split()[0].lower()
        if name in ("/exit", "/quit"):
            return True
        if name == "/reset":
            self.history.reset()
            notice("(the conversation is forgotten)")
        elif name == "/undo":
            removed = self.history.undo()
            notice("(the last exchange is taken back)" if removed else "(nothing to undo)")
        elif name == "/history":
            show_history(self.history)
        elif name == "/help":
            for command, meaning in SESSION_COMMANDS.items():
                print(f"{command:<9} {meaning}")
        else:
            notice(f"unknown command {name}; /help lists the commands")
        return False

    def turn(self, client: Client, line: str) -> bool:
        """Ask and print; the history keeps the exchange. False after a Ctrl-C."""
        out = Output(as_json=False)
        try:
            ask(client, self.history, line, out, self.stream)
        except KeyboardInterrupt:
            out.end_line()
            notice("(stopped; this turn is not kept in the conversation)")
            return False
        except AiChatOnlineError as exc:
            report(exc, self.show_traceback, None if self.target.local else LOCAL_HINT)
            notice("(this turn is not kept in the conversation)")
            return True
        return True


def show_history(history: History) -> None:
    """What the next turn sends before its question: the system message, then the exchanges.

    With no exchange (none yet, or all taken back by /undo or /reset) it says so, and that
    the system message, if any, is still sent.
    """
    exchanges = history.exchanges
    if history.system:
        print(f"System: {history.system}")
    for message in exchanges:
        print(f"{message['role'].capitalize()}: {message['content']}")
    if not exchanges:
        kept = "; the system message above is still sent first" if history.system else ""
        notice(f"(the conversation holds no exchange{kept})")
