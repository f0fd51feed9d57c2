"""``python -m swapformer.training.consolidate FOLDER [OUTPUT]``: an FSDP2 checkpoint folder -> one ``.ckpt``
file that resumes on one process or under DDP (see :func:`swapformer.training.strategies.consolidate_checkpoint`).
"""

from __future__ import annotations

import sys

from swapformer.training.strategies import consolidate_checkpoint


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 2) or args[0] in ("-h", "--help"):
        raise SystemExit("usage: python -m swapformer.training.consolidate FOLDER [OUTPUT]")
    print(consolidate_checkpoint(*args))


if __name__ == "__main__":
    main()
