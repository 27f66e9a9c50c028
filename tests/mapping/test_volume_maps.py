"""Real maps for volumetric stores: slices on the store's own grid over its mean image, and
projection to fsaverage only with MNI coordinates (never silently from a native volume)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import xarray as xr

from neuroalign.exceptions import (
    DataFormatError,
    DimensionError,
    SpaceError,
    TemplateNotAvailableError,
)
from neuroalign.mapping import (
    FSAVERAGE5_VERTICES,
    load_fsaverage_mesh,
    mean_image,
    plot_volume_map,
    project_to_fsaverage,
    volume_image,
)
from neuroalign.store import from_arrays

SHAPE = (7, 6, 5)


def las_affine():
    """2 mm voxels, x flipped (radiological storage, like many scanner images)."""
    aff = np.diag([-2.0, 2.0, 2.0, 1.0])
    aff[:3, 3] = [6.0, -5.0, -4.0]
    return aff


def small_store(affine=None, seed=0, space="func1pt8mm"):
    rng = np.random.default_rng(seed)
    inside = np.zeros(SHAPE, bool)
    inside[1:6, 1:5, 0:4] = True
    inside[3, 2, 1] = False  # a hole: not a store voxel
    ijk = np.argwhere(inside)
    resp = rng.normal(2.0, 1.0, (9, len(ijk)))
    resp[0, 0] = np.nan  # a missing trial: left out of that voxel's mean
    ids = ["a", "b", "c"] * 3
    return from_arrays(resp, ids, ijk=ijk, affine=las_affine() if affine is None else affine,
                       volume_shape=SHAPE, space=space)


def displayed_volume(ax, affine, shape, axis: int, cut_mm: float):
    """Read back the pixels of one nilearn slice as {voxel index: value} through its extent."""
    out = {}
    inv = np.linalg.inv(affine)
    for im in ax.get_images():
        arr = np.ma.filled(np.ma.asarray(im.get_array(), dtype=float), np.nan)
        x0, x1, y0, y1 = im.get_extent()
        rows, cols = arr.shape
        plane = [a for a in range(3) if a != axis]
        vals = {}
        for r in range(rows):
            for c in range(cols):
                world = np.zeros(3)
                world[axis] = cut_mm
                world[plane[0]] = x0 + (c + 0.5) * (x1 - x0) / cols
                world[plane[1]] = y1 - (r + 0.5) * (y1 - y0) / rows  # origin 'upper'
                ijk = np.round(inv[:3, :3] @ world + inv[:3, 3]).astype(int)
                if ((ijk >= 0) & (ijk < shape)).all():
                    vals[tuple(ijk)] = arr[r, c]
        out[len(out)] = vals
    return out  # 0: background, 1: the values


@pytest.mark.parametrize("axis, mode", [(2, "z"), (0, "x")])
def test_slices_show_each_voxels_value_over_the_mean_image(axis, mode):
    store = small_store()
    n = store.sizes["neuroid"]
    vals = np.linspace(-1.0, 3.0, n)
    vals[4] = 0.0  # a real zero is shown, not hidden with the empty voxels
    vals[7] = np.nan
    ids = store["neuroid_id"].values
    order = np.random.default_rng(1).permutation(n)  # matched on neuroid_id, not position
    da = xr.DataArray(vals[order], dims="neuroid", coords={"neuroid_id": ("neuroid", ids[order])})
    voxel = np.array([store[c].values for c in "ijk"]).T
    cut_vox = 2
    cut_mm = float((las_affine() @ np.r_[[cut_vox if a == axis else 0 for a in range(3)], 1])[axis])
    fig = plot_volume_map(da, store, display_mode=mode, cut_coords=[cut_mm])
    slices = [ax for ax in fig.axes if len(ax.get_images()) == 2]
    assert len(slices) == 1
    shown = displayed_volume(slices[0], las_affine(), np.array(SHAPE), axis, cut_mm)
    bg, fg = shown[0], shown[1]
    mean = np.nanmean(store["responses"].values, axis=0)
    on_slice = np.flatnonzero(voxel[:, axis] == cut_vox)
    assert len(on_slice) >= 8
    for n_ in on_slice:
        key = tuple(voxel[n_])
        assert bg[key] == pytest.approx(mean[n_], rel=1e-6)  # the mean image, NaN trial left out
        if n_ == 7:
            assert np.isnan(fg[key])  # no value: blank
        elif n_ == 4:
            assert abs(fg[key]) < 1e-5  # the zero, nudged just visible
        else:
            assert fg[key] == pytest.approx(vals[n_], rel=1e-6)
    # voxels of the slice that are not in the store: blank, over an empty (blank) background
    others = [k for k in fg if k not in {tuple(voxel[m]) for m in on_slice}]
    assert len(others) >= 10 and all(np.isnan(fg[k]) and np.nan_to_num(bg[k]) == 0 for k in others)


def test_mean_image_and_backgrounds(tmp_path):
    import nibabel as nib

    store = small_store()
    img = mean_image(store)
    voxel = np.array([store[c].values for c in "ijk"]).T
    data = img.get_fdata()
    np.testing.assert_allclose(data[tuple(voxel.T)], np.nanmean(store["responses"].values, 0), rtol=1e-6)
    assert np.isnan(data[3, 2, 1]) and np.isnan(data[0, 0, 0])
    vals = np.ones(store.sizes["neuroid"])
    cut = float((las_affine() @ [0, 0, 1, 1])[2])
    fig = plot_volume_map(vals, store, background="mask", cut_coords=[cut])
    (ax,) = [a for a in fig.axes if a.get_images()]
    bg = displayed_volume(ax, las_affine(), np.array(SHAPE), 2, cut)[0]
    assert {float(bg[tuple(v)]) for v in voxel if v[2] == 1} == {1.0}
    assert np.nan_to_num(bg[(3, 2, 1)]) == 0  # the hole in the store
    fig = plot_volume_map(vals, store, background=None, cut_coords=[cut])
    assert [len(a.get_images()) for a in fig.axes if a.get_images()] == [1]
    anat = tmp_path / "t1.nii.gz"
    nib.save(nib.Nifti1Image(np.full(SHAPE, 7.0, np.float32), las_affine()), anat)
    fig = plot_volume_map(vals, store, background=anat, cut_coords=[cut])
    (ax,) = [a for a in fig.axes if a.get_images()]
    assert set(displayed_volume(ax, las_affine(), np.array(SHAPE), 2, cut)[0].values()) == {7.0}
    with pytest.raises(ValueError, match=r"'background' in plot_volume_map\(\): 3"):
        plot_volume_map(vals, store, background=3)


def test_values_must_belong_to_the_store():
    store = small_store()
    da = xr.DataArray([1.0, 2.0], dims="neuroid", coords={"neuroid_id": ("neuroid", ["sub-01_1_1_0", "x_9_9_9"])})
    with pytest.raises(DimensionError, match=r"1 neuroid id\(s\) that the store lacks: 'x_9_9_9'"):
        volume_image(da, store)
    part = volume_image(da.isel(neuroid=[0]), store).get_fdata()
    assert part[1, 1, 0] == 1.0 and np.isfinite(part).sum() == 1  # absent neuroids: NaN


# -- fsaverage projection ------------------------------------------------------------------

def blob_store(centre_mm, *, offset=(0.0, 0.0, 0.0), space="MNI152NLin2009cAsym", radius=8.0, half=10,
               pad=3):
    """Store voxels: a 2-mm box around ``centre_mm`` (MNI) inside a volume ``pad`` voxels
    larger on each side; values 1 + 3 * (inside a sphere of ``radius``). The store's own
    coordinates are MNI + ``offset``."""
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    aff[:3, 3] = np.round(centre_mm) - 2.0 * (half + pad) + np.asarray(offset)
    shape = (2 * (half + pad) + 1,) * 3
    ijk = pad + np.argwhere(np.ones((2 * half + 1,) * 3, bool))
    mni = (ijk - pad) * 2.0 + np.round(centre_mm) - 2.0 * half
    value = 1.0 + 3.0 * (np.linalg.norm(mni - centre_mm, axis=1) < radius)
    store = from_arrays(np.zeros((2, len(ijk))), ["a", "b"], ijk=ijk, affine=aff, volume_shape=shape,
                        space=space)
    return store, value


@pytest.fixture(scope="module")
def fsavg5():
    mesh = load_fsaverage_mesh("fsaverage5")
    mid = {h: (np.asarray(mesh["pial"][h].coordinates) + np.asarray(mesh["white"][h].coordinates)) / 2
           for h in ("left", "right")}
    return mesh, mid


def test_mni_blob_lands_on_the_expected_vertices(fsavg5, monkeypatch):
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("project_to_fsaverage tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    _, mid = fsavg5
    centre = mid["left"][1234]  # a vertex on the lateral temporal surface
    store, value = blob_store(centre)
    surf = project_to_fsaverage(value, store)
    assert surf["left"].shape == surf["right"].shape == (FSAVERAGE5_VERTICES,)
    assert np.isnan(surf["right"]).all()  # the box lies in the left hemisphere only
    dist = np.linalg.norm(mid["left"] - centre, axis=1)
    near, far = dist < 4, (dist > 14) & np.isfinite(surf["left"])
    assert near.sum() >= 3 and far.sum() >= 20
    np.testing.assert_allclose(surf["left"][near], 4.0, atol=0.05)  # inside the blob
    np.testing.assert_allclose(surf["left"][far], 1.0, atol=1e-9)  # outside it, inside the box
    assert np.isnan(surf["left"][dist > 40]).all()  # vertices that sample no store voxel
    # a constant stays constant up to the edge of the store (no blending with empty space)
    flat = project_to_fsaverage(np.full(store.sizes["neuroid"], 2.5), store)["left"]
    np.testing.assert_allclose(flat[np.isfinite(flat)], 2.5, rtol=1e-12)


def test_native_store_needs_a_transform(fsavg5):
    _, mid = fsavg5
    centre = mid["left"][1234]
    mni, value = blob_store(centre)
    offset = np.array([10.0, -5.0, 3.0])
    native, _ = blob_store(centre, offset=offset, space="func1pt8mm")
    with pytest.raises(SpaceError, match=r"space is 'func1pt8mm', not an MNI space.*Pass transform="):
        project_to_fsaverage(value, native)
    to_mni = np.eye(4)
    to_mni[:3, 3] = -offset
    via = project_to_fsaverage(value, native, transform=to_mni)
    direct = project_to_fsaverage(value, mni)
    for h in ("left", "right"):
        np.testing.assert_allclose(via[h], direct[h], rtol=1e-12, equal_nan=True)
    wrong = project_to_fsaverage(value, native, transform=np.eye(4))  # 10 mm off: another map
    assert not np.allclose(np.nan_to_num(wrong["left"]), np.nan_to_num(direct["left"]))
    with pytest.raises(DataFormatError, match=r"'transform'.*invertible 4x4"):
        project_to_fsaverage(value, native, transform=np.eye(3))
    with pytest.raises(DataFormatError, match=r"no attribute 'affine'"):
        project_to_fsaverage(value[:3], from_arrays(np.zeros((2, 3)), ["a", "b"], space="MNI152"))


def test_meshes_are_never_downloaded(tmp_path, monkeypatch):
    import shutil

    from nilearn import datasets

    monkeypatch.setenv("NILEARN_DATA", str(tmp_path))
    monkeypatch.delenv("NILEARN_SHARED_DATA", raising=False)
    with pytest.raises(TemplateNotAvailableError, match=r"fsaverage mesh is not on this machine.*"
                       r"pial_left\.gii\.gz.*in " + str(tmp_path / "fsaverage")):
        load_fsaverage_mesh("fsaverage")
    assert not (tmp_path / "fsaverage").exists()  # nothing created, nothing fetched
    # files in place are read as they are (and checked: fsaverage5 files are not fsaverage6)
    src = datasets.fetch_surf_fsaverage("fsaverage5")  # nilearn's package data
    (tmp_path / "fsaverage6").mkdir()
    for name in ("pial_left", "pial_right", "white_left", "white_right"):
        shutil.copy(src[name], tmp_path / "fsaverage6" / f"{name}.gii.gz")
    with pytest.raises(DataFormatError, match=r"have 10242 vertices; expected 40962"):
        load_fsaverage_mesh("fsaverage6")
    with pytest.raises(ValueError, match=r"Invalid value for 'mesh'"):
        load_fsaverage_mesh("fsaverage9")


@pytest.mark.slow
def test_map_cli_projects_an_mni_store(fsavg5, tmp_path):
    """``neuroalign map`` on a volumetric store in MNI space: slices and a real projection."""
    from typer.testing import CliRunner

    from neuroalign.cli import app
    from neuroalign.store import save_store

    _, mid = fsavg5
    store, value = blob_store(mid["left"][1234], half=4)
    rng = np.random.default_rng(0)
    store = from_arrays(rng.standard_normal((8, store.sizes["neuroid"])), list("abcdabcd"),
                        ijk=np.array([store[c].values for c in "ijk"]).T, affine=store.attrs["affine"],
                        volume_shape=store.attrs["volume_shape"], space="MNI152NLin2009cAsym",
                        rois={"blob": value > 2})
    save_store(store, tmp_path / "mni.zarr")
    sc = xr.DataArray(rng.uniform(0.2, 0.6, (3, store.sizes["neuroid"])), dims=("layer", "neuroid"),
                      coords={"layer": ["l1", "l2", "l3"], "neuroid_id": store["neuroid_id"]}, name="score")
    sc.to_netcdf(tmp_path / "scores.nc")
    out = tmp_path / "maps"
    res = CliRunner().invoke(app, ["map", str(tmp_path / "mni.zarr"), "--scores", str(tmp_path / "scores.nc"),
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    for stem in ("volume_best_depth", "volume_best_score", "surface_best_depth"):
        assert (out / f"{stem}.png").stat().st_size > 1000, stem
    assert "no surface map" not in res.output
