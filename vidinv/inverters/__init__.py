"""Inversion methods behind one interface (see :mod:`vidinv.inverters.base`).

``load_inverter('e4e', 'e4e_ffhq_encode.pt')`` builds a method from its official checkpoint;
the method modules are imported on first use.
"""

from vidinv.inverters.base import INVERTERS, Inverter, available_inverters, load_inverter, register_inverter


@register_inverter("psp")
def _load_psp(checkpoint, **kw):
    """pSp (GradualStyleEncoder), imported on first use."""
    from vidinv.inverters.psp import load_psp_inverter

    return load_psp_inverter(checkpoint, **kw)


__all__ = ["INVERTERS", "Inverter", "available_inverters", "load_inverter", "register_inverter"]
