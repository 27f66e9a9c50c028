"""Bring your own data from neuroimaging files: :func:`from_nifti` (nilearn) and
:func:`from_epochs` (MNE). Both read their input, then build the store with
:func:`~neuroalign.store.from_arrays`, so the checks are the same."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from neuroalign._logging import get_logger
from neuroalign._validation import format_list
from neuroalign.exceptions import DataFormatError
from neuroalign.store._builders import from_arrays, stimulus_ids_of

__all__ = ["from_nifti", "from_epochs", "read_events", "events_csv_options"]

log = get_logger(__name__)


# -- tables --------------------------------------------------------------------------------
def events_csv_options(columns: Sequence[str]) -> dict[str, Any]:
    """The :func:`pandas.read_csv` options of every events or metadata table neuroalign reads.

    Only ``n/a`` (BIDS's missing value) and empty cells are missing: a stimulus called
    ``"NA"``, ``"null"`` or ``"None"`` stays one. ``columns`` are read as text, so
    ``"0012"`` keeps its zeros and ``12`` is not turned into ``12.0`` by an ``n/a`` row.
    """
    return {"na_values": ["n/a", ""], "keep_default_na": False, "dtype": {c: str for c in columns}}


def read_events(events: Any, *, columns: Sequence[str], func: str):
    """A BIDS-style events table as a DataFrame, every value of ``columns`` read as text.

    A path ending in ``.tsv`` is tab-separated, ``.csv`` comma-separated; ``n/a`` and empty
    cells are missing (and only those: a stimulus called ``"NA"`` stays one).
    """
    import pandas as pd

    if isinstance(events, pd.DataFrame):
        df, where = events.reset_index(drop=True), "the events table"
        present = [c for c in columns if c in df.columns]
        df[present] = df[present].mask(df[present].isin(["n/a"]))  # BIDS's missing value
    else:
        path = Path(events)
        if not path.is_file():
            raise FileNotFoundError(f"Invalid value for 'events' in {func}(): {path}: no such file.")
        sep = "," if path.suffix.lower() == ".csv" else "\t"
        try:
            df = pd.read_csv(path, sep=sep, **events_csv_options(columns))
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as err:
            raise DataFormatError(
                f"{path}: cannot be read as a {'comma' if sep == ',' else 'tab'}-separated events "
                f"table ({type(err).__name__}: {str(err).strip()})."
            ) from err
        where = str(path)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataFormatError(
            f"{where}: no column(s) {format_list(missing)}. Columns present: "
            f"{format_list([str(c) for c in df.columns])}."
        )
    return df, where


def _split_column(df, column: str | None, test_values: Sequence[Any], where: str):
    if column is None:
        return None
    if column not in df.columns:
        raise DataFormatError(
            f"{where}: no column {column!r} (split_column). Columns present: "
            f"{format_list([str(c) for c in df.columns])}."
        )
    return np.where(df[column].astype(str).isin([str(v) for v in test_values]).to_numpy(), "test", "train")


def _bids_space(imgs: Any) -> str | None:
    first = imgs[0] if isinstance(imgs, list | tuple) and imgs else imgs
    if isinstance(first, str | os.PathLike):
        m = re.search(r"(?:^|_)space-([A-Za-z0-9]+)", Path(first).name)
        return m.group(1) if m else None
    return None


# -- NIfTI -----------------------------------------------------------------------------------
def _same_grid(a, b) -> bool:
    return a.shape[:3] == b.shape[:3] and np.allclose(a.affine, b.affine, atol=1e-4)


def _binary(arr: np.ndarray, what: str, func: str) -> np.ndarray:
    vals = np.unique(arr[np.isfinite(arr)]) if arr.dtype.kind == "f" else np.unique(arr)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all() or not np.isin(vals, [0, 1]).all():
        raise DataFormatError(
            f"Invalid value for {what} in {func}(): values {format_list(vals.tolist(), limit=6)}. "
            "Expected a binary mask (0/1 or bool); threshold it first, e.g. "
            "nilearn.image.math_img('img > 0', img=...)."
        )
    return arr.astype(bool)


def _resampled(img, target, what: str, func: str) -> np.ndarray:
    from nilearn import image

    try:
        img = image.load_img(img)
    except Exception as err:  # nilearn raises TypeError/ValueError/FileNotFoundError
        raise DataFormatError(f"Invalid value for {what} in {func}(): cannot load {img!r} ({err}).") from err
    if len(img.shape) == 4 and img.shape[3] == 1:
        img = image.index_img(img, 0)
    if len(img.shape) != 3:
        raise DataFormatError(f"Invalid value for {what} in {func}(): shape {img.shape!r}; expected a 3-d image.")
    if not _same_grid(img, target):
        img = image.resample_to_img(img, target, interpolation="nearest", force_resample=True,
                                    copy_header=True)
    return np.asarray(img.dataobj)


def _atlas_rois(atlases: Any, rois: Mapping[str, Any] | None, target, ijk: np.ndarray, func: str) -> dict:
    i, j, k = ijk.T
    out: dict[str, np.ndarray] = {}
    for name, img in (rois or {}).items():
        out[name] = _binary(_resampled(img, target, f"rois[{name!r}]", func), f"rois[{name!r}]", func)[i, j, k]
    if atlases is None:
        return out
    pairs = [atlases] if isinstance(atlases, tuple) and len(atlases) == 2 and isinstance(atlases[1], Mapping) \
        else list(atlases)
    for n, pair in enumerate(pairs):
        if not (isinstance(pair, tuple | list) and len(pair) == 2 and isinstance(pair[1], Mapping)):
            raise ValueError(
                f"Invalid value for 'atlases' in {func}(): entry {n} is {type(pair).__name__}. Expected "
                "(label image, {label: roi name}) or a list of such pairs."
            )
        img, labels = pair
        arr = _resampled(img, target, f"atlases[{n}]", func)
        if arr.dtype.kind == "f":
            if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
                raise DataFormatError(
                    f"Invalid value for atlases[{n}] in {func}(): non-integer labels. Expected an "
                    "image of integer labels."
                )
        present = set(np.unique(arr).astype(int).tolist())
        for label, name in labels.items():
            if int(label) not in present:
                raise DataFormatError(
                    f"Invalid value for atlases[{n}] in {func}(): label {label!r} ({name!r}) is not in "
                    f"the atlas. Labels present: {format_list(sorted(present), limit=10)}."
                )
            if name in out:
                raise ValueError(f"{func}(): ROI {name!r} is given twice (in 'rois' or 'atlases').")
            out[name] = arr[i, j, k] == int(label)
    for name, m in out.items():
        if not m.any():
            log.warning("%s: ROI %r has no voxel inside the mask", func, name)
    return out


def from_nifti(
    imgs: Any,
    events: Any,
    *,
    stimulus_column: str = "trial_type",
    mask: Any = None,
    mask_strategy: str = "background",
    rois: Mapping[str, Any] | None = None,
    atlases: Any = None,
    split_column: str | None = None,
    test_values: Sequence[Any] = ("test",),
    session_column: str | None = None,
    run_column: str | None = None,
    space: str | None = None,
    dtype: str = "float32",
    **kwargs: Any,
) -> xr.Dataset:
    """A store from per-trial volumes (GLM betas) and an events table naming each trial's stimulus.

    Parameters
    ----------
    imgs : path, NIfTI image, or list of them
        A 4-d image with one volume per trial (e.g. GLMsingle or nilearn first-level
        single-trial betas), or a list of 3-d images, one per trial.
    events : path or pandas.DataFrame
        One row per volume, in the order of the volumes (BIDS ``events.tsv``: tab-separated,
        ``n/a`` for missing; a ``.csv`` is comma-separated). Volumes whose stimulus is
        ``n/a`` are left out. ``onset``/``duration`` are kept as coordinates when present.
    stimulus_column : str
        Column naming each trial's stimulus (default BIDS ``trial_type``).
    mask : path or NIfTI image, optional
        Binary brain mask on the grid of ``imgs`` (it defines the neuroids); computed by
        :class:`nilearn.maskers.NiftiMasker` (``mask_strategy``) when not given.
    mask_strategy : str
        How nilearn computes the mask when ``mask`` is not given (``"background"``,
        ``"epi"``, ``"whole-brain-template"``, ...).
    rois : mapping {name: binary mask image}, optional
    atlases : (label image, {label: name}) or a list of such pairs, optional
        ROI images are resampled to the mask's grid with nearest-neighbour interpolation.
    split_column, test_values :
        Rows whose ``split_column`` is in ``test_values`` form the test split (alternatively
        ``split=``/``test=``, as in :func:`from_arrays`).
    session_column, run_column : str, optional
        Integer columns of ``events``.
    space : str, optional
        Default: the BIDS ``space-<label>`` of the image's file name, else ``"volume"``.
    dtype : str
        Of the responses.
    **kwargs :
        Passed to :func:`from_arrays` (``split``, ``test``, ``subject``, ``dataset``,
        ``units``, ``images``, ...).

    Returns
    -------
    xr.Dataset
        Store with voxel indices ``i, j, k`` in the images' grid, ``affine`` and
        ``volume_shape`` attrs. NaN voxels stay NaN (nilearn's maskers would make them 0).
    """
    import nibabel as nib
    from nilearn import image, masking
    from nilearn.maskers import NiftiMasker

    func = "from_nifti"
    try:
        data_img = image.concat_imgs(imgs) if isinstance(imgs, list | tuple) else image.load_img(imgs)
    except Exception as err:  # nilearn raises several types for bad input
        raise DataFormatError(f"Invalid value for 'imgs' in {func}(): cannot load the images ({err}).") from err
    if len(data_img.shape) != 4:
        raise DataFormatError(
            f"Invalid value for 'imgs' in {func}(): a {len(data_img.shape)}-d image of shape "
            f"{data_img.shape!r}. Expected a 4-d image (one volume per trial) or a list of 3-d images."
        )
    n_vol = data_img.shape[3]
    cols = [stimulus_column, *[c for c in (session_column, run_column, split_column) if c]]
    df, where = read_events(events, columns=cols, func=func)
    if len(df) != n_vol:
        raise DataFormatError(
            f"{where}: {len(df)} rows, but 'imgs' has {n_vol} volumes. Expected one row per volume, "
            "in the order of the volumes."
        )
    ids, keep = stimulus_ids_of(df[stimulus_column].to_numpy(), name=stimulus_column, func=func,
                                drop_missing=True)
    if not keep.any():
        raise DataFormatError(f"{where}: every row of {stimulus_column!r} is n/a; no trial has a stimulus.")
    if not keep.all():
        log.info("%s: leaving out %d volume(s) whose %r is n/a", func, int((~keep).sum()), stimulus_column)
    if mask is None:
        masker = NiftiMasker(mask_strategy=mask_strategy, standardize=None).fit(data_img)
        mask_img = masker.mask_img_
    else:
        try:
            mask_img = image.load_img(mask)
        except Exception as err:
            raise DataFormatError(f"Invalid value for 'mask' in {func}(): cannot load {mask!r} ({err}).") from err
        if not _same_grid(mask_img, data_img):
            raise DataFormatError(
                f"Invalid value for 'mask' in {func}(): its grid (shape {mask_img.shape[:3]!r}, affine "
                f"{np.round(mask_img.affine, 3).tolist()!r}) differs from the images' (shape "
                f"{data_img.shape[:3]!r}, affine {np.round(data_img.affine, 3).tolist()!r}). Expected a "
                "mask on the grid of the betas; resample one of them first."
            )
    mvol = _binary(np.asarray(mask_img.dataobj), "'mask'", func)
    if not mvol.any():
        raise DataFormatError(f"Invalid value for 'mask' in {func}(): no voxel is in the mask.")
    mask_img = nib.Nifti1Image(mvol.astype(np.uint8), data_img.affine)
    ijk = np.argwhere(mvol)  # C order, as nilearn's maskers order voxels
    values = masking.apply_mask(data_img, mask_img, ensure_finite=False)  # keeps NaN as NaN
    roi_masks = _atlas_rois(atlases, rois, mask_img, ijk, func)
    rows = np.flatnonzero(keep)
    timing: dict[str, Any] = {"trial": rows}
    for name, col in (("session", session_column), ("run", run_column)):
        if col:
            timing[name] = df[col].to_numpy()[rows]
    split = _split_column(df, split_column, test_values, where)
    if split is not None:
        if "split" in kwargs or "test" in kwargs:
            raise ValueError(f"{func}(): pass one of 'split_column', 'split' or 'test'.")
        kwargs["split"] = split[rows]
    if space is None:
        space = _bids_space(imgs) or "volume"
    files = [str(Path(p).resolve()) for p in (imgs if isinstance(imgs, list | tuple) else [imgs])
             if isinstance(p, str | os.PathLike)]
    source = {"images": files, "events": where, "stimulus_column": stimulus_column}
    if isinstance(mask, str | os.PathLike):
        source["mask"] = str(Path(mask).resolve())
    store = from_arrays(
        values[rows].astype(dtype, copy=False), ids, **timing, ijk=ijk, affine=data_img.affine,
        volume_shape=data_img.shape[:3], rois=roi_masks, space=space,
        attrs={"source": source, **kwargs.pop("attrs", {})}, _func=func, **kwargs,
    )
    for col in ("onset", "duration"):
        if col in df.columns:
            num = np.asarray(df[col].to_numpy()[rows], dtype=float)
            store = store.assign_coords({col: ("presentation", num)})
    return store


# -- MNE epochs ------------------------------------------------------------------------------
def _units(epochs) -> list[str]:
    from mne.io.constants import FIFF

    names = {FIFF.FIFF_UNIT_T: "T", FIFF.FIFF_UNIT_T_M: "T/m", FIFF.FIFF_UNIT_V: "V",
             FIFF.FIFF_UNIT_MOL: "M", FIFF.FIFF_UNIT_AM: "Am", FIFF.FIFF_UNIT_NONE: "a.u."}
    return [names.get(int(ch["unit"]), f"FIFF unit {int(ch['unit'])}") for ch in epochs.info["chs"]]


def from_epochs(
    epochs: Any,
    stimulus_column: str,
    *,
    picks: Any = "data",
    allow_mixed: bool = False,
    split_column: str | None = None,
    test_values: Sequence[Any] = ("test",),
    session_column: str | None = None,
    run_column: str | None = None,
    dtype: str = "float32",
    **kwargs: Any,
) -> xr.Dataset:
    """A store from MNE epochs whose metadata name each epoch's stimulus.

    Parameters
    ----------
    epochs : mne.Epochs or path
        The epochs, or a ``*-epo.fif`` file (read with :func:`mne.read_epochs`).
    stimulus_column : str
        Column of ``epochs.metadata`` with each epoch's stimulus id; epochs where it is
        missing are left out.
    picks : str, list
        Channels (:meth:`mne.Epochs.pick`; default the data channels). Channels marked bad
        in ``epochs.info['bads']`` are always left out, as
        :func:`~neuroalign.datasets.load_mne_epochs` leaves them out.
    allow_mixed : bool
        Channels of different units (MEG magnetometers in T, gradiometers in T/m, EEG in
        V) are refused unless ``allow_mixed``: then ``units`` is ``"mixed"`` and each sensor
        carries its own in ``sensor_units``.
    split_column, test_values, session_column, run_column :
        Metadata columns, as in :func:`from_nifti`.
    dtype : str
        Of the responses (MNE returns SI units: T, T/m, V).
    **kwargs :
        Passed to :func:`from_arrays` (``split``, ``test``, ``subject``, ``dataset``, ...).

    Returns
    -------
    xr.Dataset
        Store with ``responses`` on ``('presentation', 'neuroid', 'time')``, ``time`` from
        ``epochs.times``, one neuroid per sensor (``sensor``, ``sensor_type``).
    """
    import mne

    func = "from_epochs"
    if isinstance(epochs, str | os.PathLike):
        path = Path(epochs)
        if not path.is_file():
            raise FileNotFoundError(f"Invalid value for 'epochs' in {func}(): {path}: no such file.")
        try:
            epochs = mne.read_epochs(path, preload=True, verbose="error")
        except Exception as err:  # mne raises many types for a damaged file
            raise DataFormatError(f"{path}: cannot be read as MNE epochs ({type(err).__name__}: {err}).") from err
        where = str(path)
    elif isinstance(epochs, mne.BaseEpochs):
        where = "epochs.metadata"
    else:
        raise TypeError(
            f"Invalid value for 'epochs' in {func}(): {type(epochs).__name__}. Expected mne.Epochs "
            "or the path of a *-epo.fif file."
        )
    md = epochs.metadata
    if md is None:
        raise DataFormatError(
            f"{where}: the epochs have no metadata. Expected epochs.metadata with a column "
            f"{stimulus_column!r} naming each epoch's stimulus."
        )
    md = md.reset_index(drop=True)
    for col in (stimulus_column, session_column, run_column, split_column):
        if col and col not in md.columns:
            raise DataFormatError(
                f"{where}: no column {col!r}. Columns present: {format_list([str(c) for c in md.columns])}."
            )
    ids, keep = stimulus_ids_of(md[stimulus_column].to_numpy(), name=stimulus_column, func=func,
                                drop_missing=True)
    if not keep.any():
        raise DataFormatError(f"{where}: every value of {stimulus_column!r} is missing; no epoch has a stimulus.")
    if not keep.all():
        log.info("%s: leaving out %d epoch(s) with no %r", func, int((~keep).sum()), stimulus_column)
    try:
        picked = epochs.copy().pick(picks, exclude="bads")
    except ValueError as err:
        raise ValueError(f"Invalid value for 'picks' in {func}(): {picks!r} ({err}).") from err
    units = _units(picked)
    kinds = sorted(set(units))
    types = np.array(picked.get_channel_types())
    if len(kinds) > 1 and not allow_mixed:
        by_unit = {u: sorted(set(types[np.array(units) == u].tolist())) for u in kinds}
        raise DataFormatError(
            f"Invalid value for 'picks' in {func}(): the channels mix units "
            + ", ".join(f"{u} ({'/'.join(t)})" for u, t in by_unit.items())
            + ". Pick one kind (e.g. picks='mag', 'grad' or 'eeg') or pass allow_mixed=True."
        )
    rows = np.flatnonzero(keep)
    data = picked.get_data()[rows].astype(dtype, copy=False)
    timing: dict[str, Any] = {}
    for name, col in (("session", session_column), ("run", run_column)):
        if col:
            timing[name] = md[col].to_numpy()[rows]
    split = _split_column(md, split_column, test_values, where)
    if split is not None:
        if "split" in kwargs or "test" in kwargs:
            raise ValueError(f"{func}(): pass one of 'split_column', 'split' or 'test'.")
        kwargs["split"] = split[rows]
    attrs = {"sfreq": float(picked.info["sfreq"]), **kwargs.pop("attrs", {})}
    if isinstance(where, str) and where != "epochs.metadata":
        attrs["source"] = {"files": [str(Path(where).resolve())], "stimulus_column": stimulus_column}
    store = from_arrays(
        data, ids, **timing, sensors=picked.ch_names, times=picked.times,
        units=kinds[0] if len(kinds) == 1 else "mixed", space=kwargs.pop("space", "sensor"),
        attrs=attrs, _func=func, **kwargs,
    )
    extra = {"epoch": ("presentation", rows.astype(np.int64)),
             "sensor_type": ("neuroid", types.astype(str))}
    if len(kinds) > 1:
        extra["sensor_units"] = ("neuroid", np.array(units, dtype=str))
    return store.assign_coords(extra)
