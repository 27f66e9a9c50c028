"""Array operations of the ridge core, on numpy (default) or torch (CUDA or torch inputs).

The solvers in :mod:`neuroalign.encoders._solvers` are written once against the small set
of operations below, which numpy and torch spell differently (casts, buffers written in
place, eigendecompositions, reductions in float64); everything else (``@``, slicing,
broadcasting arithmetic, ``.T``, ``.sum(0)``, ``.mean(0)``) both libraries share. numpy
arrays are computed with numpy and the BLAS it links (torch is never imported); torch
tensors on a GPU stay there and are solved with torch; torch tensors on the CPU are solved
with numpy (zero-copy views; faster than torch's CPU path here, and the same numbers as
numpy input) and the results handed back as CPU tensors.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["NumpyOps", "TorchOps", "backend_for", "compute_backend", "dtype_name", "eigh64",
           "is_torch", "like_input", "to_numpy"]

#: Solve torch tensors on the CPU with torch instead of numpy (for tests and benchmarks that
#: compare the two backends on the same machine).
TORCH_ON_CPU = False


def is_torch(x: Any) -> bool:
    """True when ``x`` is a torch tensor (without importing torch)."""
    return type(x).__module__.startswith("torch")


def to_numpy(x: Any) -> np.ndarray:
    """numpy view or copy of an array or tensor (tensors are moved to the CPU)."""
    if is_torch(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def dtype_name(dtype: Any) -> str | None:
    """``"float32"``-style name of a numpy or torch dtype, or of a string; ``None`` stays."""
    if dtype is None:
        return None
    if isinstance(dtype, str):
        return np.dtype(dtype).name
    if type(dtype).__module__.startswith("torch"):
        return str(dtype).removeprefix("torch.")
    return np.dtype(dtype).name


#: Up to this size an eigendecomposition runs on one BLAS thread: LAPACK's ``syevd`` is
#: mostly memory-bound there and its threads cost more than they give (measured on 2 cores:
#: 800 x 800 takes 0.09 s of CPU on one thread, 0.5 s on two, and less wall time too).
EIGH_ONE_THREAD = 2048


def eigh64(G) -> tuple[np.ndarray, np.ndarray]:
    """Eigendecomposition of a symmetric numpy matrix in float64 (LAPACK's divide and
    conquer ``syevd`` through scipy: 2-3x less CPU time than ``numpy.linalg.eigh`` with the
    BLAS these wheels bundle; one BLAS thread up to :data:`EIGH_ONE_THREAD`); ``G`` itself
    is never modified."""
    from scipy.linalg import eigh

    from neuroalign._config import thread_limits

    G64 = np.asarray(G, dtype=np.float64)
    own = G64 is not G and not np.shares_memory(G64, G)
    one = G64.shape[0] <= EIGH_ONE_THREAD
    with thread_limits(1 if one else None, torch=False):
        return eigh(G64, driver="evd", check_finite=False, overwrite_a=own)


class NumpyOps:
    """The operations on numpy arrays (CPU, numpy's BLAS/LAPACK)."""

    name = "numpy"
    device = "cpu"

    def __init__(self) -> None:
        self.float64 = np.dtype(np.float64)

    def dtype(self, name: str):
        return np.dtype(name)

    def dtype_of(self, x) -> str:
        return x.dtype.name

    def asarray(self, x):
        return np.asarray(to_numpy(x))

    def cast(self, x, dtype, copy: bool = False):
        return x.astype(dtype, copy=copy)

    def zeros(self, shape, dtype):
        return np.zeros(shape, dtype=dtype)

    def ones(self, shape, dtype):
        return np.ones(shape, dtype=dtype)

    def empty(self, shape, dtype):
        return np.empty(shape, dtype=dtype)

    def index(self, idx):
        return np.asarray(idx)

    def vector(self, values, dtype):
        return np.asarray(values, dtype=dtype)

    def eigh(self, G):
        """Eigendecomposition of a symmetric PSD matrix in float64, eigenvalues clipped at 0."""
        s, V = eigh64(G)
        return np.maximum(s, 0.0), V

    def frobenius(self, X) -> float:
        return float(np.linalg.norm(X))

    def sqnorm_cols(self, R):
        """Squared norm of each column, accumulated in float64 (float32 sums flip the
        choice between alphas whose validation errors agree to ~1e-7)."""
        return np.square(R).sum(0, dtype=np.float64)

    def outer(self, a, b):
        return np.outer(a, b)

    def where(self, cond, a, b):
        return np.where(cond, a, b)

    def isfinite(self, x):
        return np.isfinite(x)

    def sqrt(self, x):
        return np.sqrt(x)

    def numpy(self, x) -> np.ndarray:
        return np.asarray(x)

    def divide_into(self, A, d, out):
        """``out = A / d`` (broadcast), written into ``out``."""
        return np.divide(A, d, out=out)

    def residual_into(self, M, B, C, out):
        """``M @ B - C``, written into ``out`` (its square is what is used)."""
        np.matmul(M, B, out=out)
        out -= C
        return out

    def dot_cols_into(self, A, B):
        """Column-wise dot products of ``A`` and ``B`` accumulated in float64; ``B`` is
        overwritten by the products."""
        np.multiply(A, B, out=B)
        return B.sum(0, dtype=np.float64)

    def colmin(self, x):
        return x.min(0)


class TorchOps:
    """The same operations on torch tensors on ``device``."""

    name = "torch"

    def __init__(self, device) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.float64 = torch.float64

    def dtype(self, name: str):
        return getattr(self.torch, name)

    def dtype_of(self, x) -> str:
        return dtype_name(x.dtype)

    def asarray(self, x):
        if is_torch(x):
            return x.to(self.device)
        return self.torch.from_numpy(np.ascontiguousarray(x)).to(self.device)

    def cast(self, x, dtype, copy: bool = False):
        return x.to(dtype, copy=copy)

    def zeros(self, shape, dtype):
        return self.torch.zeros(shape, dtype=dtype, device=self.device)

    def ones(self, shape, dtype):
        return self.torch.ones(shape, dtype=dtype, device=self.device)

    def empty(self, shape, dtype):
        return self.torch.empty(shape, dtype=dtype, device=self.device)

    def index(self, idx):
        return self.torch.as_tensor(np.asarray(idx), device=self.device)

    def vector(self, values, dtype):
        return self.torch.as_tensor(np.asarray(values), dtype=dtype, device=self.device)

    def eigh(self, G):
        """Eigendecomposition in float64, eigenvalues clipped at 0: through numpy's LAPACK
        on CPU (faster than torch's path there), torch's on GPU."""
        torch = self.torch
        if G.device.type == "cpu":
            s, V = eigh64(G.double().numpy())
            return torch.from_numpy(s).clamp_min(0.0), torch.from_numpy(V)
        s, V = torch.linalg.eigh(G.double())
        return s.clamp_min(0.0), V

    def frobenius(self, X) -> float:
        return float(self.torch.linalg.vector_norm(X))

    def sqnorm_cols(self, R):
        return self.torch.linalg.vector_norm(R, dim=0, dtype=self.torch.float64) ** 2

    def outer(self, a, b):
        return self.torch.outer(a, b)

    def where(self, cond, a, b):
        torch = self.torch
        if not is_torch(b):
            b = torch.tensor(b, dtype=a.dtype, device=a.device)
        return torch.where(cond, a, b)

    def isfinite(self, x):
        return self.torch.isfinite(x)

    def sqrt(self, x):
        return self.torch.sqrt(x)

    def numpy(self, x) -> np.ndarray:
        return x.detach().cpu().numpy()

    def divide_into(self, A, d, out):
        return self.torch.div(A, d, out=out)

    def residual_into(self, M, B, C, out):
        return self.torch.addmm(C, M, B, beta=-1.0, out=out)

    def dot_cols_into(self, A, B):
        B.mul_(A)
        return B.sum(0, dtype=self.torch.float64)

    def colmin(self, x):
        return x.amin(0)


def backend_for(*arrays):
    """:class:`TorchOps` on the device of the first torch tensor among ``arrays``, else
    :class:`NumpyOps` (the backend of the inputs' own kind)."""
    for a in arrays:
        if is_torch(a):
            return TorchOps(a.device)
    return NumpyOps()


def compute_backend(*arrays):
    """The backend to solve with: :class:`TorchOps` when a torch tensor among ``arrays`` is
    on a GPU (or :data:`TORCH_ON_CPU`), else :class:`NumpyOps`."""
    for a in arrays:
        if is_torch(a) and (a.device.type != "cpu" or TORCH_ON_CPU):
            return TorchOps(a.device)
    return NumpyOps()


def like_input(x, *inputs):
    """``x`` (a numpy result) as a CPU torch tensor when an input was a torch tensor."""
    if is_torch(x) or not any(is_torch(a) for a in inputs):
        return x
    import torch

    return torch.from_numpy(np.ascontiguousarray(x))
