"""The ``ds.na`` accessor: domain helpers on plain xarray stores."""

from __future__ import annotations

import xarray as xr

from neuroalign.store import _ops, _reliability
from neuroalign.store._folds import cv_folds
from neuroalign.store._schema import check_store, is_trial_level

__all__ = ["StoreAccessor"]


@xr.register_dataset_accessor("na")
class StoreAccessor:
    """neuroalign helpers on a store: ``ds.na.average_repetitions()``, ``ds.na.roi("V1v")``...

    Every method returns a new object; the store is never modified.
    """

    def __init__(self, ds: xr.Dataset) -> None:
        self._ds = ds

    def check(self) -> xr.Dataset:
        """Validate against the schema (:func:`neuroalign.store.check_store`)."""
        return check_store(self._ds)

    @property
    def rois(self) -> list[str]:
        """ROI names (the ``roi_*`` coordinates without their prefix)."""
        return _ops.roi_names(self._ds)

    @property
    def is_trial_level(self) -> bool:
        """True for one row per presentation, False after repetition averaging."""
        return is_trial_level(self._ds)

    def average_repetitions(self) -> xr.Dataset:
        """One row per ``stimulus_id`` (see :func:`neuroalign.store.average_repetitions`)."""
        return _ops.average_repetitions(self._ds)

    def roi(self, name: str | list[str]) -> xr.Dataset:
        """Neuroids of ROI ``name`` (a list gives the union)."""
        return _ops.select_roi(self._ds, name)

    def split(self, split: str) -> xr.Dataset:
        """Presentations (or stimuli) of ``"train"`` or ``"test"``."""
        return _ops.select_split(self._ds, split)

    def zscore(self, by: str | None = "session") -> xr.Dataset:
        """Z-score each neuroid within each ``by`` group (NSD: per session)."""
        return _ops.zscore(self._ds, by=by)

    def ncsnr(self, by: str | None = "session") -> xr.DataArray:
        """NSD ncsnr per neuroid (see :func:`neuroalign.store.ncsnr`)."""
        return _reliability.ncsnr(self._ds, by=by)

    def noise_ceiling(self, n=None, *, split: str | None = "test") -> xr.DataArray:
        """Noise ceiling in percent (see :func:`neuroalign.store.noise_ceiling`)."""
        return _reliability.noise_ceiling(self._ds, n, split=split)

    def cv_folds(self, n_splits: int = 5, *, shuffle: bool = True, seed: int | None = 0):
        """Stimulus-grouped folds (see :func:`neuroalign.store.cv_folds`)."""
        return cv_folds(self._ds, n_splits, shuffle=shuffle, seed=seed)
