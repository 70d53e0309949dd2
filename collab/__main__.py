import sys

from collab.cli import main

if __name__ == "__main__":  # worker processes (compaction) import this module again
    sys.exit(main())
