"""GAN-inversion methods behind one interface (see :mod:`vidinv.inverters.base`).

``load_inverter('e4e', 'e4e_ffhq_encode.pt')`` builds a method from its official checkpoint;
the method modules are imported on first use.
"""

from vidinv.inverters.base import (INVERTERS, KNOWN_INVERTERS, Inverter, available_inverters, cat_codes,
                                   load_inverter, register_inverter, split_code)

__all__ = ["INVERTERS", "KNOWN_INVERTERS", "Inverter", "available_inverters", "cat_codes", "load_inverter",
           "register_inverter", "split_code"]
