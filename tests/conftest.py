"""Fixtures shared by several test files."""

from __future__ import annotations

import pytest


@pytest.fixture
def one_thread():
    """One torch thread for the test, restored after it. Trainings compared byte for byte need the
    same thread count in every run: float summation order, hence bytes, depends on it.

    Not autouse: a file opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch  # here, not at the top: every test file loads this conftest, not all need torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
