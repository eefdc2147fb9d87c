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
from vidinv.tuning.core import generator_of, load_lpips_loss
from vidinv.tuning.pti import pivotal_tune
from vidinv.tuning.stitch import boundary_band, render_tuned, stitch_masks, stitch_tune
from vidinv.tuning.weights import (TunedWeights, load_weights, save_weights, weights_for_frame,
                                   weights_from_state, weights_to_state)

__all__ = ["TuneConfig", "StitchConfig", "pivotal_tune", "stitch_tune", "stitch_masks", "boundary_band",
           "render_tuned", "TunedWeights", "save_weights", "load_weights", "weights_to_state",
           "weights_from_state", "weights_for_frame", "generator_of", "load_lpips_loss"]
