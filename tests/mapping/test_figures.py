"""Figures: right number of panels, colour ranges, ceilings; PNG/SVG written."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import xarray as xr

from neuroalign.exceptions import DataFormatError, DimensionError
from neuroalign.mapping import (
    FSAVERAGE5_VERTICES,
    FSAVERAGE_VERTICES,
    plot_layer_profile,
    plot_roi_scores,
    plot_surface_map,
    plot_topomaps,
    plot_volume_map,
    save_figure,
    surface_rois,
    to_fsaverage5,
    volume_image,
)


def scores_with_rois(n=30, seed=0):
    rng = np.random.default_rng(seed)
    layers = ["l1", "l2", "l3"]
    vals = rng.uniform(0, 0.2, (3, n))
    vals[0, :10] += 0.5
    vals[2, 10:20] += 0.5
    return xr.DataArray(
        vals, dims=("layer", "neuroid"),
        coords={"layer": layers, "neuroid_id": ("neuroid", [f"n{i}" for i in range(n)]),
                "roi_early": ("neuroid", np.arange(n) < 10),
                "roi_late": ("neuroid", (np.arange(n) >= 10) & (np.arange(n) < 20))},
    )


def test_roi_bars_with_noise_ceiling(tmp_path):
    sc = scores_with_rois()
    nc = np.full(30, 64.0)  # percent -> ceiling on r = 0.8
    fig = plot_roi_scores(sc, noise_ceiling=nc, save=tmp_path / "bars.png")
    (ax,) = fig.axes
    assert len(ax.patches) == 2  # one bar per ROI, best layer per neuroid
    heights = [p.get_height() for p in ax.patches]
    np.testing.assert_allclose(heights, [sc.max("layer").values[:10].mean(), sc.max("layer").values[10:20].mean()])
    ceilings = [c for c in ax.collections if c.get_label() == "noise ceiling"]
    assert len(ceilings) == 1 and np.allclose(ceilings[0].get_segments()[0][:, 1], 0.8)
    assert ax.get_ylim()[1] >= 0.8
    assert (tmp_path / "bars.png").stat().st_size > 1000
    grouped = plot_roi_scores(sc, group_dim="layer", ceiling_as="none", save=tmp_path / "bars.svg")
    assert len(grouped.axes[0].patches) == 2 * 3
    assert (tmp_path / "bars.svg").read_text().lstrip().startswith("<?xml")


def test_roi_bars_errors(tmp_path):
    sc = scores_with_rois()
    with pytest.raises(ValueError, match="Invalid value for 'save'"):
        plot_roi_scores(sc, save=tmp_path / "bars.jpg")
    with pytest.raises(DimensionError, match="one value per neuroid"):
        plot_roi_scores(sc, noise_ceiling=np.ones(3))
    with pytest.raises(DimensionError, match="'neuroid' dim"):
        plot_roi_scores(sc.rename(neuroid="voxel"))
    with pytest.raises(DimensionError, match="at most one group dim"):
        plot_roi_scores(sc.expand_dims(model=2), group_dim="layer")
    with pytest.raises(ValueError, match="Invalid value for 'ceiling_as'"):
        plot_roi_scores(sc, ceiling_as="sqrt")


def test_layer_profile_panels_per_model(tmp_path):
    sc = scores_with_rois()
    fig = plot_layer_profile(sc, save=tmp_path / "profile.svg")
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    lines = [ln for ln in ax.lines if ln.get_label() in ("early", "late")]
    assert len(lines) == 2
    np.testing.assert_allclose(lines[0].get_xdata(), [0, 0.5, 1])
    stars = [ln for ln in ax.lines if ln.get_marker() == "*"]
    assert [float(s.get_xdata()[0]) for s in stars] == [0.0, 1.0]  # early -> l1, late -> l3
    rel = plot_layer_profile(sc, relative=True)
    rel_lines = [ln for ln in rel.axes[0].lines if ln.get_label() in ("early", "late")]
    assert max(float(np.max(ln.get_ydata())) for ln in rel_lines) == pytest.approx(1.0)
    assert rel.axes[0].get_ylabel() == "mean score / ROI maximum"
    two = xr.concat([sc, sc.isel(layer=[0, 2])], dim="layer")
    two = two.assign_coords(model=("layer", ["a"] * 3 + ["b"] * 2))
    fig2 = plot_layer_profile(two, x="layer")
    assert len(fig2.axes) == 2 and [a.get_title() for a in fig2.axes] == ["a", "b"]
    with pytest.raises(DimensionError, match="'time' dim"):
        plot_layer_profile(sc.expand_dims(time=3))


def test_volume_map_colour_range_and_rois(sim_nsd, tmp_path):
    store = sim_nsd.store()
    vals = xr.DataArray(np.linspace(-1, 2, store.sizes["neuroid"]), dims="neuroid",
                        coords={"neuroid_id": store["neuroid_id"]})
    fig = plot_volume_map(vals, store, cut_coords=4, rois=["V1v", "FFA-1"], save=tmp_path / "vol.png")
    clims = {im.get_clim() for ax in fig.axes for im in ax.get_images()}
    assert (-2.0, 2.0) in clims  # symmetric default range
    slices = [ax for ax in fig.axes if ax.get_images()]
    assert len(slices) == 4
    fig2 = plot_volume_map(vals, store, display_mode="ortho", cut_coords=None, vmin=0, vmax=1, cmap="viridis")
    assert (0.0, 1.0) in {im.get_clim() for ax in fig2.axes for im in ax.get_images()}
    img = volume_image(vals, store)
    assert img.shape == tuple(store.attrs["volume_shape"])
    i, j, k = (int(store[c].values[5]) for c in "ijk")
    assert np.isclose(img.get_fdata()[i, j, k], vals.values[5])
    assert (tmp_path / "vol.png").exists()


def test_volume_map_errors(sim_nsd):
    store = sim_nsd.store()
    with pytest.raises(DataFormatError, match="no attribute 'affine'"):
        volume_image(np.zeros(store.sizes["neuroid"]), store.assign_attrs(affine=None).drop_attrs())
    with pytest.raises(DimensionError, match="expected one per neuroid"):
        volume_image(np.zeros(3), store)
    with pytest.raises(KeyError, match="unknown ROI 'MT'"):
        plot_volume_map(np.zeros(store.sizes["neuroid"]), store, rois=["MT"])


def test_fsaverage5_is_the_prefix_of_fsaverage():
    """fsaverage meshes are nested icosahedra: every vertex past the first 2562 of fsaverage5
    is the midpoint of an edge between two earlier vertices, so lower orders are prefixes."""
    from nilearn import datasets

    sphere = datasets.load_fsaverage("fsaverage5")["sphere"].parts["left"]
    xyz = np.asarray(sphere.coordinates, float)
    faces = np.asarray(sphere.faces)
    assert len(xyz) == FSAVERAGE5_VERTICES
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.unique(np.sort(edges, axis=1), axis=0)
    n4 = 2562  # fsaverage4
    new = np.arange(n4, FSAVERAGE5_VERTICES)
    # each new vertex lies on the sphere between two old vertices (on their great-circle midpoint)
    unit = xyz / np.linalg.norm(xyz, axis=1, keepdims=True)
    nbr_old = {v: [] for v in new}
    for a, b in edges:
        if a >= n4 and b < n4:
            nbr_old[a].append(b)
        elif b >= n4 and a < n4:
            nbr_old[b].append(a)
    ok = 0
    for v in new[:: 37]:
        old = nbr_old[v]
        mids = [(p, q) for p in old for q in old if p < q]
        best = min(np.linalg.norm(unit[v] - (unit[p] + unit[q]) / np.linalg.norm(unit[p] + unit[q]))
                   for p, q in mids)
        ok += best < 0.02
    assert ok == len(new[:: 37])
    full = np.arange(2 * FSAVERAGE_VERTICES, dtype=float)
    res = to_fsaverage5(full)
    np.testing.assert_array_equal(res["left"], np.arange(FSAVERAGE5_VERTICES))
    np.testing.assert_array_equal(res["right"], FSAVERAGE_VERTICES + np.arange(FSAVERAGE5_VERTICES))


def disk(center, radius=25.0):
    from nilearn import datasets

    xyz = np.asarray(datasets.load_fsaverage("fsaverage5")["sphere"].parts["left"].coordinates)
    return np.linalg.norm(xyz - xyz[center], axis=1) < radius


def test_surface_map_views_and_colour_range(tmp_path):
    rng = np.random.default_rng(0)
    full = rng.uniform(-0.5, 3.0, 2 * FSAVERAGE_VERTICES)  # NSD-sized fsaverage data
    roi = np.concatenate([disk(100), np.zeros(FSAVERAGE5_VERTICES, bool)])
    fig = plot_surface_map(full, rois={"blob": {"left": roi[:FSAVERAGE5_VERTICES], "right": roi[FSAVERAGE5_VERTICES:]}},
                           colorbar_label="r", save=tmp_path / "surf.png")
    panels = [ax for ax in fig.axes if ax.name == "3d"]
    assert len(panels) == 2 * 4
    assert [ax.get_title() for ax in panels[:4]] == ["left lateral", "left medial", "left ventral", "left flat"]
    cbars = [ax for ax in fig.axes if ax.name != "3d"]
    assert len(cbars) == 1
    lo, hi = full[:FSAVERAGE5_VERTICES].min(), full[:FSAVERAGE5_VERTICES].max()
    lo = min(lo, full[FSAVERAGE_VERTICES:FSAVERAGE_VERTICES + FSAVERAGE5_VERTICES].min())
    hi = max(hi, full[FSAVERAGE_VERTICES:FSAVERAGE_VERTICES + FSAVERAGE5_VERTICES].max())
    m = max(-lo, hi)
    np.testing.assert_allclose(cbars[0].get_ylim(), (-m, m))
    one = plot_surface_map(full[:FSAVERAGE_VERTICES].tolist() + full[FSAVERAGE_VERTICES:].tolist(),
                           views=["ventral"], hemispheres=["lh"], vmin=0, vmax=1, cmap="viridis")
    assert len([ax for ax in one.axes if ax.name == "3d"]) == 1
    assert np.allclose([ax for ax in one.axes if ax.name != "3d"][0].get_ylim(), (0, 1))
    assert (tmp_path / "surf.png").exists()


def test_surface_inputs_from_a_vertex_store():
    vert = np.r_[np.arange(20), np.arange(20)]
    da = xr.DataArray(np.arange(40.0), dims="neuroid",
                      coords={"vertex": ("neuroid", vert), "hemisphere": ("neuroid", ["lh"] * 20 + ["rh"] * 20),
                              "roi_A": ("neuroid", np.arange(40) < 5)})
    res = to_fsaverage5(da)
    assert res["left"][3] == 3 and res["right"][3] == 23 and np.isnan(res["left"][100])
    rois = surface_rois(da)
    assert rois["A"]["left"].sum() == 5 and rois["A"]["right"].sum() == 0
    with pytest.raises(KeyError, match="unknown ROI"):
        surface_rois(da, ["B"])
    with pytest.raises(DataFormatError, match="expected 163842"):
        to_fsaverage5(np.zeros(2 * 5000))
    with pytest.raises(DataFormatError, match="has 3 values"):
        to_fsaverage5(np.zeros(3))
    with pytest.raises(DimensionError, match="coords 'hemisphere' and 'vertex'"):
        to_fsaverage5(da.drop_vars("vertex"))
    with pytest.raises(ValueError, match="Invalid value for 'views'"):
        plot_surface_map(np.zeros(2 * FSAVERAGE5_VERTICES), views=["top"])
    with pytest.raises(ValueError, match="Invalid value for 'hemispheres'"):
        plot_surface_map(np.zeros(2 * FSAVERAGE5_VERTICES), hemispheres=["both"])


def test_topomaps_panels_and_range(tmp_path):
    from neuroalign.datasets.simulate import CHANNELS

    vals = xr.DataArray(np.outer(np.linspace(0, 1, len(CHANNELS)), np.ones(10)), dims=("neuroid", "time"),
                        coords={"sensor": ("neuroid", CHANNELS), "time": np.linspace(-0.1, 0.8, 10)})
    fig = plot_topomaps(vals, times=[0.0, 0.1, 0.3], save=tmp_path / "topo.svg")
    maps = [ax for ax in fig.axes if ax.get_title().endswith("ms")]
    assert len(maps) == 3 and len(fig.axes) == 4
    assert maps[0].get_images()[0].get_clim() == (0.0, 1.0)
    fig2 = plot_topomaps(vals - 0.5, times=4)
    assert len([ax for ax in fig2.axes if ax.get_title().endswith("ms")]) == 4
    assert np.allclose(fig2.axes[0].get_images()[0].get_clim(), (-0.5, 0.5))
    with pytest.raises(DimensionError, match="no 'sensor'"):
        plot_topomaps(vals.drop_vars("sensor"))
    with pytest.raises(DimensionError, match="expected \\('neuroid', 'time'\\)"):
        plot_topomaps(vals.isel(time=0))
    with pytest.raises(ValueError, match="not in montage"):
        plot_topomaps(vals.assign_coords(sensor=("neuroid", ["XX"] + CHANNELS[1:])))


def test_save_figure_rejects_unknown_format(tmp_path):
    from matplotlib.figure import Figure

    with pytest.raises(ValueError, match="Expected a file name ending in"):
        save_figure(Figure(), tmp_path / "x.tiff")
    assert save_figure(Figure(), None) is None
