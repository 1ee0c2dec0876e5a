"""``python -m skiprnn.verify RUN_DIR [--steps N]``: retrain a recorded run and compare it bit for bit
(``skiprnn.experiment.verify``)."""
import sys

from .experiment.verify import main

if __name__ == "__main__":
    sys.exit(main())
