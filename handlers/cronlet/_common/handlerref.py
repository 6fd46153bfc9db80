"""The syntax of ``spec.handler``: a registered short name or a Python path.

Accepted forms::

    echo                      registered short name (entry point of the ``cronlet.handlers`` group)
    package.module:Name       module path, then the attribute (``Name.inner`` is allowed after the colon)
    package.module.Name       the same; the last dotted part is the attribute

The operator uses :func:`parse_handler_ref` to reject a malformed spec before it creates any Job, and
the executor uses it before it imports anything. Whether a module exists can only be known inside the
executor image; which short names are registered in *this* environment, :func:`registered` tells (the
operator checks names against its own image's handlers, the executor resolves them, the kubectl plugin
checks them offline). Standard library only; :func:`registered` reads installed metadata, nothing else
here does I/O.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import keyword
import re
from typing import Literal

__all__ = [
    "ENTRY_POINT_GROUP",
    "MAX_HANDLER_LENGTH",
    "HandlerKind",
    "HandlerRef",
    "handler_name_is_valid",
    "parse_handler_ref",
    "registered",
]

# The entry-point group in which handler distributions register short names (see docs/handlers.md).
ENTRY_POINT_GROUP = "cronlet.handlers"

# Same bound as spec.handler in the CRD schema.
MAX_HANDLER_LENGTH = 253

HandlerKind = Literal["entrypoint", "path"]

_SHORT_NAME = re.compile(r"[a-z][a-z0-9_-]*")
# ASCII only on purpose: the name travels through YAML, env vars and logs, where look-alike Unicode
# identifiers would be a trap.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_EXAMPLES = "a registered name such as 'echo', or a path such as 'package.module:Name'"


@dataclasses.dataclass(frozen=True, kw_only=True)
class HandlerRef:
    """A parsed handler reference.

    For ``kind == "entrypoint"``, ``module`` is None and ``attr`` is the registered name. For
    ``kind == "path"``, ``module`` is the module to import and ``attr`` the (possibly dotted) attribute.
    """

    kind: HandlerKind
    module: str | None
    attr: str

    def __str__(self) -> str:
        return self.attr if self.module is None else f"{self.module}:{self.attr}"


def parse_handler_ref(text: str) -> HandlerRef:
    """Parse ``spec.handler``; raises ValueError with a message fit for a user on bad syntax."""
    if not text:
        raise ValueError(f"handler is empty: expected {_EXAMPLES}")
    if len(text) > MAX_HANDLER_LENGTH:
        raise ValueError(
            f"handler is {len(text)} characters long, more than the {MAX_HANDLER_LENGTH} allowed"
        )
    if text != text.strip() or any(character.isspace() for character in text):
        raise ValueError(f"handler {text!r} contains whitespace: expected {_EXAMPLES}")
    if _SHORT_NAME.fullmatch(text):
        return HandlerRef(kind="entrypoint", module=None, attr=text)
    if text.count(":") > 1:
        raise ValueError(f"handler {text!r} has more than one ':': expected {_EXAMPLES}")
    if ":" in text:
        module, attr = text.split(":")
        _check_dotted(text, part_name="module path", dotted=module)
        _check_dotted(text, part_name="attribute after ':'", dotted=attr)
        return HandlerRef(kind="path", module=module, attr=attr)
    if "." not in text:
        raise ValueError(
            f"handler {text!r} is neither a registered name (lowercase letters, digits, '-' and '_', "
            f"starting with a letter) nor a module path: expected {_EXAMPLES}"
        )
    _check_dotted(text, part_name="module path", dotted=text)
    module, _, attr = text.rpartition(".")
    return HandlerRef(kind="path", module=module, attr=attr)


def handler_name_is_valid(name: str) -> bool:
    """Whether ``name`` is syntactically a handler reference (see :func:`parse_handler_ref`)."""
    try:
        parse_handler_ref(name)
    except ValueError:
        return False
    return True


def _check_dotted(text: str, *, part_name: str, dotted: str) -> None:
    if not dotted:
        raise ValueError(f"handler {text!r} has an empty {part_name}: expected {_EXAMPLES}")
    for part in dotted.split("."):
        if not _IDENTIFIER.fullmatch(part):
            shown = repr(part) if part else "an empty part"
            raise ValueError(
                f"handler {text!r}: {shown} in the {part_name} is not a Python identifier: "
                f"expected {_EXAMPLES}"
            )
        if keyword.iskeyword(part):
            raise ValueError(f"handler {text!r}: {part!r} in the {part_name} is a Python keyword")


def registered() -> dict[str, str]:
    """Short names registered in this Python environment and their targets, sorted by name.

    ``{"echo": "cronlet_handlers.echo:EchoHandler", ...}``
    """
    found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    return {entry.name: entry.value for entry in sorted(found, key=lambda e: e.name)}
