"""The public API's integer arguments: numpy integers accepted everywhere (Index.search took np.int64 k, and
SparseIndex, MultiVectorIndex and hybrid refused it), bools and fractions refused everywhere, each naming itself."""

import re

import numpy as np
import pytest

from fastembed_rt.validation import positive_int


@pytest.mark.parametrize("value", [1, 7, np.int64(3), np.int32(1), np.uint8(200)])
def test_integers_pass_as_ints(value):
    got = positive_int(value, "k")
    assert got == int(value) and type(got) is int


@pytest.mark.parametrize("value", [0, -1, True, False, np.bool_(True), 2.5, 3.0, "3", None, np.float64(2)])
def test_everything_else_is_named(value):
    with pytest.raises(ValueError, match=re.escape(f"top_k must be a positive integer, got {value!r}")):
        positive_int(value, "top_k")
