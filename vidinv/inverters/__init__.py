"""Inversion methods behind one interface (see :mod:`vidinv.inverters.base`)."""

from vidinv.inverters.base import INVERTERS, Inverter, available_inverters, load_inverter, register_inverter

__all__ = ["INVERTERS", "Inverter", "available_inverters", "load_inverter", "register_inverter"]
