"""Show what a snippet warns about, as part of a lesson's output.

The cheat sheet calls client methods that redis-py marks deprecated (``setex``, ``hmset``). Run
as is in a notebook, their ``DeprecationWarning`` goes to stderr, which lessons keep empty; run
inside ``printed_warnings()`` each warning becomes one line of output the reader sees and CI
compares, and the caller can assert on it.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def printed_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Catch every warning raised in the block, then print each as ``Category: message``.

    Yields the list of caught warnings (filled when the block ends). Warnings are caught even
    if an identical one was shown before (``simplefilter("always")``), so reruns print the same.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught
    for warning in caught:
        print(f"{warning.category.__name__}: {warning.message}")
