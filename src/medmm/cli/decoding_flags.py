"""The decoding flags of `medmm predict` and `medmm evaluate`, generated from `GenerationConfig`.

One flag per field of `medmm.generation_config.GenerationConfig`: the field's name in kebab case
(``beam_size`` -> ``--beam-size``), its type and its documented help (the ``Attributes:`` of
the dataclass), so a decoding option added there becomes a flag here, with no hand-written copy
to drift. A bool field is a flag pair: ``--x/--no-x``, or ``--no-x/--x`` for a field named
``no_x``. Every flag defaults to None, the run's own value; a value given becomes the override
``model.decoding.<field>=VALUE`` of the saved run config (the ``decoding:`` section a generating
task declares holds exactly these fields). Torch-free: the CLI builds these at start-up.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass

from medmm.docstrings import attribute_docs
from medmm.generation_config import GenerationConfig

SECTION = "decoding"  # the model: section whose keys these flags set
# Spellings of earlier, hand-written flags that still work (docs and scripts use them).
ALIASES: dict[str, tuple[str, ...]] = {"no_repeat_ngram_size": ("--no-repeat-ngram",)}


@dataclass(frozen=True)
class DecodingFlag:
    """One generated option: the command's parameter name, its type, the click declarations,
    the help text and the dotted model key it overrides."""

    param: str
    type: type
    decls: tuple[str, ...]
    help: str
    model_key: str


def decoding_flags() -> list[DecodingFlag]:
    """A flag for every field of `GenerationConfig`, in declaration order."""
    hints = typing.get_type_hints(GenerationConfig)
    docs = attribute_docs(GenerationConfig)
    out = []
    for f in dataclasses.fields(GenerationConfig):
        kebab = f.name.replace("_", "-")
        tp = hints[f.name]
        if tp is bool:
            off = kebab.removeprefix("no-") if kebab.startswith("no-") else f"no-{kebab}"
            decls = (f"--{kebab}/--{off}",)
        else:
            decls = (f"--{kebab}", *ALIASES.get(f.name, ()))
        key = f"{SECTION}.{f.name}"
        help_text = f"Generation: {docs.get(f.name, '')} Default: the run's model.{key}."
        out.append(DecodingFlag(f.name, tp, decls, help_text, key))
    return out


def override_value(value: object) -> str:
    """A flag's value as the YAML scalar of a model.KEY=VALUE override (bools as true/false)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


__all__ = ["DecodingFlag", "decoding_flags", "override_value"]
