"""thread_limits: BLAS/OpenMP, torch and neuroalign's own pools bounded inside the block,
everything restored after it (also after an exception, when nested, and across threads)."""

import sys
import threading

import numpy as np
import pytest
import scipy.linalg  # noqa: F401  (scipy's own BLAS loaded before any test reads the settings)
from threadpoolctl import threadpool_info

import neuroalign
from neuroalign._config import max_threads, thread_limits

torch = pytest.importorskip("torch")


def settings():
    """(threads of every BLAS/OpenMP library, torch's intra-op threads)."""
    return ({(lib["filepath"], lib["user_api"]): lib["num_threads"] for lib in threadpool_info()},
            torch.get_num_threads())


def test_limits_apply_inside_and_are_restored_after_an_exception():
    np.ones((2, 2)) @ np.ones((2, 2))  # BLAS loaded
    before = settings()
    assert before[0] and neuroalign.thread_limits is thread_limits
    with pytest.raises(RuntimeError, match="inside"), thread_limits(1) as n:
        libs, t = settings()
        assert n == 1 == max_threads() and t == 1
        assert set(libs.values()) == {1}
        raise RuntimeError("inside")
    assert settings() == before


def test_nested_blocks_keep_the_tightest_limit_and_restore_the_outer_one():
    before = settings()
    with thread_limits(1):
        with thread_limits(3) as n:  # cannot raise the limit of the outer block
            assert n == 1 and settings()[1] == 1
        assert settings()[1] == 1 and max_threads() == 1
        with thread_limits(None) as n:  # None changes nothing
            assert n == 1
    assert settings() == before
    with thread_limits(1, blas=False):  # torch only (torch sets its OpenMP pool itself)
        libs = settings()[0]
        assert all(libs[k] == v for k, v in before[0].items() if k[1] == "blas")
        assert settings()[1] == 1
    assert settings() == before


def test_blocks_in_several_threads_each_restore_their_own_thread():
    before = settings()
    inside, leave = threading.Event(), threading.Event()
    in_worker = []

    def worker():
        in_worker.append((settings()[1], max_threads()))
        with thread_limits(1):
            in_worker.append((settings()[1], max_threads()))
            inside.set()
            leave.wait(10)
        in_worker.append((settings()[1], max_threads()))

    t = threading.Thread(target=worker)
    with thread_limits(1):
        t.start()
        assert inside.wait(10)
    # torch (one setting per thread) is back here, the worker's block still holds
    assert settings()[1] == before[1] and max_threads() == before_max()
    leave.set()
    t.join(10)
    assert settings() == before
    found = in_worker[0]  # what this new thread started with
    assert in_worker[1:] == [(1, 1), found] and found[1] == before_max()


def before_max():
    import os

    return len(os.sched_getaffinity(0))


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_invalid_limits_are_refused(bad):
    before = settings()
    with pytest.raises(ValueError, match=r"Invalid value for 'n_threads' in thread_limits\(\): "
                                         + repr(bad).replace(".", r"\.") + ". Expected a positive"):
        with thread_limits(bad):
            pass
    assert settings() == before


def test_rank_threads_never_exceed_the_limit_and_restore_everything(monkeypatch, two_cores):
    import neuroalign.compare._ranks as ranks

    monkeypatch.setattr(ranks, "_PARALLEL_MIN", 1)
    seen, lock, active = [], threading.Lock(), [0]
    gate = threading.Barrier(2, timeout=2)

    def func(r):
        with lock:
            active[0] += 1
        try:
            gate.wait()  # two workers run at once when two are allowed
        except threading.BrokenBarrierError:
            pass
        libs, t = settings()
        with lock:
            seen.append((active[0], max(libs.values()), t, threading.current_thread().name))
            active[0] -= 1

    before = settings()
    with thread_limits(2):
        ranks._rows_parallel(func, 6, 10)
    # workers x BLAS threads (and x torch threads) never exceed the limit of 2
    assert len(seen) == 6 and max(a for a, *_ in seen) <= 2
    assert all(a * blas <= 2 and a * t <= 2 for a, blas, t, _ in seen)
    assert settings() == before
    # many shorter rows: blocks of rows per task, under the same limit, every row once
    monkeypatch.setattr(ranks, "_PARALLEL_MIN", 10**9)
    monkeypatch.setattr(ranks, "_BLOCKS_MIN", 1)
    rows, gate = [], threading.Barrier(2, timeout=2)
    with thread_limits(2):
        ranks._rows_parallel(lambda r: (rows.append(r), func(r)), 8, 10)
    assert sorted(rows) == list(range(8)) and len(seen) == 14
    assert all(a * blas <= 2 and a * t <= 2 for a, blas, t, _ in seen)
    assert len({name for *_, name in seen[6:]}) == 2  # two worker threads
    assert settings() == before
    seen.clear()
    gate = threading.Barrier(1)
    with thread_limits(1):  # one thread: no pool at all
        ranks._rows_parallel(func, 3, 10)
    assert {name for *_, name in seen} == {threading.current_thread().name}
    assert settings() == before


def test_rank_sorts_restore_threads_after_an_exception(monkeypatch):
    import neuroalign.compare._ranks as ranks
    from neuroalign.compare import compare_rdms

    rng = np.random.default_rng(0)
    n = 120_000  # long rows: ranked in threads, sorted by torch (imported here)
    a, b = rng.random((3, n)), rng.random(n)
    before = settings()
    assert compare_rdms(a, b, "spearman").shape == (3,)
    assert settings() == before

    def broken(*args):
        raise RuntimeError("count failed")

    monkeypatch.setattr(ranks, "_kendall_dis", lambda: broken)
    with pytest.raises(RuntimeError, match="count failed"):
        compare_rdms(a, b, "tau_a")
    assert settings() == before


def test_ridge_core_restores_threads_after_an_error(monkeypatch):
    from neuroalign.encoders import ridge_cv
    from neuroalign.encoders._backend import NumpyOps
    from neuroalign.exceptions import DataFormatError

    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((30, 5)), rng.standard_normal((30, 3))
    Y[4, 1] = np.nan
    inside = []
    real = NumpyOps.eigh

    def eigh(self, G):
        inside.append(settings())
        return real(self, G)

    monkeypatch.setattr(NumpyOps, "eigh", eigh)
    before = settings()
    with pytest.raises(DataFormatError, match="'Y' holds NaN"), thread_limits(1):
        ridge_cv(X, Y, [1.0, 10.0], [(np.arange(20), np.arange(20, 30))])
    assert inside and all(set(libs.values()) == {1} and t == 1 for libs, t in inside)
    assert settings() == before


_LATE_BLAS = """
import json, numpy as np
from threadpoolctl import threadpool_info
from neuroalign import thread_limits
with thread_limits(1):  # the library scan is kept from here on
    pass
import scipy.linalg  # loads scipy's own OpenBLAS after the first block
scipy.linalg.cho_factor(np.eye(3))
with thread_limits(1):
    inside = [lib["num_threads"] for lib in threadpool_info()]
print(json.dumps([inside, [lib["filepath"] for lib in threadpool_info()]]))
"""


def test_a_blas_loaded_after_the_first_block_is_limited_by_the_next():
    """The scan of the loaded libraries is reused across blocks (it costs milliseconds),
    and redone once an import has loaded another library: a block still limits them all."""
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _LATE_BLAS], capture_output=True, text=True,
                         check=True, env={"OMP_NUM_THREADS": "2", "PATH": ""})
    inside, libs = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(libs) >= 2 and inside == [1] * len(libs), (inside, libs)


def test_the_library_scan_is_reused_between_blocks(monkeypatch):
    from neuroalign import _config

    with thread_limits(1):
        pass
    scan = _config._threadpools()
    before = settings()
    for _ in range(5):
        with thread_limits(1):
            assert set(settings()[0].values()) == {1}
        assert _config._threadpools() is scan
    assert settings() == before
    monkeypatch.setitem(sys.modules, "neuroalign_test_new_module", object())  # an import
    with thread_limits(1):
        assert set(settings()[0].values()) == {1}
    assert _config._threadpools() is not scan


def test_an_import_in_another_thread_while_the_key_is_read_forces_a_new_scan():
    """The modules are read without a lock: when another thread's import changes them
    meanwhile (iteration raises), the scan is redone rather than the read failing."""
    from neuroalign import _config

    class Importing(dict):
        def __reversed__(self):
            raise RuntimeError("dictionary changed size during iteration")

    assert _config._modules_key(Importing(a=1)) is None
    assert _config._modules_key({}) is None
    assert _config._modules_key({"a": 1, "b": 2}) == (2, "b")
    assert _config._modules_key(sys.modules) == (len(sys.modules), list(sys.modules)[-1])
