"""``python -m swapformer`` = the ``swapformer`` command."""

from swapformer.cli import main

if __name__ == "__main__":
    main()
