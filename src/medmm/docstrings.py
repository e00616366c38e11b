"""Help text read from a class's docstring (the ``Attributes:`` section of Google style).

Standard library only: the CLI builds options from it at import time, and commands that must
start without torch or the engine (the human-evaluation app) import the CLI.
"""

from __future__ import annotations

import inspect
import re

_ENTRY = re.compile(r"^(\s*)([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s*:\s*(.*)$")


def attribute_docs(cls: type) -> dict[str, str]:
    """Field name -> help text from `cls`'s docstring ``Attributes:`` section ({} without one).

    Entries start at the section's first indentation; deeper-indented lines continue the entry
    above. ``a, b: text`` documents a and b with one text.
    """
    doc = inspect.cleandoc(cls.__doc__ or "")
    if "Attributes:" not in doc:
        return {}
    lines = doc.split("Attributes:", 1)[1].splitlines()
    out: dict[str, str] = {}
    indent: int | None = None
    names: list[str] = []
    for line in lines:
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        if indent is None:
            indent = depth
        if depth < indent:  # the section ended (a dedented paragraph)
            break
        m = _ENTRY.match(line)
        if depth == indent and m:
            names = [n.strip() for n in m.group(2).split(",")]
            for n in names:
                out[n] = m.group(3).strip()
        elif names:
            for n in names:
                out[n] = f"{out[n]} {line.strip()}".strip()
    return out
