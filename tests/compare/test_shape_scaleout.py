"""distance_matrix(cluster=, result_path=): blocks of pairs as cached cells give the
single-process matrix whatever the workers and the block size; a rerun, or a matrix with a
system added, computes only the missing pairs."""

import numpy as np
import pytest

from neuroalign.compare import ShapeMetric, distance_matrix


def _systems(m=6, n=30, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, 6))
    # widths differ (zero padding), one system wider than the stimuli (p > n), near-copies
    out = {f"s{i}": np.concatenate([base @ rng.standard_normal((6, 4 + 9 * i)),
                                    0.3 * rng.standard_normal((n, 4 + 9 * i))], 0)[:n]
           for i in range(m)}
    out["copy"] = out["s1"] @ np.linalg.qr(rng.standard_normal((13, 13)))[0] + 1e-9
    return out


@pytest.mark.parametrize("metric", [ShapeMetric(1.0), ShapeMetric(0.0),
                                    ShapeMetric(0.5, "euclidean")], ids=["procrustes", "cca", "partial-eucl"])
@pytest.mark.parametrize(("use_client", "batch"), [(False, 1), (True, 4), (True, 100)])
def test_cells_match_the_single_process_matrix(client, tmp_path, metric, use_client, batch):
    systems = _systems()
    single = distance_matrix(systems, metric)
    cells = distance_matrix(systems, metric, result_path=tmp_path / "d", batch_size=batch,
                            client=client if use_client else None)
    n_pairs = 7 * 6 // 2
    assert cells.attrs["n_cells"] == -(-n_pairs // batch) == cells.attrs["n_cells_computed"]
    np.testing.assert_allclose(cells.values, single.values, rtol=0, atol=1e-12)
    assert single.values[1, 6] < 1e-6 < single.values[0, 1]  # the near-copy, and the others


def test_rerun_and_an_added_system_compute_only_missing_pairs(tmp_path):
    systems = _systems(4)
    path = tmp_path / "d"
    first = distance_matrix(systems, result_path=path, batch_size=1)
    assert first.attrs["n_cells_computed"] == 10
    assert distance_matrix(systems, result_path=path, batch_size=1).attrs["n_cells_computed"] == 0
    more = dict(systems, extra=np.random.default_rng(9).standard_normal((30, 7)))
    grown = distance_matrix(more, result_path=path, batch_size=1)
    assert grown.attrs["n_cells_computed"] == 5  # the new system's pairs only
    np.testing.assert_allclose(grown.values, distance_matrix(more).values, rtol=0, atol=1e-12)
    # the same data under another metric: other keys
    cca = distance_matrix(systems, "cca", result_path=path, batch_size=1)
    assert cca.attrs["n_cells_computed"] == 10
    changed = dict(systems, s0=systems["s0"] * 1.0001 + 1)
    assert distance_matrix(changed, result_path=path, batch_size=1).attrs["n_cells_computed"] == 4


def test_bad_arguments_with_cells_are_named(tmp_path):
    systems = _systems(3)
    with pytest.raises(ValueError, match=r"Invalid value for 'batch_size' in distance_matrix\(\): -1"):
        distance_matrix(systems, result_path=tmp_path, batch_size=-1)
    with pytest.raises(ValueError, match=r"Invalid value for 'device' in distance_matrix\(\) with cells"):
        distance_matrix(systems, result_path=tmp_path, device="cpu")
    with pytest.raises(RuntimeError, match=r"distance_matrix: 1 cell\(s\) failed"):
        distance_matrix(systems, result_path=tmp_path / "f", batch_size=1, _fail={1: "raise"})
    redo = distance_matrix(systems, result_path=tmp_path / "f", batch_size=1)
    assert redo.attrs["n_cells_computed"] == 1
