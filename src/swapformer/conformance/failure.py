"""The error a conformance check raises."""


class ConformanceFailure(AssertionError):
    """A check found a combination breaking its rule; the message says where and by how much."""
