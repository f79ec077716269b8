"""`python -m training.evaluate`: the evaluation's command line (it lives in training/finetune/evaluate.py)."""

import sys

from training.finetune.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
