"""Fixtures of the encoder tests."""

import pytest


@pytest.fixture(params=["numpy", "torch"])
def ridge_backend(request, monkeypatch):
    """Run a test with the ridge core on numpy (the CPU default) and on torch (the GPU path,
    here on the CPU): the same answers are required of both."""
    if request.param == "torch":
        pytest.importorskip("torch")
        import neuroalign.encoders._solvers as solvers
        from neuroalign._config import thread_limits
        from neuroalign.encoders._backend import TorchOps

        monkeypatch.setattr(solvers, "compute_backend", lambda *arrays: TorchOps("cpu"))
        # one torch thread: its OpenMP threads spin for long on a loaded machine
        with thread_limits(1, blas=False):
            yield request.param
        return
    yield request.param
