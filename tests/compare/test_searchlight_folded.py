"""The surface searchlight on a real folded cortex: nilearn's fsaverage5 pial mesh (shipped
inside the nilearn package, a dependency; read offline at run time).

Geodesic discs against an independent Dijkstra on the whole mesh (and not the Euclidean
ball, which reaches across sulci), a planted effect recovered where it was planted, the
same values whatever the order of the vertices and the chunking of the centres, and the
memory preflight's disc widths exact on the folded mesh.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import xarray as xr
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree

from neuroalign.compare import searchlight
from neuroalign.compare._searchlight import _width
from neuroalign.compare._searchlight_geometry import SurfaceDiscs


@pytest.fixture(scope="module")
def pial():
    """Left pial surface of fsaverage5: (vertices float64, faces int)."""
    from nilearn.datasets import load_fsaverage

    part = load_fsaverage("fsaverage5")["pial"].parts["left"]
    return np.asarray(part.coordinates, dtype=np.float64), np.asarray(part.faces)


def _edge_graph(v, f):
    """The mesh's edge graph weighted by edge length, built here from the faces (not with
    neuroalign's code)."""
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    e = np.unique(np.sort(e, 1), axis=0)
    w = np.linalg.norm(v[e[:, 0]] - v[e[:, 1]], axis=1)
    g = sp.coo_matrix((np.r_[w, w], (np.r_[e[:, 0], e[:, 1]], np.r_[e[:, 1], e[:, 0]])),
                      shape=(len(v), len(v)))
    return g.tocsr()


def _discs_of(v, f, radius, centres):
    """neuroalign's disc (a set of vertices) of each of ``centres``, every vertex a neuroid."""
    geom = SurfaceDiscs({"lh": (v, f)}, np.full(len(v), "lh"), np.arange(len(v)), radius, 0.0)
    want, out = set(int(c) for c in centres), {}
    for c, table in geom.chunks(512):
        for i in np.flatnonzero(np.isin(c, list(want))):
            out[int(c[i])] = set(table[i][table[i] >= 0].tolist())
    return out


def test_geodesic_discs_equal_dijkstra_and_leave_out_the_far_bank_of_a_sulcus(pial):
    v, f = pial
    radius = 10.0
    # centres: the vertices whose Euclidean ball holds the most vertices (balls that reach
    # across a sulcus or gyrus), and a few random ones
    n_ball = cKDTree(v).query_ball_point(v, radius, return_length=True)
    rng = np.random.default_rng(0)
    centres = np.r_[np.argsort(-n_ball, kind="stable")[:3], rng.choice(len(v), 4, replace=False)]
    ours = _discs_of(v, f, radius, centres)
    d = dijkstra(_edge_graph(v, f), indices=centres)  # whole mesh, no limit
    far_banks = 0
    for row, c in enumerate(centres):
        theirs = set(np.flatnonzero(d[row] <= radius).tolist())
        assert ours[int(c)] == theirs, c
        ball = set(np.flatnonzero(np.linalg.norm(v - v[c], axis=1) <= radius).tolist())
        assert theirs <= ball
        across = np.array(sorted(ball - theirs))
        if len(across) and d[row, across].max() > 3 * radius:  # the other bank: far along
            far_banks += 1  # the surface, near in space, and not in the disc
            assert not ours[int(c)] & set(across.tolist())
    assert far_banks >= 3  # the folded mesh has them (an icosphere would not)


@pytest.mark.parametrize("seed", [0, 1])
def test_planted_patch_is_where_the_map_peaks(pial, seed):
    v, f = pial
    n, rng = 40, np.random.default_rng(seed)
    centre = int(rng.integers(len(v)))
    geo = dijkstra(_edge_graph(v, f), indices=centre)
    patch = geo <= 15.0  # the planted effect: a geodesic patch of 15 mm
    latent = rng.standard_normal((n, 5))  # the model's stimulus geometry
    model = np.linalg.norm(latent[:, None] - latent[None], axis=-1)[np.triu_indices(n, 1)]
    data = rng.standard_normal((n, len(v)))
    data[:, patch] += 3 * latent @ rng.standard_normal((5, patch.sum()))
    da = xr.DataArray(data, dims=("stimulus", "neuroid"),
                      coords={"vertex": ("neuroid", np.arange(len(v)))})
    sl = searchlight(da, model[None], surface=(v, f), radius=6.0, method="spearman",
                     show_progress=False).values[0]
    assert np.isfinite(sl).all()
    assert patch[np.argmax(sl)]
    core = geo <= 6.0  # discs entirely inside the patch (seeds 0-7: min 0.42-0.57)
    away = geo > 30.0  # discs of noise only (seeds 0-7: max 0.14-0.19)
    assert sl[core].min() > 0.35
    assert sl[away].max() < 0.25


def _small(v, f, centre=5000, reach=25.0):
    """The part of the mesh within ``reach`` mm (Euclidean) of a vertex: a folded piece."""
    keep = np.flatnonzero(np.linalg.norm(v - v[centre], axis=1) <= reach)
    new = np.full(len(v), -1)
    new[keep] = np.arange(len(keep))
    ff = new[f]
    return v[keep], ff[(ff >= 0).all(1)]


def test_same_values_whatever_the_vertex_order_and_the_chunks(pial, tmp_path):
    v, f = _small(*pial)
    n, rng = 12, np.random.default_rng(2)
    data = rng.standard_normal((n, len(v)))
    models = rng.random((2, n * (n - 1) // 2))
    kw = dict(radius=6.0, method="spearman", threshold=0.0, show_progress=False)

    def run(vv, ff, dd, vertex=None, **more):
        vertex = np.arange(len(vv)) if vertex is None else vertex
        da = xr.DataArray(dd, dims=("stimulus", "neuroid"), coords={"vertex": ("neuroid", vertex)})
        return searchlight(da, models, surface=(vv, ff), **kw, **more)

    ref = run(v, f, data)
    assert np.isfinite(ref.values).all() and ref.attrs["n_centres"] == len(v)
    perm = rng.permutation(len(v))  # new vertex i is old vertex perm[i]
    inv = np.argsort(perm)
    got = run(v[perm], inv[f], data[:, perm])
    np.testing.assert_allclose(got.values[:, inv], ref.values, rtol=1e-12, atol=1e-13)
    np.testing.assert_array_equal(got["n_neighbours"].values[inv], ref["n_neighbours"].values)
    # the neuroids in another order than the vertices (the mesh as it was)
    got = run(v, f, data[:, perm], vertex=perm)
    np.testing.assert_allclose(got.values[:, inv], ref.values, rtol=1e-12, atol=1e-13)
    np.testing.assert_array_equal(got["vertex"].values[inv], np.arange(len(v)))
    small = run(v, f, data, max_memory=0.2, n_jobs=2)  # chunks of a few centres, 2 threads
    np.testing.assert_allclose(small.values, ref.values, rtol=1e-12, atol=1e-13)
    for b in (1, 37, 500):
        cells = run(v, f, data, batch_size=b, result_path=tmp_path / f"b{b}")
        np.testing.assert_allclose(cells.values, ref.values, rtol=1e-12, atol=1e-13)


def test_preflight_disc_width_is_exact_on_the_folded_mesh(pial):
    """The widest disc (which the preflight sizes the tables by) is the widest table a
    chunk builds: exact, where an even sample of centres falls short on a folded mesh; with
    too small a budget, an upper bound (never below)."""
    v, f = pial
    geom = SurfaceDiscs({"lh": (v, f)}, np.full(len(v), "lh"), np.arange(len(v)), 10.0, 0.0)
    widest = max(t.shape[1] for _, t in geom.chunks(512))
    assert _width(geom) == widest and geom.widest_exact
    neuroids, disc, ball = geom.widest()
    assert neuroids == disc == widest
    assert ball == cKDTree(v).query_ball_point(v, 10.0, return_length=True).max()
    bound = _width(geom, budget=1)
    assert bound >= widest and not geom.widest_exact
    # the candidates of a chunk's Dijkstra (the union of its balls): exact, or a bound
    order, tree = geom._order("lh"), cKDTree(v)
    unions = [len(set().union(*geom._balls("lh", tree, order[s:s + 512])))
              for s in range(0, len(order), 512)]
    assert geom.candidates(512) == max(unions)
    assert geom.candidates(100) == max(
        len(set().union(*geom._balls("lh", tree, order[s:s + 100])))
        for s in range(0, len(order), 100))
    # masked surfaces, two hemispheres: the widths count neuroids, bounded by the neuroids
    # in the balls
    rng = np.random.default_rng(3)
    lh, rh = (np.flatnonzero(rng.random(len(v)) < share) for share in (0.3, 0.6))
    geom = SurfaceDiscs({"lh": (v, f), "rh": (v, f)}, np.repeat(["lh", "rh"], [len(lh), len(rh)]),
                        np.r_[lh, rh], 10.0, 0.0)
    widest = max(t.shape[1] for _, t in geom.chunks(512))
    assert _width(geom) == widest and geom.widest_exact
    assert widest <= _width(geom, budget=1) <= ball
