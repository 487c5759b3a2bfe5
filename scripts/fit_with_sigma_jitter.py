"""``predcode fit`` with another value of the legacy covariance rule's per-batch jitter (an experiment).

    python scripts/fit_with_sigma_jitter.py JITTER [predcode fit options ...]

Legacy ngc-learn adds 0.00025 to *every* entry of each learned covariance Sigma after every batch
(``predcode.learning.covariance.SIGMA_FLOOR_JITTER``, GNCN.md), a drift that does not scale with
the learning rate. This wrapper sets that constant to JITTER (0 removes the drift) and runs
``predcode fit`` with the remaining arguments, to test whether the drift explains the rising
validation BCE of GNCN-t2-LSigma and GNCN-PDH. Not a supported option of the library.
"""

from __future__ import annotations

import sys

import predcode.learning.covariance as covariance
from predcode.cli import app


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    covariance.SIGMA_FLOOR_JITTER = float(sys.argv[1])
    app(["fit", *sys.argv[2:]])


if __name__ == "__main__":
    main()
