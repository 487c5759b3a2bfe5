"""The upper bounds of every integer setting and option (docs/config.md, "Bounds"); plain Python, no imports.

Generous for any study, small enough that no size, step count or product of them overflows an
int32 shape, index or loop counter of XLA before a check can name it. The config schema
(:mod:`predcode.schema`), the API constructors and the command line's options all read them here.
"""

MAX_DIM = 2**20  # units of a layer, pixels of an image, units of a lateral group
MAX_LAYERS = 1000  # entries of a list of layer sizes
MAX_STEPS = 100_000  # settling / inference steps per batch
MAX_BATCH = 2**20  # rows of a training or evaluation batch
MAX_ROWS = 10**9  # images of a training, validation or test set, samples of an estimate
MAX_EPOCHS = 10**6  # epochs, and epochs of patience
MAX_TRIALS = 10_000  # trials of a run
SEED_MAX = 2**32 - 1  # seeds
