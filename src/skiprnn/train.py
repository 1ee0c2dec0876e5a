"""``python -m skiprnn.train ...``: the training command line (``skiprnn.experiment.cli``)."""
from .experiment.cli import main

if __name__ == "__main__":
    main()
