"""vidinv: edit faces in real videos through StyleGAN2 and the Feature-Style encoder.

Importing this package is cheap: it imports no Ray, no insightface, no face-alignment
and compiles nothing. Heavy optional backends are imported inside their adapters.
"""

from vidinv.errors import VidinvError

__version__ = "0.1.0"

__all__ = ["VidinvError", "__version__"]
