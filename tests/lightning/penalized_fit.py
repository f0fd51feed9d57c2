"""``swapformer`` with the ``penalized`` test member registered: ``python penalized_fit.py fit --config ...``
(a script, so that Lightning's DDP launcher starts each process the same way)."""

from penalized_member import NAME, PenalizedFeedForward

from swapformer.cli import main
from swapformer.registry import FFN

if __name__ == "__main__":
    FFN.add(NAME, PenalizedFeedForward)
    main()
