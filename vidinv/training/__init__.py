"""Training the Feature-Style encoder (``vidinv train``): losses, Ranger, data, the trainer.

Importing this package is cheap; the trainer's heavy pieces (lpips, the zoo) load inside functions.
"""

from vidinv.training.losses import FSLoss, LossConfig
from vidinv.training.optim import Ranger
from vidinv.training.trainer import ABLATIONS, TrainConfig, Trainer, TrainModels, build_models, load_train_config

__all__ = ["ABLATIONS", "FSLoss", "LossConfig", "Ranger", "TrainConfig", "TrainModels", "Trainer", "build_models",
           "load_train_config"]
