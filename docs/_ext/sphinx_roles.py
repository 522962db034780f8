"""A griffe extension for the API reference: the docstrings' reST roles as Markdown.

The docstrings are written for readers of the source and ``help()``: they use Sphinx's
roles (``:class:`~aichatonline.Timeout```) and literal blocks introduced by ``::``. MkDocs
reads Markdown, where a role would show as ``:class:`` followed by the path. Here a role
becomes inline code of its target (its last part when written with ``~``), and a ``::``
that opens a literal block becomes ``:``; the indented block under it is a code block in
Markdown too. The docstrings themselves are not changed.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|exc|data|obj|const):`(~?)([^`]+)`")
_LITERAL = re.compile(r"(\S)::$", flags=re.M)


def _role(match: re.Match[str]) -> str:
    short, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


def markdown(text: str) -> str:
    """``text`` with its roles and literal-block markers in Markdown."""
    return _LITERAL.sub(r"\1:", _ROLE.sub(_role, text))


class SphinxRoles(griffe.Extension):
    """Rewrites every docstring once the object tree is built."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
