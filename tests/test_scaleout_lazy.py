"""The cluster of ``cluster=`` starts only when a cell is to be computed: a rerun whose cells
are all on disk starts no cluster (for Slurm/PBS: submits no job), on every heavy entry
point; a bad ``cluster`` value is still named at once; and a rerun with one cell missing
starts the cluster and computes that cell only."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from neuroalign import _scaleout

ALPHAS = np.logspace(-2, 4, 7)


class Started(AssertionError):
    pass


@pytest.fixture
def no_cluster(monkeypatch):
    """A cluster started from here on fails the test."""
    started: list = []

    def refuse(kind, options=None):
        started.append(kind)
        raise Started(f"a {kind!r} cluster was started with every cell on disk")

    monkeypatch.setattr(_scaleout, "make_cluster", refuse)
    return started


def _ridge(path, **kw):
    from neuroalign.encoders import RidgeEncoder

    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 8))
    Y = X @ rng.standard_normal((8, 11)) + rng.standard_normal((60, 11))
    enc = RidgeEncoder(alphas=ALPHAS, dtype="float64", device="cpu").fit(
        X, Y, result_path=path, batch_size=4, **kw)
    return enc.cv_scores_, enc.scaleout_info_


def _banded(path, **kw):
    from neuroalign.encoders import BandedRidgeEncoder

    rng = np.random.default_rng(1)
    A, B = rng.standard_normal((50, 4)), rng.standard_normal((50, 5))
    Y = A @ rng.standard_normal((4, 7)) + B @ rng.standard_normal((5, 7)) + rng.standard_normal((50, 7))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        enc = BandedRidgeEncoder(alphas=ALPHAS, n_iter=3, device="cpu", random_state=0).fit(
            {"a": A, "b": B}, Y, result_path=path, batch_size=3, **kw)
    return enc.cv_scores_, enc.scaleout_info_


def _sweep(path, **kw):
    from neuroalign.encoders import LayerSweep

    rng = np.random.default_rng(2)
    layers = {f"l{i}": rng.standard_normal((50, 5 + 3 * i)) for i in range(2)}
    Y = layers["l1"] @ rng.standard_normal((8, 9)) + rng.standard_normal((50, 9))
    sweep = LayerSweep(alphas=ALPHAS, cv=3, dtype="float64", device="cpu").fit(
        layers, Y, result_path=path, batch_size=4, **kw)
    computed = [i for info in sweep.scaleout_info_.values() for i in info["computed"]]
    return sweep.cv_scores_.values, {"computed": computed}


def _searchlight(path, **kw):
    from neuroalign.compare import searchlight

    rng = np.random.default_rng(3)
    shape = (5, 5, 4)
    ijk = np.argwhere(np.ones(shape, bool))
    data = rng.standard_normal((8, len(ijk)))
    models = rng.random((2, 28))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = searchlight(data, models, ijk=ijk, radius=1.5, volume_shape=shape,
                          show_progress=False, result_path=path, batch_size=30, **kw)
    return out.values, {"computed": [None] * out.attrs["n_cells_computed"]}


def _shape(path, **kw):
    from neuroalign.compare import distance_matrix

    rng = np.random.default_rng(4)
    systems = {f"s{i}": rng.standard_normal((20, 4 + i)) for i in range(4)}
    out = distance_matrix(systems, result_path=path, batch_size=2, **kw)
    return out.values, {"computed": [None] * out.attrs["n_cells_computed"]}


def _rdms(path, **kw):
    from neuroalign.compare import data_rdms, pseudo_subjects
    from neuroalign.testing import make_store

    store = pseudo_subjects(make_store(n_stimuli=10, n_neuroids=20, n_repetitions=2, seed=5), 2, seed=1)
    out = data_rdms(store, "correlation", result_path=path, **kw)
    return out.values, {}  # no count of its own: the cell files say what was written


RUNS = {"ridge": _ridge, "banded": _banded, "sweep": _sweep, "searchlight": _searchlight,
        "shape": _shape, "data_rdms": _rdms}


@pytest.mark.parametrize("run", list(RUNS), ids=list(RUNS))
@pytest.mark.parametrize("kind", ["slurm", "local", "tcp://127.0.0.1:1"])
def test_a_rerun_with_every_cell_on_disk_starts_no_cluster(run, kind, tmp_path, no_cluster,
                                                            monkeypatch):
    """First run in this process; the rerun names a cluster (Slurm, a local one, a scheduler
    address nobody listens on): it loads every cell, computes none and starts nothing."""
    path = tmp_path / "cells"
    first, info = RUNS[run](path)
    cells = _cells(path)
    assert len(cells) > 1 and len(info.get("computed", cells)) > 0
    monkeypatch.setattr("dask.distributed.Client.__init__", _refuse_client)
    again, info = RUNS[run](path, cluster=kind)
    assert info.get("computed", []) == [] and no_cluster == []
    assert _cells(path) == cells  # nothing written again
    np.testing.assert_array_equal(np.asarray(again), np.asarray(first))


def _cells(path) -> dict[str, int]:
    return {f.name: f.stat().st_mtime_ns for f in (path / "cells").glob("*.npz")}


def _refuse_client(self, *args, **kwargs):
    raise Started(f"a dask Client was made with every cell on disk: {args!r}")


@pytest.mark.parametrize("run", ["ridge", "searchlight", "shape"])
def test_a_missing_cell_starts_the_cluster_and_only_it_is_computed(run, tmp_path):
    path = tmp_path / "cells"
    first, _ = RUNS[run](path)
    cells = _cells(path)
    victim = sorted((path / "cells").glob("*.npz"))[1]
    victim.unlink()
    again, info = RUNS[run](path, cluster={"kind": "local", "n_workers": 1, "processes": False})
    after = _cells(path)
    assert len(info["computed"]) == 1 and set(after) == set(cells)
    assert [n for n in after if after[n] != cells[n]] == [victim.name]
    np.testing.assert_allclose(np.asarray(again), np.asarray(first), rtol=0, atol=1e-12)


@pytest.mark.parametrize("bad", ["slurmm", "", 3, {"kind": "sge"}])
def test_a_bad_cluster_value_is_named_even_when_every_cell_is_on_disk(bad, tmp_path):
    path = tmp_path / "cells"
    _ridge(path)
    with pytest.raises(ValueError, match=r"Invalid value for 'cluster' in RidgeEncoder\.fit\(\)"):
        _ridge(path, cluster=bad)


def test_slurm_without_result_path_is_refused_before_anything_runs(no_cluster):
    from neuroalign.compare import distance_matrix

    systems = {f"s{i}": np.eye(6)[:, : 3 + i] for i in range(3)}
    with pytest.raises(ValueError, match=r"Invalid value for 'result_path' in distance_matrix"):
        distance_matrix(systems, cluster="slurm")
    assert no_cluster == []


def test_the_cluster_starts_once_for_many_cells_and_is_shut_down(tmp_path, monkeypatch):
    """A lazy start is a single start: cells of several layers share one cluster, closed at
    the end."""
    made, closed = [], []
    real = _scaleout.get_client

    def counting(cluster, options=None, *, func="fit"):
        client, close = real(cluster, options, func=func)
        made.append(client)

        def close_and_count():
            closed.append(client)
            close()

        return client, close_and_count

    monkeypatch.setattr(_scaleout, "get_client", counting)
    scores, info = _sweep(tmp_path / "c", cluster={"kind": "local", "n_workers": 1,
                                                   "processes": False})
    assert len(info["computed"]) == 2 * 3 and len(made) == 1 and closed == made
