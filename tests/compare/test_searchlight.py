"""Searchlight RSA against rsatoolbox's searchlight on a small volume, and on a mesh
against a brute-force loop over discs."""

import warnings

import numpy as np
import pytest
import rsatoolbox
import xarray as xr
from rsatoolbox.inference import eval_fixed
from rsatoolbox.model import ModelFixed
from rsatoolbox.util.searchlight import (
    evaluate_models_searchlight,
    get_searchlight_RDMs,
    get_volume_searchlight,
)
from scipy.sparse.csgraph import dijkstra

from neuroalign.compare import compare_rdms, rdm, searchlight
from neuroalign.compare._searchlight_geometry import _mesh_graph
from neuroalign.exceptions import DataQualityWarning, DimensionError, StimulusMismatchError

SHAPE = (9, 10, 8)
N_STIM = 9


def _volume(seed=0):
    rng = np.random.default_rng(seed)
    g = np.stack(np.meshgrid(*[np.arange(s) for s in SHAPE], indexing="ij"), -1)
    mask = (((g - np.array([4.2, 4.6, 3.6])) / np.array([4.4, 4.9, 3.9])) ** 2).sum(-1) < 1
    full = rng.standard_normal((N_STIM, int(np.prod(SHAPE))))
    full += rng.standard_normal((N_STIM, 1)) * 0.5  # shared component: varied correlations
    ijk = np.argwhere(mask)
    data = full[:, np.ravel_multi_index(ijk.T, SHAPE)]
    models = rng.random((3, N_STIM * (N_STIM - 1) // 2))
    return mask, full, ijk, data, models


def _rsatoolbox(mask, full, models, radius, method, rdm_method="correlation", threshold=1.0):
    centres, nbrs = get_volume_searchlight(mask, radius=radius, threshold=threshold,
                                           truncate_at_boundary=threshold < 1)
    sl = get_searchlight_RDMs(full, centres, nbrs, np.arange(N_STIM), method=rdm_method,
                              verbose=False)
    mods = [ModelFixed(f"m{i}", rsatoolbox.rdm.RDMs(m[None])) for i, m in enumerate(models)]
    res = evaluate_models_searchlight(sl, mods, eval_fixed, method=method, n_jobs=1)
    return centres, np.array([r.evaluations[0, :, 0] for r in res])  # (n_centres, k)


def _ours_at(sl, ijk, centres):
    flat = np.ravel_multi_index(ijk.T, SHAPE)
    pos = {f: i for i, f in enumerate(flat)}
    return sl.values[:, [pos[c] for c in centres]].T


@pytest.mark.parametrize("ours, theirs, radius", [
    ("spearman", "spearman", 2), ("pearson", "corr", 2), ("rho_a", "rho-a", 2.5),
    ("cosine", "cosine", 2), ("tau_a", "tau-a", 2),
])
def test_volume_equals_rsatoolbox(ours, theirs, radius, capsys):
    mask, full, ijk, data, models = _volume()
    centres, ref = _rsatoolbox(mask, full, models, radius, theirs)
    assert 5 < len(centres) < mask.sum()
    sl = searchlight(data, models, ijk=ijk, volume_shape=SHAPE, radius=radius, method=ours)
    assert sl.attrs["n_centres"] == len(centres)
    np.testing.assert_allclose(_ours_at(sl, ijk, centres), ref, rtol=1e-9, atol=1e-12)
    # every other neuroid is NaN with no neighbours
    is_c = np.isin(np.ravel_multi_index(ijk.T, SHAPE), centres)
    assert np.isnan(sl.values[:, ~is_c]).all() and (sl["n_neighbours"].values[~is_c] == 0).all()


@pytest.mark.parametrize("threshold", [0.6, 0.0])
def test_partial_spheres_equal_rsatoolbox_truncated(threshold, capsys):
    mask, full, ijk, data, models = _volume(1)
    centres, ref = _rsatoolbox(mask, full, models, 2, "corr", "euclidean", threshold)
    sl = searchlight(data, models, ijk=ijk, volume_shape=SHAPE, radius=2, method="pearson",
                     rdm_metric="sqeuclidean", threshold=threshold)
    # rsatoolbox's truncated spheres keep every mask voxel as a centre (it thresholds the
    # share of mask voxels AFTER truncating to the mask); here the share is of the whole
    # sphere, so threshold=0 gives its centres, 0.6 a subset with the same values
    ours = np.ravel_multi_index(ijk[sl["n_neighbours"].values > 0].T, SHAPE)
    assert len(centres) == mask.sum()
    assert (len(ours) == len(centres)) == (threshold == 0) and np.isin(ours, centres).all()
    pos = np.searchsorted(centres, ours)
    np.testing.assert_allclose(_ours_at(sl, ijk, ours), ref[pos], rtol=1e-9, atol=1e-12)


def test_invariant_to_neuroid_order_chunks_and_threads():
    mask, full, ijk, data, models = _volume(2)
    ref = searchlight(data, models, ijk=ijk, volume_shape=SHAPE, radius=2)
    perm = np.random.default_rng(0).permutation(len(ijk))
    sl = searchlight(data[:, perm], models, ijk=ijk[perm], volume_shape=SHAPE, radius=2,
                     max_memory=0.01, n_jobs=2)  # one centre per chunk, two threads
    np.testing.assert_allclose(sl.values, ref.values[:, perm], rtol=1e-12, equal_nan=True)


def test_store_coords_and_stimulus_join():
    mask, full, ijk, data, models = _volume(3)
    ids = np.array([f"s{i}" for i in range(N_STIM)])
    store = xr.Dataset(
        {"responses": (("stimulus", "neuroid"), data)},
        coords={"stimulus_id": ("stimulus", ids), "i": ("neuroid", ijk[:, 0]),
                "j": ("neuroid", ijk[:, 1]), "k": ("neuroid", ijk[:, 2]),
                "neuroid_id": ("neuroid", [f"v{n}" for n in range(len(ijk))])},
        attrs={"volume_shape": list(SHAPE)})
    feats = np.random.default_rng(4).standard_normal((2, N_STIM, 5))
    model_rdms = xr.concat([rdm(xr.DataArray(f, dims=("stimulus", "unit"),
                                             coords={"stimulus_id": ("stimulus", ids)}))
                            for f in feats], dim="model").assign_coords(model=["a", "b"])
    sl = searchlight(store, model_rdms, radius=2)
    assert sl.dims == ("model", "neuroid") and list(sl["model"].values) == ["a", "b"]
    assert "neuroid_id" in sl.coords and "i" in sl.coords
    # shuffled stimuli on the model side: joined by stimulus_id, same values
    p = np.random.default_rng(5).permutation(N_STIM)
    shuffled = model_rdms.isel(stimulus_i=p, stimulus_j=p)
    np.testing.assert_allclose(searchlight(store, shuffled, radius=2).values, sl.values,
                               rtol=1e-12, equal_nan=True)
    # one centre by hand: the RDM of its sphere against the model RDMs
    c = int(np.flatnonzero(sl["n_neighbours"].values)[0])
    near = ((ijk - ijk[c]) ** 2).sum(1) < 4
    expect = compare_rdms(model_rdms, rdm(store["responses"][:, near]), "spearman")
    np.testing.assert_allclose(sl.values[:, c], expect.values, rtol=1e-12)
    with pytest.raises(StimulusMismatchError, match="missing from"):
        searchlight(store, model_rdms.assign_coords(
            stimulus_id_i=("stimulus_i", [*ids[:-1], "x"]),
            stimulus_id_j=("stimulus_j", [*ids[:-1], "x"])), radius=2)


@pytest.mark.parametrize("method", ["bures", "cosine_cov", "pearson_cov", "tau_a"])
def test_missing_model_pairs_equal_compare_rdms_per_centre(method):
    """Model pairs left out (NaN): each centre's value is compare_rdms of its RDM with the
    models, NaN at the same pairs. The second-moment methods place the pairs present among
    the stimuli (9 pairs of 45 missing leave 36 = 9 * 8 / 2: read as an RDM of 9 stimuli
    they would give a wrong value without an error)."""
    from neuroalign.compare._rdm import squareform_vector
    from neuroalign.compare._searchlight_geometry import VolumeSpheres

    rng = np.random.default_rng(11)
    ijk = np.argwhere(np.ones((4, 4, 4), dtype=bool))
    data = rng.standard_normal((10, len(ijk)))
    models = rng.random((2, 45))
    models[:, 4:13] = np.nan
    sl = searchlight(data, models, ijk=ijk, radius=1.5, method=method, threshold=0)
    _, table = next(VolumeSpheres(ijk, 1.5, None, 0.0).chunks(len(ijk)))
    for c in (0, 21, 63):
        d = squareform_vector(np.asarray(rdm(data[:, table[c][table[c] >= 0]])))
        d[np.isnan(models[0])] = np.nan
        np.testing.assert_allclose(sl.values[:, c], compare_rdms(d, models, method),
                                   rtol=1e-10)


def test_nan_neuroid_and_constant_pattern_give_nan_and_warn():
    mask, full, ijk, data, models = _volume(6)
    data = data.copy()
    data[2, 10] = np.nan
    with pytest.warns(DataQualityWarning, match=r"centres are NaN"):
        sl = searchlight(data, models, ijk=ijk, volume_shape=SHAPE, radius=2)
    near = ((ijk - ijk[10]) ** 2).sum(1) < 4
    centres = sl["n_neighbours"].values > 0
    assert np.isnan(sl.values[:, near & centres]).all()
    assert np.isfinite(sl.values[:, ~near & centres]).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        searchlight(np.nan_to_num(data), models, ijk=ijk, volume_shape=SHAPE, radius=2)


def _plane(nx=9, ny=8):
    x, y = np.meshgrid(np.arange(nx, dtype=float), np.arange(ny, dtype=float), indexing="ij")
    v = np.stack([x.ravel(), y.ravel(), 0.1 * np.sin(x.ravel())], 1)
    idx = np.arange(nx * ny).reshape(nx, ny)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel()
    return v, np.concatenate([np.stack([a, b, c], 1), np.stack([b, d, c], 1)])


@pytest.mark.parametrize("max_memory", [256.0, 0.001])  # one chunk; one centre per chunk
def test_surface_equals_a_loop_over_discs(max_memory):
    v, f = _plane()
    rng = np.random.default_rng(7)
    keep = np.sort(rng.choice(len(v), 60, replace=False))  # a masked surface
    data = rng.standard_normal((N_STIM, len(keep)))
    da = xr.DataArray(data, dims=("stimulus", "neuroid"), coords={"vertex": ("neuroid", keep)})
    models = rng.random((2, N_STIM * (N_STIM - 1) // 2))
    sl = searchlight(da, models, surface=(v, f), radius=2.2, threshold=0.0, method="pearson",
                     max_memory=max_memory)
    dist = dijkstra(_mesh_graph(v, f))
    for c in range(len(keep)):
        near = dist[keep[c], keep] <= 2.2
        expect = compare_rdms(models, rdm(data[:, near]), "pearson") if near.sum() > 1 else None
        assert sl["n_neighbours"].values[c] == near.sum()
        if near.sum() > 1:
            np.testing.assert_allclose(sl.values[:, c], expect, rtol=1e-10)
    full = searchlight(da, models, surface=(v, f), radius=2.2, method="pearson")  # threshold 1
    whole = [np.isin(np.flatnonzero(dist[k] <= 2.2), keep).all() for k in keep]
    assert np.array_equal(full["n_neighbours"].values > 0, whole)


def test_mesh_graph_keeps_edges_between_vertices_at_the_same_place():
    """Vertices 1 and 2 coincide: the edge between them has length 0 and is followed (it
    is not dropped as a structural zero), so 2 is as far from 0 as 1 is."""
    v = np.array([[0, 0, 0], [1, 0, 0], [1, 0, 0], [0, 1, 0.0]])
    f = np.array([[0, 1, 3], [1, 2, 3]])
    g = _mesh_graph(v, f)
    assert g.nnz == 10 and (g != g.T).nnz == 0
    np.testing.assert_allclose(dijkstra(g, indices=0), [0, 1, 1, 1])


def test_surface_two_hemispheres_by_coordinate():
    v, f = _plane(5, 5)
    rng = np.random.default_rng(8)
    n = len(v)
    data = rng.standard_normal((N_STIM, 2 * n))
    da = xr.DataArray(data, dims=("stimulus", "neuroid"), coords={
        "vertex": ("neuroid", np.r_[np.arange(n), np.arange(n)]),
        "hemisphere": ("neuroid", ["lh"] * n + ["rh"] * n)})
    models = rng.random((1, N_STIM * (N_STIM - 1) // 2))
    sl = searchlight(da, models, surface={"lh": (v, f), "rh": (v, f)}, radius=1.5)
    one = searchlight(data[:, n:], models, surface=(v, f), radius=1.5)
    np.testing.assert_allclose(sl.values[:, n:], one.values, equal_nan=True)


def test_errors_name_the_parameter():
    mask, full, ijk, data, models = _volume()
    with pytest.raises(ValueError, match=r"'radius' in searchlight\(\): -1"):
        searchlight(data, models, ijk=ijk, radius=-1)
    with pytest.raises(ValueError, match=r"'ijk' in searchlight\(\): None"):
        searchlight(data, models)
    with pytest.raises(DimensionError, match=r"'ijk' in searchlight\(\): shape \(5, 3\)"):
        searchlight(data, models, ijk=ijk[:5])
    with pytest.raises(DimensionError, match=r"model RDMs have 3 pairs"):
        searchlight(data, models[:, :3], ijk=ijk)
    with pytest.raises(ValueError, match=r"'threshold' in searchlight\(\): 1.5"):
        searchlight(data, models, ijk=ijk, threshold=1.5)
    with pytest.raises(ValueError, match=r"'n_jobs' in searchlight\(\): 0"):
        searchlight(data, models, ijk=ijk, n_jobs=0)
    with pytest.raises(ValueError, match=r"model RDM\(s\) \[1\] have all dissimilarities equal"):
        searchlight(data, np.stack([models[0], np.ones_like(models[0])]), ijk=ijk)
    with pytest.raises(DimensionError, match=r"'volume_shape' in searchlight\(\): \(2, 2, 2\)"):
        searchlight(data, models, ijk=ijk, volume_shape=(2, 2, 2))
    with pytest.raises(ValueError, match=r"'surface' in searchlight\(\): 'fsavg'"):
        searchlight(data, models, surface="fsavg")


@pytest.mark.parametrize("method", ["spearman", "pearson"])
def test_torch_device_path_gives_the_numpy_values(method):
    pytest.importorskip("torch")
    mask, full, ijk, data, models = _volume(9)
    ref = searchlight(data, models, ijk=ijk, volume_shape=SHAPE, radius=2, method=method)
    out = searchlight(data, models, ijk=ijk, volume_shape=SHAPE, radius=2, method=method,
                      device="cpu")
    np.testing.assert_allclose(out.values, ref.values, rtol=1e-10, atol=1e-12, equal_nan=True)



def _tables(data, kw) -> list:
    """``(centres, table)`` of every chunk, from the geometry the searchlight itself uses."""
    from neuroalign.compare._searchlight import _geometry

    arr = np.asarray(data)
    geom, _, _ = _geometry(data, arr, kw["radius"], kw.get("threshold", 1.0), kw.get("ijk"),
                           kw.get("volume_shape"), kw.get("surface"))
    return list(geom.chunks(arr.shape[1]))


def _nan_voxel_cases():
    """(name, data, models, searchlight kwargs): a 6^3 cube in shuffled neuroid order with
    spheres cut by the grid (volume_shape given, default threshold), partial spheres with
    no grid (threshold 0, volume_shape default), and a masked surface (threshold 0)."""
    rng = np.random.default_rng(11)
    shape = (6, 6, 6)
    ijk = np.argwhere(np.ones(shape, dtype=bool))
    ijk = ijk[rng.permutation(len(ijk))]  # neuroid order need not be grid order
    n = 8
    vol = rng.standard_normal((n, len(ijk)))
    v, f = _plane()
    keep = np.sort(rng.choice(len(v), 60, replace=False))
    surf = xr.DataArray(rng.standard_normal((n, len(keep))), dims=("stimulus", "neuroid"),
                        coords={"vertex": ("neuroid", keep)})
    models = rng.random((2, n * (n - 1) // 2))
    return [
        ("grid", vol, models, dict(ijk=ijk, volume_shape=shape, radius=2)),
        ("no-grid", vol, models, dict(ijk=ijk, radius=2, threshold=0.0)),
        ("surface", surf, models, dict(surface=(v, f), radius=2.2, threshold=0.0)),
    ]


@pytest.mark.parametrize("method", ["spearman", "rho_a", "pearson", "tau_a"])
@pytest.mark.parametrize("rdm_metric", ["correlation", "euclidean"])
@pytest.mark.parametrize("case", range(3))
def test_a_nan_neuroid_changes_only_the_neighbourhoods_that_hold_it(case, rdm_metric, method,
                                                                    monkeypatch):
    """A NaN neuroid makes exactly the centres whose sphere or disc holds it NaN (and the
    warning counts those); every other centre keeps its value bit for bit, wherever the
    neuroid is in neuroid order. (Padding was read as neuroid 0, and filled with the
    values of a chunk's first neuroid, times 0: NaN * 0 = NaN spread to every padded
    neighbourhood, which spearman and rho_a ranked into finite wrong numbers.) No RDM with
    a NaN reaches the ranks."""
    from neuroalign.compare import _searchlight_chunks

    name, data, models, kw = _nan_voxel_cases()[case]
    kw = {**kw, "method": method, "rdm_metric": rdm_metric}
    clean = searchlight(data, models, **kw).values
    tables = _tables(data, kw)
    ranks = _searchlight_chunks.rank_average

    def finite_ranks(v):
        assert np.isfinite(v).all(), "an RDM with NaN was ranked"
        return ranks(v)

    monkeypatch.setattr(_searchlight_chunks, "rank_average", finite_ranks)
    first = tables[0][1][0]  # the neuroid whose values filled the first chunk's padding
    n_neuroids = data.shape[1]
    for voxel in sorted({0, int(first[first >= 0][0]), 17, n_neuroids - 1}):
        dirty = data.copy()
        dirty[3, voxel] = np.nan
        centre, holds = np.zeros(n_neuroids, dtype=bool), np.zeros(n_neuroids, dtype=bool)
        for c, table in tables:
            centre[c] = True
            holds[c] = (table == voxel).any(1)
        assert 0 < holds.sum() < centre.sum()
        with pytest.warns(DataQualityWarning,
                          match=rf"\): {holds.sum()} of {centre.sum()} centres are NaN"):
            out = searchlight(dirty, models, **kw).values
        assert np.isnan(out[:, holds]).all(), (name, voxel)
        np.testing.assert_array_equal(out[:, ~holds], clean[:, ~holds], err_msg=f"{name} {voxel}")


@pytest.mark.parametrize("method", ["spearman", "rho_a", "pearson"])
def test_overflowing_dissimilarities_give_nan_and_warn(method):
    """Finite patterns whose squared distances overflow float64 (1e200) give NaN, named in
    the warning, at the centres whose sphere holds them; never ranked into a number."""
    mask, full, ijk, data, models = _volume(12)
    data = data.copy()
    data[:, 10] *= 1e200
    kw = dict(ijk=ijk, volume_shape=SHAPE, radius=2, method=method, rdm_metric="euclidean")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # numpy's overflow warnings stay inside
        with pytest.warns(DataQualityWarning, match=r"dissimilarities beyond the float64 range"):
            sl = searchlight(data, models, **kw)
    near = ((ijk - ijk[10]) ** 2).sum(1) < 4
    centres = sl["n_neighbours"].values > 0
    assert np.isnan(sl.values[:, near & centres]).all() and (near & centres).any()
    assert np.isfinite(sl.values[:, ~near & centres]).all()


@pytest.mark.parametrize("units", [1e-9, 1e-13])
def test_three_model_vectors_over_three_stimuli_in_small_units(units):
    """Models (3, 3) over 3 stimuli are 3 vectors of 3 pairs in any units (in 1e-9 units
    they were read as one square RDM: one model instead of three)."""
    rng = np.random.default_rng(13)
    ijk = np.argwhere(np.ones((4, 4, 4), dtype=bool))
    data = rng.standard_normal((3, len(ijk)))
    models = rng.random((3, 3))
    kw = dict(ijk=ijk, radius=1.5, threshold=0.0, method="pearson")
    ref = searchlight(data, models, **kw)
    assert ref.sizes["model"] == 3
    np.testing.assert_allclose(searchlight(data, models * units, **kw).values, ref.values,
                               rtol=1e-10, equal_nan=True)


@pytest.mark.parametrize("rdm_metric", ["euclidean", "sqeuclidean"])
@pytest.mark.parametrize("seed", range(2))
def test_distance_rdms_do_not_depend_on_a_baseline_per_voxel(seed, rdm_metric):
    """A baseline per voxel (the same for every stimulus) leaves every distance unchanged:
    data in multiples of 2^-10 on baselines of 2^20-2^31 stay exact in float64, so the
    values must equal those without the baselines (the uncentred expansion lost every
    digit), and those of rsatoolbox on the centred data."""
    mask, full, ijk, data, models = _volume(seed)
    rng = np.random.default_rng(seed)
    data = np.round(data * 1024) / 1024
    base = 2.0 ** rng.integers(20, 32, data.shape[1])
    assert np.array_equal((data + base) - base, data)
    kw = dict(ijk=ijk, volume_shape=SHAPE, radius=2, method="pearson", rdm_metric=rdm_metric)
    ref = searchlight(data, models, **kw).values
    np.testing.assert_allclose(searchlight(data + base, models, **kw).values, ref,
                               rtol=1e-10, atol=1e-12, equal_nan=True)
