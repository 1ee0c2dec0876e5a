"""``python -m skiprnn.compare <folders>``: compare runs grouped by config (``skiprnn.experiment.compare``)."""
import sys

from .experiment.compare import main

if __name__ == "__main__":
    sys.exit(main())
