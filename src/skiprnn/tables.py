"""``python -m skiprnn.tables table1 ...``: build a results table (``skiprnn.experiment.tables``)."""
import sys

from .experiment.tables import main

if __name__ == "__main__":
    sys.exit(main())
