"""One registry type for every kind of named plug-in: datasets, encoders, fusions, model
families, label maps, tasks.

    FUSIONS: Registry[type[Fusion]] = Registry("fusion", discover=("medmm.models.fusion",))

    @FUSIONS.register("gated", uses_image=True, uses_text=True)   # metadata: keyword arguments
    class Gated(Fusion): ...

    FUSIONS["gated"]                    # the registered object
    FUSIONS.entry("gated").meta         # {"uses_image": True, "uses_text": True}
    FUSIONS.names(uses_text=False)      # names whose metadata match
    FUSIONS["nope"]                     # UnknownNameError: unknown fusion 'nope'; known: gated, ...

A registry is a read-only mapping name -> object. Before its first lookup it imports its
`discover` modules (so adding a dataset means adding one file to medmm.data.datasets), and on
a miss it loads the installed entry points of its `entry_points` group (third-party plug-ins,
e.g. ``[project.entry-points."medmm.tasks"]`` in a plug-in's pyproject.toml). Imports nothing of
medmm but its errors, so every layer (data, models, engine, metrics) can hold one.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, TypeVar, overload

from medmm.errors import MedmmError

T = TypeVar("T")
_MISSING: Any = object()


class UnknownNameError(MedmmError, KeyError):
    """A name nothing is registered under; the message lists the known names.

    Also a KeyError, so `name in registry` and `registry.get(name)` behave like a dict's."""

    def __str__(self) -> str:  # KeyError would print the message as a quoted repr
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered object with its name and metadata (read-only)."""

    name: str
    obj: T
    meta: Mapping[str, Any] = field(default_factory=dict)


class Registry(Mapping[str, T]):
    """Name -> object, with metadata per entry, discovery by import and plug-in entry points.

    Args:
        kind: what is registered, for messages ("dataset", "image encoder").
        discover: modules imported before the first lookup; "pkg.*" imports every module of
            package pkg. Registering never triggers discovery, so those modules may register.
        entry_points: an entry-point group whose installed entry points are loaded on a miss and
            before listing; each entry point must register its object under its own name.
        register_entry_point: how an entry point's object that its module did not register gets
            registered, ``f(name, obj)`` (e.g. a checking `register` of the caller's); without
            it, that is an error. Its TypeError/ValueError/MedmmError names the plug-in.
        hint: appended to the unknown-name error (how else names can be given or found).
        sort: list names sorted (default) or in registration order.
    """

    def __init__(self, kind: str, *, discover: tuple[str, ...] = (), entry_points: str | None = None,
                 register_entry_point: Callable[[str, Any], Any] | None = None, hint: str = "", sort: bool = True):
        self.kind = kind
        self.discover = tuple(discover)
        self.entry_points = entry_points
        self.register_entry_point = register_entry_point
        self.hint = hint
        self.sort = sort
        self._entries: dict[str, Entry[T]] = {}
        self._discovered = not self.discover
        self._discovering = False
        self._loaded_entry_points: set[str] = set()

    # ------------------------------------------------------------------ registering
    @overload
    def register(self, name: str, /, **meta: Any) -> Callable[[T], T]: ...
    @overload
    def register(self, name: str, obj: T, /, **meta: Any) -> T: ...

    def register(self, name: str, obj: Any = _MISSING, /, **meta: Any) -> Any:
        """Register `obj` under `name` with metadata `meta` and return it; without `obj`, a
        decorator doing so. A name registered twice is an error (a plug-in must not silently
        replace another)."""
        if obj is _MISSING:
            return lambda o: self.register(name, o, **meta)
        if not isinstance(name, str) or not name:
            raise MedmmError(f"{self.kind} names must be non-empty strings, got {name!r}")
        if name in self._entries:
            raise MedmmError(f"{self.kind} {name!r} registered twice")
        self._entries[name] = Entry(name, obj, MappingProxyType(dict(meta)))
        return obj

    # ------------------------------------------------------------------ looking up
    def registered(self, name: str) -> bool:
        """Whether `name` is registered so far, without discovery or plug-in loading (safe to call
        while a plug-in module is being imported)."""
        return name in self._entries

    def entry(self, name: str) -> Entry[T]:
        """The entry of `name` (discovering and loading plug-ins first when needed)."""
        self._ensure_discovered()
        if name not in self._entries and self.entry_points:
            self.load_entry_points()
        if name not in self._entries:
            raise UnknownNameError(self.unknown_message(name))
        return self._entries[name]

    def unknown_message(self, name: str) -> str:
        """"unknown <kind> 'name'; known: a, b" (+ the hint): for callers that add names of their own."""
        known = ", ".join(sorted(self._entries) if self.sort else self._entries) or "none"
        return f"unknown {self.kind} {name!r}; known: {known}{self.hint}"

    def meta(self, name: str) -> Mapping[str, Any]:
        """The metadata of `name`."""
        return self.entry(name).meta

    def entries(self, **where: Any) -> list[Entry[T]]:
        """Every entry whose metadata equal `where` (all entries without it)."""
        self._ensure_complete()
        hits = [e for e in self._entries.values() if all(e.meta.get(k, _MISSING) == v for k, v in where.items())]
        return sorted(hits, key=lambda e: e.name) if self.sort else hits

    def names(self, **where: Any) -> list[str]:
        """Registered names whose metadata equal `where` (all names without it)."""
        return [e.name for e in self.entries(**where)]

    def __getitem__(self, name: str) -> T:
        return self.entry(name).obj

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self.entry(name)
        except UnknownNameError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._ensure_complete()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"

    def copy(self) -> Registry[T]:
        """An independent copy (entries, discovery and plug-in state): for tests that register
        throw-away entries and put the original back."""
        new: Registry[T] = Registry(self.kind, discover=self.discover, entry_points=self.entry_points,
                                    register_entry_point=self.register_entry_point, hint=self.hint, sort=self.sort)
        new._entries = dict(self._entries)
        new._discovered = self._discovered
        new._loaded_entry_points = set(self._loaded_entry_points)
        return new

    # ------------------------------------------------------------------ discovery, plug-ins
    def _ensure_complete(self) -> None:
        self._ensure_discovered()
        if self.entry_points:
            self.load_entry_points()

    def _ensure_discovered(self) -> None:
        if self._discovered or self._discovering:
            return
        self._discovering = True  # a lookup made while importing must not import again
        try:
            for module in self.discover:
                if module.endswith(".*"):
                    pkg = importlib.import_module(module[:-2])
                    for info in pkgutil.iter_modules(pkg.__path__):
                        importlib.import_module(f"{pkg.__name__}.{info.name}")
                else:
                    importlib.import_module(module)
            self._discovered = True
        finally:
            self._discovering = False

    def load_entry_points(self) -> list[str]:
        """Import every installed entry point of the group not loaded yet; returns their names.

        An entry point whose object is registered under another name (or not at all, unless
        `register_entry_point` registers it) is an error: a typo there would otherwise surface
        later as "unknown <kind>".
        """
        if not self.entry_points:
            return []
        from importlib.metadata import entry_points

        loaded = []
        for ep in entry_points(group=self.entry_points):
            if ep.value in self._loaded_entry_points:
                continue
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plug-in: say which one
                raise MedmmError(f"{self.kind} plug-in {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
            self._loaded_entry_points.add(ep.value)
            got = self._entries.get(ep.name)
            if got is None and self.register_entry_point and not any(e.obj is obj for e in self._entries.values()):
                try:
                    self.register_entry_point(ep.name, obj)
                except (MedmmError, TypeError, ValueError) as exc:
                    raise MedmmError(f"{self.kind} plug-in {ep.name!r} ({ep.value}): {exc}") from exc
                got = self._entries.get(ep.name)
            if got is None or got.obj is not obj:
                under = [n for n, e in self._entries.items() if e.obj is obj]
                what = f"registers as {under[0]!r}" if under else "registers nothing"
                raise MedmmError(f"{self.kind} plug-in {ep.name!r} ({ep.value}) {what}, not {ep.name!r}")
            loaded.append(ep.name)
        return loaded
