"""Learning tests run many small tall-skinny matrix products: one BLAS thread avoids oversubscription."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True)
def _single_blas_thread() -> Iterator[None]:
    # On a shared 2-core machine OpenBLAS threads make (n x 8) @ (8 x 8) products ~25x slower.
    with threadpool_limits(limits=1):
        yield
