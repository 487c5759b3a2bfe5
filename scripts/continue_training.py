"""Continue a trained museum run from its best checkpoint with another learning rate (a fresh optimizer).

    python scripts/continue_training.py RUN_DIR LEARNING_RATE EPOCHS

Loads ``RUN_DIR/best0`` and its ``config.toml``, rebuilds the run's train/validation split, and
trains ``EPOCHS`` more epochs with legacy (Keras-form) Adam at ``LEARNING_RATE`` (data order seeded
with the run's seed + 100), printing train and validation BCE after each epoch. Writes nothing:
a diagnostic for whether the validation BCE's plateau is the optimizer's noise floor.
"""

from __future__ import annotations

import sys

from predcode.data import load_binarized, train_val_split
from predcode.experiments.analyze import load_run
from predcode.experiments.train import train
from predcode.learning.optim import keras_adam


def main() -> None:
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    run_dir, lr, epochs = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    r = load_run(run_dir)
    cfg = r.config
    images, labels = load_binarized(cfg.data.dataset, "train")
    x_tr, _, x_val, _ = train_val_split(images, labels, cfg.data.n_val, seed=cfg.train.seed)
    print(f"start: epoch {r.metadata['epoch']}, validation BCE {r.metadata['val_bce']:.2f}; learning rate {lr}")

    def on_epoch(rec, state):
        print(
            f"epoch {rec.epoch}: train BCE {rec.train_bce:.2f}, validation BCE {rec.val_bce:.2f} ({rec.seconds:.0f} s)"
        )

    train(
        r.model,
        x_tr,
        x_val,
        epochs=epochs,
        batch_size=cfg.train.batch_size,
        seed=cfg.train.seed + 100,
        params=r.params,
        optimizer=keras_adam(lr),
        on_epoch=on_epoch,
    )


if __name__ == "__main__":
    main()
