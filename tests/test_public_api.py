"""The public face: the lazy export lists agree, and no private type shows in a public signature.

``aichatonline/__init__.py`` lists its lazy names three times (``__all__`` for readers and
tools, the ``TYPE_CHECKING`` imports for type checkers, ``_EXPORTS`` for the lazy
loading), and adds the errors by ``_exceptions.__all__``: this checks that they name the
same things. The signatures of everything
exported (and of the methods users call on it) may use only public types: builtins, the
standard library, httpx, and what ``aichatonline`` or ``aichatonline.types`` exports.
"""

from __future__ import annotations

import ast
import inspect
import typing
from pathlib import Path

import pytest

import aichatonline
import aichatonline._exceptions
import aichatonline.types

INIT = Path(aichatonline.__file__)
PUBLIC = {name: getattr(aichatonline, name) for name in aichatonline.__all__}
PUBLIC_TYPES = {
    id(value)
    for value in [*PUBLIC.values(), *vars(aichatonline.types).values()]
    if isinstance(value, type)
}


def _type_checking_names() -> set[str]:
    tree = ast.parse(INIT.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom)
                names |= {alias.asname or alias.name for alias in statement.names}
    return names


def test_the_three_export_lists_agree() -> None:
    exported = {name for names in aichatonline._EXPORTS.values() for name in names}
    errors = set(aichatonline._exceptions.__all__)
    assert set(aichatonline.__all__) == exported | errors | {"__version__"}
    assert _type_checking_names() == exported
    assert not exported & errors
    assert len(aichatonline.__all__) == len(set(aichatonline.__all__))


def test_every_error_class_is_exported() -> None:
    # The tree's __all__ is the package's list of errors: a class left out of it would be
    # missing from ``aichatonline`` too.
    classes = {
        name
        for name, value in vars(aichatonline._exceptions).items()
        if isinstance(value, type) and issubclass(value, Exception)
    }
    assert classes == set(aichatonline._exceptions.__all__)
    for name in classes:
        assert getattr(aichatonline, name) is getattr(aichatonline._exceptions, name)


@pytest.mark.parametrize("name", sorted(aichatonline.__all__))
def test_every_exported_name_resolves(name: str) -> None:
    assert getattr(aichatonline, name) is not None
    assert name in dir(aichatonline)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        aichatonline.Nope  # noqa: B018


def _public_callables() -> list[tuple[str, object]]:
    found: list[tuple[str, object]] = []
    for name, value in PUBLIC.items():
        if inspect.isfunction(value):
            found.append((name, value))
        elif inspect.isclass(value) and value.__module__.startswith("aichatonline"):
            for attribute, member in vars(value).items():
                if attribute.startswith("_") and attribute != "__init__":
                    continue
                function = member.fget if isinstance(member, property) else member
                if isinstance(function, (classmethod, staticmethod)):
                    function = function.__func__
                if inspect.isfunction(function):
                    found.append((f"{name}.{attribute}", function))
    return found


def _leaves(annotation: object) -> list[object]:
    """The classes an annotation names (through unions, generics and aliases)."""
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return [annotation]
    leaves: list[object] = []
    origin = typing.get_origin(annotation)
    if isinstance(origin, type):
        leaves.append(origin)
    for argument in typing.get_args(annotation):
        leaves += _leaves(argument)
    return leaves


# Objects that users get from the clients and never make: their constructors take the
# internal pieces they are made of (a call, a transport; the client seen as the faces'
# Protocol; a conversation's History and Turn).
_MADE_BY_THE_CLIENT = {
    f"{prefix}{name}.__init__"
    for prefix in ("", "Async")
    for name in ("Stream", "Chat", "Completions", "Conversation", "ConversationStream")
}


_CALLABLES = _public_callables()


@pytest.mark.parametrize(("name", "function"), _CALLABLES, ids=[name for name, _ in _CALLABLES])
def test_no_private_type_in_a_public_signature(name: str, function: object) -> None:
    if name in _MADE_BY_THE_CLIENT:
        return
    try:
        hints = typing.get_type_hints(function)
    except NameError:  # names imported for type checking only: read the strings
        hints = dict(getattr(function, "__annotations__", {}))
        for annotation in hints.values():
            text = str(annotation)
            assert "._" not in text.replace("typing._", ""), f"{name}: {text}"
        return
    for annotation in hints.values():
        for leaf in _leaves(annotation):
            if not isinstance(leaf, type):
                continue
            module = leaf.__module__
            if module.startswith("aichatonline"):
                assert id(leaf) in PUBLIC_TYPES, f"{name} names {module}.{leaf.__qualname__}"
            assert not leaf.__name__.startswith("_"), f"{name} names {leaf!r}"
