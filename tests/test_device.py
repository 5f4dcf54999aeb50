"""Device choice: best available by default, and a missing device asked for is an error, never skipped."""
from __future__ import annotations

import pytest
import torch

from bertkit.device import autocast, pick_device
from bertkit.errors import BertkitError


def test_default_is_cuda_when_present_else_cpu_here():
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert pick_device().type == expected
    assert pick_device("auto").type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_missing_cuda_is_an_error_not_a_fallback():
    with pytest.raises(BertkitError, match="CUDA"):
        pick_device("cuda")


def test_unknown_device_name():
    with pytest.raises(BertkitError, match="unknown device"):
        pick_device("tpu9")


def test_autocast_is_noop_on_cpu():
    with autocast(torch.device("cpu")):
        y = torch.nn.Linear(4, 4)(torch.randn(2, 4))
    assert y.dtype == torch.float32
