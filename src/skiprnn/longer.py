"""``python -m skiprnn.longer table1 ...``: train rows past their table's budget (``skiprnn.experiment.longer``)."""
import sys

from .experiment.longer import main

if __name__ == "__main__":
    sys.exit(main())
