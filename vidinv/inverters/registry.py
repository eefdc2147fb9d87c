"""The inverter registry: what each method needs, declared once in the method's own module.

Each module ``vidinv/inverters/<name>.py`` ends with one
``register_inverter(InverterEntry(name='<name>', loader=..., zoo_checkpoint=..., ...))``.
Modules are discovered by listing this package's files (no import: ``import vidinv`` and
``vidinv --help`` stay cheap) and imported on first use by :func:`get_inverter_entry`, so a new
method is one new module (named as the method) plus its test: the CLI choices, the zoo names, the
tiny test model and the loader options all come from its entry. This module imports no torch.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidinv.errors import VidinvError

# modules of this package that are not methods
_NOT_METHODS = frozenset({"base", "registry"})


@dataclass(frozen=True)
class InverterEntry:
    """Everything the pipeline needs to know about one inversion method.

    Attributes:
        name: the registry name (``--inverter NAME``); equal to the module's name.
        loader: ``(checkpoint_path_or_dict, **options) -> Inverter`` from the official checkpoint.
        zoo_checkpoint: the zoo artifact of the official checkpoint (None: the user gives ``--encoder PATH``).
        needs_generator: the method loads a separate generator checkpoint (``--generator``).
        zoo_generator: the zoo artifact of that generator (None: the user gives ``--generator PATH``).
        tiny: ``(seed, **options) -> Inverter``, a tiny random model for tests (None: no tiny model); it
            receives the options whose keyword it names.
        options: loader keyword -> model spec key (``{'k': 'feature_layer'}``): the settings passed on.
    """

    name: str
    loader: Callable[..., Any]
    zoo_checkpoint: str | None = None
    needs_generator: bool = False
    zoo_generator: str | None = None
    tiny: Callable[..., Any] | None = None
    options: Mapping[str, str] = field(default_factory=dict)

    def loader_kwargs(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """The loader's keyword arguments from a model spec (a key the spec lacks: the loader's default)."""
        return {kw: spec[key] for kw, key in self.options.items() if key in spec}

    def build_tiny(self, spec: Mapping[str, Any], seed: int = 0) -> Any:
        """The tiny random model, with the spec's options that its factory accepts."""
        if self.tiny is None:
            raise VidinvError(f"no tiny model for --inverter {self.name}")
        accepted = inspect.signature(self.tiny).parameters
        return self.tiny(seed, **{k: v for k, v in self.loader_kwargs(spec).items() if k in accepted})


INVERTER_ENTRIES: dict[str, InverterEntry] = {}
# name -> loader (a view of the entries, for callers that only load checkpoints)
INVERTERS: dict[str, Callable[..., Any]] = {}


def register_inverter(entry: InverterEntry) -> InverterEntry:
    """Register (or replace) a method; called at the end of the method's module."""
    if not isinstance(entry, InverterEntry):
        raise TypeError(f"register_inverter expects an InverterEntry, got {type(entry).__name__}")
    INVERTER_ENTRIES[entry.name] = entry
    INVERTERS[entry.name] = entry.loader
    return entry


def _method_modules() -> list[str]:
    """Method module names in this package, found without importing them."""
    here = str(Path(__file__).parent)
    names = (m.name for m in pkgutil.iter_modules([here]))
    return [n for n in names if not n.startswith("_") and n not in _NOT_METHODS]


def available_inverters() -> list[str]:
    """Every method name: the package's method modules and anything registered."""
    return sorted(set(_method_modules()) | set(INVERTER_ENTRIES))


def get_inverter_entry(name: str) -> InverterEntry:
    """The entry of ``name``, importing its module on first use.

    Raises:
        VidinvError: unknown method name.
    """
    if name not in INVERTER_ENTRIES and name in _method_modules():
        importlib.import_module(f"{__package__}.{name}")
    if name not in INVERTER_ENTRIES:
        raise VidinvError(f"unknown inverter {name!r}; choose one of {', '.join(available_inverters())}")
    return INVERTER_ENTRIES[name]


def load_inverter(name: str, checkpoint_path_or_dict: Any, **kw: Any) -> Any:
    """Build the inverter ``name`` from its official checkpoint (a path or an already loaded dict).

    Raises:
        VidinvError: unknown method name, or a checkpoint that does not match the method's layout.
    """
    return get_inverter_entry(name).loader(checkpoint_path_or_dict, **kw)
