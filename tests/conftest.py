"""Shared fixtures: the finite-element values computed once serially and once under
``mpirun -n 2`` (tests/fem_problems.py), compared by the compat and solver tests."""

import pytest


@pytest.fixture(scope="session")
def parallel_values():
    import fem_problems

    return fem_problems.parallel_run()


@pytest.fixture(scope="session")
def serial_values():
    import fem_problems

    return fem_problems.serial_run()


# What reads a tensor's value back to the host: on a GPU each of these waits for the device.
HOST_READS = ("item", "tolist", "__bool__", "__float__", "__int__")


class HostReads:
    """Spies on :data:`HOST_READS`: ``reads`` lists the ones made while ``watching`` is true
    (the tensor methods are restored when the test ends)."""

    def __init__(self, monkeypatch):
        import torch

        self.reads, self.watching = [], False
        for name in HOST_READS:
            original = getattr(torch.Tensor, name)

            def spy(tensor, *args, _name=name, _original=original, **kwargs):
                if self.watching:
                    self.reads.append(_name)
                return _original(tensor, *args, **kwargs)

            monkeypatch.setattr(torch.Tensor, name, spy)


@pytest.fixture
def host_reads(monkeypatch):
    return HostReads(monkeypatch)
