import sys

from .pipeline import main

try:
    main()
except KeyboardInterrupt:   # papermill would print the kernel's traceback
    print("stopped; rerun the same command to build the book", file=sys.stderr)
    sys.exit(130)
