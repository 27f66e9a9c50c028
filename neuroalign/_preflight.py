"""Memory preflight: estimate a job's peak memory from its shapes before it starts.

Every heavy job (ridge fits and sweeps, RDMs, decoders) calls one function of this module
before it allocates anything large. The function estimates the job's peak working memory
from the shapes, the dtype, the batch size and the number of alphas (formulas below, in
bytes; they count what the job allocates beyond its inputs, its outputs included), and

* for jobs that work in batches of targets, returns the largest batch (at most the one
  asked for) whose peak fits the memory budget;
* otherwise, or when not even one target fits, raises
  :class:`~neuroalign.exceptions.MemoryPreflightError` at once, saying how much is needed,
  how much is available and which setting lowers it (instead of the kernel's OOM killer
  six hours in).

The budget is ``(1 - SAFETY_MARGIN)`` of the memory available now: the smaller of the
system's available memory (``MemAvailable`` in ``/proc/meminfo``, or psutil elsewhere) and
the room left under a cgroup (container, Slurm job) limit. The environment variable
``NEUROALIGN_MEMORY_LIMIT`` overrides it: a size (``"12GiB"``, ``"800MB"``, a number of
bytes) is used as the budget as it is, and ``"off"`` turns the preflight off.

Banded ridge and the searchlight have their formulas in :mod:`neuroalign._preflight_search`
(same budget, same error).

The formulas follow the allocations of :func:`neuroalign.encoders.ridge_cv` and are checked
against peaks measured in fresh processes by ``benchmarks/bench_preflight.py`` (the
estimate is within 25 % of the measured peak over the grid recorded in
``benchmarks/README.md``). They describe the numpy (CPU) path; on a GPU the preflight is
not applied (the device's memory is another budget).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from neuroalign.exceptions import MemoryPreflightError

__all__ = [
    "DISK_READ_CHUNKS",
    "ENV_VAR",
    "SAFETY_MARGIN",
    "available_memory",
    "check_decoder",
    "check_memory",
    "check_rdm",
    "check_refit",
    "check_sweep",
    "decoder_memory",
    "disk_read_memory",
    "folded_xty",
    "format_bytes",
    "gram_errors",
    "memory_budget",
    "parse_bytes",
    "rdm_memory",
    "refit_memory",
    "ridge_batch",
    "ridge_cv_batch",
    "ridge_memory",
    "sweep_memory",
    "sweep_peak",
]

#: Environment variable overriding the memory budget (a size, or ``"off"``).
ENV_VAR = "NEUROALIGN_MEMORY_LIMIT"
#: Fraction of the available memory kept free (for the interpreter, the allocator and
#: whatever else runs on the machine).
SAFETY_MARGIN = 0.2
#: Fixed cost of a heavy numeric job beyond its arrays (BLAS/LAPACK thread buffers, the
#: allocator's slack), measured by ``benchmarks/bench_preflight.py``.
OVERHEAD = 48 * 2**20
#: The remedy a float64 job's error names first (a float32 one is already there).
_FLOAT32 = "dtype='float32', "

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3,
          "gb": 1000**3, "t": 1000**4, "tb": 1000**4, "kib": 2**10, "mib": 2**20,
          "gib": 2**30, "tib": 2**40}


def parse_bytes(value) -> int:
    """``"12GiB"``, ``"800 MB"``, ``"1.5e9"`` or a number -> bytes (int)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"Invalid memory size {value!r}: expected a positive size.")
        return int(value)
    m = re.fullmatch(r"\s*([0-9.]+(?:e[0-9]+)?)\s*([a-zA-Z]*)\s*", str(value))
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _UNITS or float(m.group(1)) <= 0:
        raise ValueError(
            f"Invalid memory size {value!r} (e.g. in ${ENV_VAR}): expected a positive number "
            "of bytes or a size such as '12GiB', '800MB' (or 'off' to turn the preflight off)."
        )
    return int(float(m.group(1)) * _UNITS[unit])


def format_bytes(n: float) -> str:
    """Bytes as a short human-readable size (``"1.50 GiB"``)."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def _cgroup_room() -> int | None:
    """Room left under the cgroup's memory limit (v2, then v1), or None without a limit."""
    pairs = (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
             ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
              "/sys/fs/cgroup/memory/memory.usage_in_bytes"))
    for limit_file, usage_file in pairs:
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or not limit.isdigit() or int(limit) >= 2**60:
            return None
        return max(int(limit) - usage, 0)
    return None


def available_memory() -> int | None:
    """Memory available to this process now, in bytes (None when it cannot be told)."""
    sizes = [s for s in (_meminfo_available(), _cgroup_room()) if s is not None]
    return min(sizes) if sizes else None


def memory_budget() -> int | None:
    """The budget a job may use: ``$NEUROALIGN_MEMORY_LIMIT`` when set (None for ``"off"``),
    else ``(1 - SAFETY_MARGIN)`` of :func:`available_memory`."""
    env = os.environ.get(ENV_VAR, "").strip()
    if env.lower() in ("off", "none", "0"):
        return None
    if env:
        return parse_bytes(env)
    avail = available_memory()
    return None if avail is None else int(avail * (1 - SAFETY_MARGIN))


def _raise(needed: int, budget: int, what: str, lower: str) -> None:
    avail = available_memory()
    raise MemoryPreflightError(
        f"{what} needs about {format_bytes(needed)} of memory at its peak, but only "
        f"{format_bytes(budget)} may be used (available now: "
        f"{format_bytes(avail) if avail is not None else 'unknown'}, less a "
        f"{SAFETY_MARGIN:.0%} safety margin, or ${ENV_VAR}). To lower it: {lower}."
    )


def check_memory(needed: int, *, what: str, lower: str, budget: int | None = None) -> int:
    """Raise :class:`~neuroalign.exceptions.MemoryPreflightError` when ``needed`` bytes do
    not fit the budget (``budget`` or :func:`memory_budget`); returns ``needed``."""
    budget = memory_budget() if budget is None else budget
    if budget is not None and needed > budget:
        _raise(needed, budget, what, lower)
    return needed


# -- ridge ---------------------------------------------------------------------------------
#: Bytes of one float64 block of target rows (the targets are centred and scaled in float64
#: a block of rows at a time; small blocks, so the allocator does not keep them resident).
ROW_BLOCK_BYTES = 8 * 2**20


def row_block(n_columns: int) -> int:
    """Rows per float64 block of ``n_columns`` targets (64 to 1024 rows,
    :data:`ROW_BLOCK_BYTES`)."""
    return int(min(1024, max(64, ROW_BLOCK_BYTES // (8 * max(int(n_columns), 1)))))


def largest_fitting(fits, hi: int) -> int:
    """The largest ``b`` in ``1..hi`` with ``fits(b)`` true, by bisection (``fits`` must be
    monotone: true up to some size, false above); 1 when none is.

    Examples
    --------
    >>> largest_fitting(lambda b: 3 * b <= 100, 4096)
    33
    """
    lo, hi = 1, int(hi)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return lo


def gram_errors(n_val: int, n_features: int, n_alphas: int) -> bool:
    """Whether a primal fold of ``n_val`` validation rows forms its validation errors from
    the fold's Gram matrices (``p^2`` per target and alpha) rather than from the residuals
    (``n_val p`` per target and alpha): when that costs at most 2/3 of the flops,
    ``a n_val >= 1.5 (a + 1) p`` with ``a`` alphas (the one extra rotation per fold
    included). Shared by :func:`ridge_memory` and the solver
    (:mod:`neuroalign.encoders._ridge_folds`)."""
    a = int(n_alphas)
    return a > 0 and 2 * a * int(n_val) >= 3 * (a + 1) * int(n_features)


def folded_xty(n_samples: int, n_features: int, n_folds: int) -> bool:
    """Whether a primal ridge whose validation sets partition the rows forms ``X^T Y`` as
    the sum of the folds' validation cross-products (one pass of ``n p`` per target less)
    rather than on its own: when keeping the ``F`` parts, ``F p`` values per target, costs
    at most a quarter of the batch's responses (``n`` per target). Shared by
    :func:`ridge_memory` and :func:`~neuroalign.encoders.ridge_cv`."""
    return 4 * int(n_folds) * int(n_features) <= int(n_samples)


def ridge_memory(n_samples: int, n_features: int, n_targets: int, *, n_alphas: int,
                 n_folds: int, batch: int, itemsize: int = 4, form: str = "primal",
                 refit: bool = True, complement: bool = True, disk: bool = False) -> int:
    """Peak bytes of :func:`~neuroalign.encoders.ridge_cv` beyond its inputs.

    With ``n`` samples, ``p`` features, ``t`` targets, ``a`` alphas, ``F`` folds (``F = 1``
    and ``n_tr = n`` for ``"loo"``), ``n_tr = n (F-1)/F`` training rows, ``n_va = n/F``,
    ``b`` targets per batch, ``w`` bytes per working value (8 per float64 value) and
    ``g = p`` (primal) or ``n_tr`` (dual), the larger of

    * set-up: the working features ``n p w`` and their float64 copy ``n p 8`` (when
      ``w < 8``), the folds' decompositions (primal ``F p^2 w + 2 n p w``, and ``F p^2 w``
      more for the Gram form of the errors, :func:`gram_errors`; dual
      ``F n_tr^2 w + n n_tr w``; primal folds whose training rows are not all the others
      keep them, ``F n_tr p w``), and the last fold's transients: primal, when each fold
      trains on all the other rows (``complement``, as k-fold does), the features'
      cross-product, the fold's rows in float64 and their cross-product, and the
      eigendecomposition (``n_va p 8 + 7 p^2 8``), else its training rows in ``w`` and
      float64, centred (``n_tr p (w + 16)``; ``n_tr p 16`` when ``w = 8``) and the
      eigendecomposition (Gram matrix, eigenvectors, LAPACK workspace: ``4 g^2 8``); dual,
      the full Gram matrix ``n^2 8`` and the fold's centred blocks and eigendecomposition
      ``7 n_tr^2 8``; likewise the refit's (primal ``5 p^2 8`` from the cross-product,
      or ``n p 8 + 4 g_r^2 8``);
    * the batch loop: the above without the transients, the refit's decomposition (primal
      ``p^2 w``, dual ``n^2 w + n p w``), the outputs written so far (``3 a t 8`` errors
      and R² per alpha, and the weights of the other batches ``p (t - b) w``: the
      zero-initialised weights become resident only as they are written), and one batch's
      working set: its targets ``n b w`` with float64 blocks ``2 r b 8`` (``r`` rows,
      :func:`row_block`),
      ``X^T Y`` (primal, ``p b w``, with the folds' validation parts ``F p b w`` when
      :func:`folded_xty`), per fold
      the rotated targets, a buffer and residuals (``3 g b w + 3 n_va b w``; the Gram form
      ``4 p b w + n_va b w``) or the refit (primal ``3 p b w``, dual
      ``3 n b w + p b w``, plus float64 weights ``2 p b 8``), and the errors ``2 a b 8``;

    plus :data:`OVERHEAD`, and with ``disk`` (responses left in a store on disk, read a
    batch at a time) the read of a batch (:func:`disk_read_memory`). ``form="loo"``: the
    closed-form leave-one-out solver (float64).
    """
    n, p, t, a = int(n_samples), int(n_features), int(n_targets), int(n_alphas)
    b = max(1, min(int(batch), t)) if t else 0
    w = int(itemsize)
    loo = form == "loo"
    F = 1 if loo else max(int(n_folds), 2)
    n_tr = n if loo else n * (F - 1) // F
    n_va = n if loo else -(-n // F)
    g = (n if p >= n else p) if loo else (p if form == "primal" else n_tr)
    read = disk_read_memory(n, b, t, itemsize=w) if disk else 0
    if form == "dual" and not loo:
        return _dual_memory(n, p, t, a, F, b, w, refit) + read
    x64 = n * p * 8 if w != 8 else 0  # the float64 copy beside the working one
    if loo:
        w = 8
        folds = g * g * 8 + 2 * n * g * 8
    elif form == "primal":
        gram = gram_errors(n_va, p, a)
        folds = (2 if gram else 1) * F * p * p * w + 2 * n * p * w
        if not complement:  # each fold keeps its own training rows
            folds += F * n_tr * p * w
    else:
        folds = F * n_tr * n_tr * w + n * n_tr * w
    base = n * p * w + folds
    # set-up: the last fold's transients (its rows in w and float64, centred, and the
    # eigendecomposition) beside the float64 features; then the refit's decomposition
    if form == "dual":  # one float64 Gram matrix for all folds; each fold's centred block
        setup = base + x64 + n * n * 8 + 7 * n_tr * n_tr * 8
    elif complement and not loo:  # from the features' cross-product (feature_cov)
        setup = base + x64 + n_va * p * 8 + 7 * p * p * 8
    else:
        # the fold's rows, in float64 (the same array when w = 8) and centred
        setup = base + x64 + n_tr * p * (w + 16 if w != 8 else 16) + 4 * g * g * 8
    if refit and not loo:
        g_r = p if form == "primal" else n
        refit_setup = 5 * p * p * 8 if form == "primal" else n * p * 8 + 4 * g_r * g_r * 8
        setup = max(setup, base + x64 + refit_setup)
        base += p * p * w if form == "primal" else n * n * w + n * p * w
    # the batch loop: one batch's working set beside the outputs filled so far (the pages
    # of the zero-initialised weights become resident as batches are written: at most
    # t - b columns when a full batch is being worked on)
    outputs = 3 * a * t * 8 + (p * max(t - b, 0) * w + 2 * t * 8 if refit else 0)
    rows = min(n, row_block(b))
    xty = (F + 1 if folded_xty(n, p, F) else 1) * p * b * w if form == "primal" else 0
    targets = n * b * w + 2 * rows * b * 8
    if not loo and form == "primal" and gram_errors(n_va, p, a):
        fold = 4 * p * b * w + n_va * b * w
    else:
        fold = 3 * g * b * w + 3 * n_va * b * w
    if not refit:
        final = 0
    elif form == "dual":
        final = 3 * n * b * w + p * b * w + 2 * p * b * 8
    else:
        final = 3 * p * b * w + 2 * p * b * 8
    per_batch = max(targets, n * b * w + xty + 2 * a * b * 8 + max(fold, final)) + read
    return int(max(setup, base + outputs + per_batch) + OVERHEAD)


#: Chunks of a store that reading from it holds beside the values read: zarr's file bytes
#: and decoded values of the chunks in flight (at most ``READ_CONCURRENCY``, 4, at once),
#: made in zarr's reader threads, whose allocator arenas keep them once freed (which
#: threads run a read varies, so this varies from run to run).
DISK_READ_CHUNKS = 8


def disk_read_memory(n_rows: int, batch: int, n_targets: int, *, itemsize: int = 4) -> int:
    """Bytes of reading ``batch`` neuroids of responses left in a store on disk
    (:class:`~neuroalign.store.LazyResponses`): the batch as read (``n b w``, alive while
    its working copy is made), the next batch, read in the background while this one is
    solved (``n b w``, :meth:`LazyResponses.blocks <neuroalign.store.LazyResponses.blocks>`),
    and :data:`DISK_READ_CHUNKS` chunks of the store (``min(CHUNK_BYTES, n t w)`` each:
    zarr decodes whole chunks, ``neuroalign.store._join.READ_CONCURRENCY`` at a time).
    Measured: a ``ridge_cv`` of 3,000 rows x 20,000 neuroids read in batches of 4,096
    peaked 229-284 MiB above the same fit in memory (47 MiB batches, 32 MiB chunks, three
    runs) when batches were read one after the other, 559 MiB in all with the read ahead
    (estimate 569 MiB)."""
    from neuroalign.store._schema import CHUNK_BYTES

    n, b, t, w = int(n_rows), int(batch), int(n_targets), int(itemsize)
    return 2 * n * min(b, t) * w + DISK_READ_CHUNKS * min(CHUNK_BYTES, n * t * w)


def _dual_memory(n: int, p: int, t: int, a: int, F: int, b: int, w: int, refit: bool) -> int:
    """:func:`ridge_memory` of the dual (kernel) form, which never copies the features nor
    forms primal weights (see :mod:`neuroalign.encoders._dual`): the larger of

    * the centred Gram matrix ``n^2 8`` beside one float64 block of feature columns
      (``n min(p, c) 8``, ``c`` columns of at most 32 MiB);
    * the Gram matrix beside the folds' decompositions (``F n_tr^2 w + n n_tr w``) and the
      last fold's centred blocks and eigendecomposition (``7 n_tr^2 8``; ``6 n_tr^2 8`` in
      float64, whose eigenvectors are the fold's own), or beside the
      refit's eigendecomposition (``3 n^2 8 + n^2 w``);
    * the batch loop: the folds' and the refit's decompositions (``n^2 w``), the outputs
      written so far (``3 a t 8``, the dual coefficients of the other batches
      ``n (t - b) w``), and one batch: its targets ``n b w`` with float64 blocks
      ``2 r b 8`` (:func:`row_block`), the errors ``2 a b 8`` and the larger of a fold's working set
      (``3 n_tr b w + 3 n_va b w``) and the refit's (``n b w + 2 n b 8``);

    plus :data:`OVERHEAD`.
    """
    from neuroalign.encoders._dual import feature_block

    n_tr = n * (F - 1) // F
    n_va = -(-n // F)
    folds = F * n_tr * n_tr * w + n * n_tr * w
    gram = n * n * 8
    # float64 working values: the last fold's eigenvectors are its kept U (no cast copy)
    setup = max(gram + n * min(p, feature_block(n)) * 8,
                gram + folds + (7 if w != 8 else 6) * n_tr * n_tr * 8)
    base = folds
    if refit:
        setup = max(setup, gram + folds + 3 * n * n * 8 + n * n * w)
        base += n * n * w
    outputs = 3 * a * t * 8 + (n * max(t - b, 0) * w + 2 * t * 8 if refit else 0)
    fold = 3 * n_tr * b * w + 3 * n_va * b * w
    final = n * b * w + 2 * n * b * 8 if refit else 0
    targets = n * b * w + 2 * min(n, row_block(b)) * b * 8
    per_batch = max(targets, n * b * w + 2 * a * b * 8 + max(fold, final))
    return int(max(setup, base + outputs + per_batch) + OVERHEAD)


def ridge_batch(n_samples: int, n_features: int, n_targets: int, *, n_alphas: int,
                n_folds: int, batch: int, itemsize: int = 4, form: str = "primal",
                refit: bool = True, func: str = "ridge_cv", budget: int | None = None,
                complement: bool = True, disk: bool = False) -> int:
    """The number of targets per batch to use: ``batch`` when the fit's peak
    (:func:`ridge_memory`) fits the budget, else the largest smaller batch that does.

    Raises
    ------
    MemoryPreflightError
        When the fit does not fit even one target at a time.
    """
    budget = memory_budget() if budget is None else budget
    kw = dict(n_alphas=n_alphas, n_folds=n_folds, itemsize=itemsize, form=form, refit=refit,
              complement=complement, disk=disk)
    need = ridge_memory(n_samples, n_features, n_targets, batch=batch, **kw)
    if budget is None or need <= budget or n_targets == 0:
        return int(batch)
    fixed = ridge_memory(n_samples, n_features, n_targets, batch=1, **kw)
    if fixed > budget:
        lower = ("fewer features (e.g. a PCA of the features)" if form == "primal"
                 else "fewer samples per fit")
        _raise(fixed, budget,
               f"{func}: the fit of {n_targets} targets ({n_samples} samples x {n_features} "
               f"features, {n_alphas} alphas, {n_folds} folds, {form} form, "
               f"{'float64' if itemsize == 8 else 'float32'}) even one target at a time",
               f"{_FLOAT32 if itemsize == 8 else ''}{lower}, fewer alphas, or fewer targets per call "
               "(split the neuroids, e.g. cluster= or by ROI)")
    # the estimate grows with the batch: the largest that fits
    return largest_fitting(
        lambda b: ridge_memory(n_samples, n_features, n_targets, batch=b, **kw) <= budget, batch)


def sweep_memory(n_features, n_targets: int, *, itemsize: int = 4, keep: str = "all") -> int:
    """Bytes a layer sweep keeps across layers: each layer's weights ``p_l t w`` and score
    tables ``3 t 8`` (``n_features``: one feature count per layer). With ``keep="best"``
    (each neuroid's best layer's weights only) the weights are at most ``max(p_l) t w``.
    Each layer's own fit adds :func:`ridge_memory` on top, and its batch adapts to what is
    left."""
    sizes, t, w = [int(p) for p in n_features], int(n_targets), int(itemsize)
    scores = 3 * t * 8 * len(sizes)
    if keep == "best":
        return int(max(sizes, default=0) * t * w + scores)
    return int(sum(sizes) * t * w + scores)


def sweep_peak(n_samples: int, n_features, n_targets: int, *, n_alphas: int, n_folds: int,
               batch: int = 4096, itemsize: int = 4, keep: str = "all",
               responses: bool = True) -> int:
    """Peak bytes of a layer sweep (``n_features``: one feature count per layer, in the
    order fitted): its copy of the valid neuroids' responses (``n t w``; with
    ``responses=False``, responses left on disk: each fit reads a batch of them,
    :func:`disk_read_memory`) and the largest,
    over layers, of the weights and scores kept for the layers before it
    (:func:`sweep_memory`) plus that layer's fit (:func:`ridge_memory`, in the form
    ``ridge_cv`` picks; a dual-form layer adds its weights ``p t w``, formed after the fit
    from the dual coefficients, with a float64 block of feature columns)."""
    from neuroalign.encoders._dual import feature_block

    n, t, w = int(n_samples), int(n_targets), int(itemsize)
    F = max(int(n_folds), 2)
    peak, before = 0, []
    for p in (int(v) for v in n_features):
        form = "primal" if p <= n * (F - 1) // F else "dual"
        need = ridge_memory(n, p, t, n_alphas=n_alphas, n_folds=F, batch=batch, itemsize=w,
                            form=form, disk=not responses)
        if form == "dual":
            need += p * t * w + n * min(p, feature_block(n)) * 8
        kept = (n * t * w if responses else 0) + (
            sweep_memory(before, t, itemsize=w, keep=keep) if before else 0)
        peak = max(peak, kept + need)
        before.append(p)
    return int(peak)


def check_sweep(layers: dict, n_samples: int, n_targets: int, *, n_alphas: int, n_folds: int,
                dtype="float32", func: str = "LayerSweep.fit", budget: int | None = None,
                keep: str = "all", responses: bool = True, batch: int = 4096) -> int:
    """Stop a layer sweep at once when the weights it keeps for every layer
    (:func:`sweep_memory`) plus the smallest fit of its layers (:func:`sweep_peak` one
    target at a time) do not fit the budget. ``layers`` maps names to arrays of shape
    (n_samples, ...); ``responses=False``: the responses stay on disk, read ``batch``
    neuroids at a time. Returns the bytes needed."""
    import numpy as np

    sizes = [int(np.prod(np.shape(v)[1:])) for v in layers.values()]
    if not sizes:
        return 0
    itemsize = np.dtype(dtype).itemsize
    widest = max(sizes)
    need = sweep_peak(n_samples, sizes, n_targets, n_alphas=n_alphas, n_folds=n_folds,
                      batch=1, itemsize=itemsize, keep=keep, responses=responses)
    if not responses:  # one batch of responses read from disk at a time
        need += int(n_samples) * min(int(n_targets), int(batch)) * itemsize
    kept = sweep_memory(sizes, n_targets, itemsize=itemsize, keep=keep)
    need = max(need, kept)
    return check_memory(
        need, budget=budget,
        what=f"{func}: {len(sizes)} layers (up to {widest} features) against {n_targets} "
             f"neuroids keep {format_bytes(kept)} of weights, and",
        lower=("keep_weights='best' (only each neuroid's best layer's weights), " if keep == "all"
               else "") + "fewer layers per sweep (fit them in groups), "
              + (_FLOAT32 if itemsize == 8 else "") + "fewer neuroids per call (e.g. by ROI, "
              "or cluster=) or fewer features (PCA)")


# -- RDMs and decoders ---------------------------------------------------------------------
def rdm_memory(n_stimuli: int, n_channels: int, *, metric: str = "correlation",
               itemsize: int = 8, copy: bool = True) -> int:
    """Peak bytes of :func:`neuroalign.compare.rdm` on numpy data.

    ``metric="correlation"``: the Gram matrix of the row-centred patterns is accumulated
    over float64 blocks of channels (``n min(p, c) 8``, ``c`` channels of at most 32 MiB;
    the data are never copied whole), and the result is a second ``n^2 8`` (the
    C-ordered copy of the Fortran-ordered Gram matrix). Other metrics: a float64 copy of the
    patterns when the input is not float64 (``copy``), the centred/scaled or projected
    patterns ``n p 8`` (``"mahalanobis"``: the centred patterns and their projection,
    ``2 n p 8``; and ``p^2 8`` for a precision matrix), and ``3 n^2 8`` for the Gram
    matrix, its symmetrised form and the result."""
    n, p = int(n_stimuli), int(n_channels)
    if metric == "correlation":
        block = n * min(p, max(1, 32 * 2**20 // (8 * n))) * 8
        return int(2 * n * n * 8 + block + OVERHEAD)
    data = n * p * 8 * (2 if copy else 1)
    if metric == "mahalanobis":
        data += n * p * 8
    if metric in ("mahalanobis", "crossnobis"):
        data += p * p * 8
    return int(data + 3 * n * n * 8 + OVERHEAD)


def refit_memory(n_samples: int, n_features: int, n_targets: int, *, batch: int = 4096,
                 itemsize: int = 8, form: str | None = None) -> int:
    """Peak bytes of :func:`~neuroalign.encoders.ridge_refit` beyond its inputs: its weights
    ``p t w`` and, with ``n`` samples, ``p`` features, ``b`` targets per batch,

    * primal (``p <= n``): the rescaled features in float64 and in ``w`` (``n p (8 + w)``,
      one array when ``w = 8``) beside, first, their centred copy and the
      eigendecomposition of ``X^T X`` (``n p 8 + 4 p^2 8``), then the eigenvectors
      (``p^2 (8 + w)``) and one batch (``n b w`` targets, ``5 p b 8``);
    * dual: the centred Gram matrix and its eigendecomposition (``4 n^2 8 + n^2 w``) with a
      float64 block of feature columns, then the dual coefficients ``n t w`` and the
      weights formed from them a block of features at a time.

    Plus :data:`OVERHEAD`.
    """
    from neuroalign.encoders._dual import feature_block

    n, p, t, w = int(n_samples), int(n_features), int(n_targets), int(itemsize)
    b = max(1, min(int(batch), t)) if t else 0
    form = form or ("primal" if p <= n else "dual")
    out = p * t * w
    if form == "primal":
        xw = n * p * 8 + (n * p * w if w != 8 else 0)
        setup = xw + n * p * 8 + 4 * p * p * 8
        loop = xw + p * p * (8 + w) + n * b * w + 5 * p * b * 8 + out
        need = max(setup, loop)
    else:
        block = n * min(p, feature_block(n)) * 8
        need = max(4 * n * n * 8 + n * n * w + block,
                   n * n * w + n * t * w + 2 * n * b * 8,
                   n * t * w + out + 2 * block)
    return int(need + OVERHEAD)


def decoder_memory(n_samples: int, n_features: int, n_targets: int, *, n_alphas: int = 10,
                   n_folds: int = 5, copy: bool = True) -> int:
    """Peak bytes of a ridge decoder's fit (``EmbeddingDecoder(kind="ridge")``, float64):
    the brain matrix taken from the store (``n p 8``, when it is a copy: ``copy``; a
    float64 store in memory gives a view) and its standardised copy (``n p 8``), beside
    the larger of the transient of the standardisation (``n p 8``), the cross-validated
    choice of alpha (:func:`ridge_memory` without refit, in the form ``ridge_cv`` picks)
    and the final fit (:func:`refit_memory`)."""
    n, p, t = int(n_samples), int(n_features), int(n_targets)
    F = max(int(n_folds), 2)
    form = "primal" if p <= n * (F - 1) // F else "dual"
    fit = ridge_memory(n, p, t, n_alphas=n_alphas, n_folds=F, batch=4096, itemsize=8,
                       form=form, refit=False) if n_alphas > 1 else 0
    refit = refit_memory(n, p, t, itemsize=8)
    brain = n * p * 8 if copy else 0
    return int(brain + n * p * 8 + max(n * p * 8 + OVERHEAD, fit, refit))


def ridge_cv_batch(X, Y, alphas, folds, *, form: str | None, batch: int, dtype,
                   refit: bool, backend: str = "numpy") -> int:
    """:func:`ridge_batch` for a call of :func:`~neuroalign.encoders.ridge_cv` (its
    arguments as given; ``dtype`` the working dtype): the batch of targets to use. Not
    applied on a GPU (``backend != "numpy"``)."""
    if backend != "numpy":
        return int(batch)
    import numpy as np

    n, p = X.shape
    loo = isinstance(folds, str)
    if loo:
        used = "loo"
    else:
        n_tr = min((len(tr) for tr, _ in folds), default=n)
        used = form or ("primal" if p <= n_tr else "dual")
    name = getattr(dtype, "name", None) or str(dtype).removeprefix("torch.")
    from neuroalign.encoders._ridge_folds import complements
    from neuroalign.store import LazyResponses

    complement = not loo and all(complements(tr, va, n) for tr, va in folds)
    return ridge_batch(n, p, Y.shape[1], n_alphas=len(alphas), n_folds=1 if loo else len(folds),
                       batch=batch, itemsize=np.dtype(name).itemsize, form=used, refit=refit,
                       complement=complement, disk=isinstance(Y, LazyResponses))


def check_refit(n_samples: int, n_features: int, n_targets: int, *, itemsize: int,
                form: str | None, batch: int, func: str = "ridge_refit",
                backend: str = "numpy", budget: int | None = None) -> int:
    """Stop a ridge refit (:func:`~neuroalign.encoders.ridge_refit`) at once when
    :func:`refit_memory` does not fit the budget (not applied on a GPU)."""
    if backend != "numpy":
        return 0
    need = refit_memory(n_samples, n_features, n_targets, batch=batch, itemsize=itemsize,
                        form=form)
    return check_memory(
        need, budget=budget,
        what=f"{func} of {n_targets} targets on {n_samples} samples x {n_features} features "
             f"({'float64' if itemsize == 8 else 'float32'})",
        lower="fewer targets per call, fewer features (e.g. a PCA)"
              + (", or dtype='float32'" if itemsize == 8 else ""))


def check_rdm(n_stimuli: int, n_channels: int, *, metric: str, dtype="float64",
              func: str = "rdm", budget: int | None = None) -> int:
    """Stop an RDM at once when :func:`rdm_memory` does not fit the budget."""
    import numpy as np

    copy = np.dtype(str(dtype).removeprefix("torch.")) != np.float64
    need = rdm_memory(n_stimuli, n_channels, metric=metric, copy=copy)
    return check_memory(
        need, budget=budget,
        what=f"{func}(metric={metric!r}) of {n_stimuli} stimuli x {n_channels} channels",
        lower="fewer stimuli per RDM (the matrix grows with their square), fewer channels "
              "(e.g. a PCA or an ROI), or float64 input (no float64 copy is made then)")


def check_decoder(n_samples: int, n_features: int, n_targets: int, *, func: str,
                  n_alphas: int = 10, n_folds: int = 5, copy: bool = True,
                  budget: int | None = None) -> int:
    """Stop a ridge decoder's fit at once when :func:`decoder_memory` does not fit
    (``copy=False`` when the brain matrix is already in memory)."""
    need = decoder_memory(n_samples, n_features, n_targets, n_alphas=n_alphas, n_folds=n_folds,
                          copy=copy)
    return check_memory(
        need, budget=budget,
        what=f"{func} on {n_samples} samples x {n_features} brain features -> {n_targets} "
             "targets",
        lower="fewer brain features (an ROI, or a PCA of the responses), average=True "
              "(one row per stimulus), or a smaller target embedding")
