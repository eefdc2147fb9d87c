"""Inversion methods behind one interface (see :mod:`vidinv.inverters.base`).

``load_inverter('e4e', 'e4e_ffhq_encode.pt')`` builds a method from its official checkpoint;
the method modules are imported on first use (see :mod:`vidinv.inverters.registry`), and this
package imports no torch until ``Inverter`` or a method is used.
"""

from typing import Any

from vidinv.inverters.registry import (
    INVERTER_ENTRIES,
    INVERTERS,
    InverterEntry,
    available_inverters,
    get_inverter_entry,
    load_inverter,
    register_inverter,
)


def __getattr__(name: str) -> Any:
    if name == "Inverter":
        from vidinv.inverters.base import Inverter

        return Inverter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["INVERTERS", "INVERTER_ENTRIES", "Inverter", "InverterEntry", "available_inverters",
           "get_inverter_entry", "load_inverter", "register_inverter"]
