"""data_rdms(cluster=, result_path=): one cached cell per subject gives the single-process
RDMs (correlation, crossnobis with noise); a rerun, or a store with a subject added,
computes only the missing subjects."""

import numpy as np
import pytest
import xarray as xr

from neuroalign.compare import data_rdms, pseudo_subjects
from neuroalign.testing import make_store


@pytest.fixture(scope="module")
def store():
    ds = make_store(n_stimuli=12, n_neuroids=30, n_repetitions=2, seed=3)
    return pseudo_subjects(ds, 3, seed=1)


@pytest.mark.parametrize("metric", ["correlation", "crossnobis", "euclidean"])
@pytest.mark.parametrize("use_client", [False, True])
def test_cells_match_the_single_process_rdms(store, client, tmp_path, metric, use_client):
    kw = {"noise": np.eye(10)} if metric == "crossnobis" else {}
    single = data_rdms(store, metric, **kw)
    cells = data_rdms(store, metric, result_path=tmp_path / "r",
                      client=client if use_client else None, **kw)
    assert len(list((tmp_path / "r" / "cells").glob("*.npz"))) == 3
    xr.testing.assert_identical(cells, single)  # values, coords, attrs
    again = data_rdms(store, metric, result_path=tmp_path / "r", **kw)
    xr.testing.assert_identical(again, single)


def test_rerun_and_an_added_subject_compute_only_missing(store, tmp_path):
    path = tmp_path / "r"
    data_rdms(store, result_path=path)
    cells = {f.name: f.stat().st_mtime_ns for f in (path / "cells").glob("*.npz")}
    extra = store.isel(neuroid=np.flatnonzero(store.subject.values == "pseudo-00"))
    extra = extra.assign_coords(subject=("neuroid", ["pseudo-09"] * extra.sizes["neuroid"]),
                                neuroid_id=("neuroid", [f"x{i}" for i in range(extra.sizes["neuroid"])]))
    extra["responses"] = extra["responses"] * 2.0 + 1.0
    grown = xr.concat([store, extra], dim="neuroid")
    d = data_rdms(grown, result_path=path)
    after = {f.name: f.stat().st_mtime_ns for f in (path / "cells").glob("*.npz")}
    assert len(after) == 4 and {k: after[k] for k in cells} == cells  # one cell added
    xr.testing.assert_identical(d, data_rdms(grown))
    # another metric on the same data: other keys
    data_rdms(store, "euclidean", result_path=path)
    assert len(list((path / "cells").glob("*.npz"))) == 7
    # one subject's responses changed: its cell only
    changed = store.copy(deep=True)
    sel = changed.subject.values == "pseudo-01"
    changed["responses"][:, sel] = changed["responses"][:, sel] * 1.5
    d = data_rdms(changed, result_path=path)
    assert len(list((path / "cells").glob("*.npz"))) == 8
    xr.testing.assert_identical(d, data_rdms(changed))
