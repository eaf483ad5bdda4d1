"""`python -m ...`: the command line (guarded, so worker processes spawned by Dask or multiprocessing that
import this module as __mp_main__ do not run it)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
