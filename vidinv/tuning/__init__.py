"""Per-clip generator tuning: pivotal tuning (PTI) and stitching tuning (STIT), for any inverter that renders
through a StyleGAN2 generator, and the tuned weights as cacheable data.

Typical use (the codes come from ``inverter.invert``; ``w_edit`` from the edit)::

    from vidinv.tuning import TuneConfig, StitchConfig, pivotal_tune, stitch_tune, render_tuned
    pti = pivotal_tune(inverter, crops, codes, TuneConfig(epochs=80), noise=noise)
    edit = render_tuned(inverter, codes, w_edit, noise, weights=pti)
    groups = stitch_tune(inverter, codes, w_edit, crops, masks, StitchConfig(), base=pti, noise=noise)
    stitched = render_tuned(inverter, codes, w_edit, noise, weights=groups)
"""

from vidinv.tuning.config import StitchConfig, TuneConfig

# everything but the settings is loaded on first use, so that ``vidinv.config`` can hold the settings
# while ``import vidinv`` (and the CLI) stays free of torch
_LAZY = {"generator_of": "core", "load_lpips_loss": "core", "pivotal_tune": "pti", "boundary_band": "stitch",
         "render_tuned": "stitch", "stitch_masks": "stitch", "stitch_tune": "stitch",
         "TunedWeights": "weights",
         "load_weights": "weights", "save_weights": "weights", "weights_for_frame": "weights",
         "weights_from_state": "weights", "weights_to_state": "weights"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"vidinv.tuning.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["TuneConfig", "StitchConfig", "pivotal_tune", "stitch_tune", "stitch_masks", "boundary_band",
           "render_tuned", "TunedWeights", "save_weights", "load_weights", "weights_to_state",
           "weights_from_state", "weights_for_frame", "generator_of", "load_lpips_loss"]
