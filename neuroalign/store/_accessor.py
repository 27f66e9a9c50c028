"""The ``ds.na`` accessor: domain helpers on plain xarray stores."""

from __future__ import annotations

import xarray as xr

from neuroalign.store import _ops, _reliability, _split_half
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

    def zscore(
        self, by: str | None = "session", *, ddof: int = 0, strict: bool = False
    ) -> xr.Dataset:
        """Z-score each neuroid within each ``by`` group (NSD: per session); ``ddof=0``
        (scipy's convention) by default (see :func:`neuroalign.store.zscore`)."""
        return _ops.zscore(self._ds, by=by, ddof=ddof, strict=strict)

    def ncsnr(
        self, by: str | None = "session", *, ddof: int = 1, strict: bool = False
    ) -> xr.DataArray:
        """NSD ncsnr per neuroid, z-scoring with the sample sd (``ddof=1``) as NSD does
        (see :func:`neuroalign.store.ncsnr`)."""
        return _reliability.ncsnr(self._ds, by=by, ddof=ddof, strict=strict)

    def noise_ceiling(
        self,
        n=None,
        *,
        split: str | None = "test",
        by: str | None = "session",
        ddof: int = 1,
        strict: bool = False,
    ) -> xr.DataArray:
        """Noise ceiling in percent (see :func:`neuroalign.store.noise_ceiling`)."""
        return _reliability.noise_ceiling(
            self._ds, n, split=split, by=by, ddof=ddof, strict=strict
        )

    def split_half(self, *, n_splits: int = 10, seed=0, strict: bool = False) -> xr.DataArray:
        """Split-half reliability, Spearman-Brown corrected (see
        :func:`neuroalign.store.split_half`)."""
        return _split_half.split_half(self._ds, n_splits=n_splits, seed=seed, strict=strict)

    def cv_folds(self, n_splits: int = 5, *, shuffle: bool = True, random_state: int | None = 0):
        """Stimulus-grouped folds (see :func:`neuroalign.store.cv_folds`)."""
        return cv_folds(self._ds, n_splits, shuffle=shuffle, random_state=random_state)
