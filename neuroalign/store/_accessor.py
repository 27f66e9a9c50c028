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

    Parameters
    ----------
    ds : xr.Dataset
        The store (xarray passes it when ``ds.na`` is first used).
    """

    def __init__(self, ds: xr.Dataset) -> None:
        self._ds = ds

    def check(self) -> xr.Dataset:
        """Validate against the schema (:func:`neuroalign.store.check_store`).

        Returns
        -------
        xr.Dataset
            The store, when valid.
        """
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
        """One row per ``stimulus_id`` (see :func:`neuroalign.store.average_repetitions`).

        Returns
        -------
        xr.Dataset
            The averaged store (dim ``stimulus``).
        """
        return _ops.average_repetitions(self._ds)

    def roi(self, name: str | list[str]) -> xr.Dataset:
        """Neuroids of ROI ``name`` (a list gives the union).

        Parameters
        ----------
        name : str or list of str
            As :func:`neuroalign.store.select_roi`.

        Returns
        -------
        xr.Dataset
            The store restricted to those neuroids.
        """
        return _ops.select_roi(self._ds, name)

    def split(self, split: str) -> xr.Dataset:
        """Presentations (or stimuli) of ``"train"`` or ``"test"``.

        Parameters
        ----------
        split : {"train", "test"}
            The split.

        Returns
        -------
        xr.Dataset
            The store restricted to that split (see :func:`neuroalign.store.select_split`).
        """
        return _ops.select_split(self._ds, split)

    def zscore(
        self, by: str | None = "session", *, ddof: int = 0, strict: bool = False
    ) -> xr.Dataset:
        """Z-score each neuroid within each ``by`` group (NSD: per session); ``ddof=0``
        (scipy's convention) by default.

        Parameters
        ----------
        by, ddof, strict
            As :func:`neuroalign.store.zscore`.

        Returns
        -------
        xr.Dataset
            The z-scored store.
        """
        return _ops.zscore(self._ds, by=by, ddof=ddof, strict=strict)

    def ncsnr(
        self, by: str | None = "session", *, ddof: int = 1, strict: bool = False
    ) -> xr.DataArray:
        """NSD ncsnr per neuroid, z-scoring with the sample sd (``ddof=1``) as NSD does
        (see :func:`neuroalign.store.ncsnr`).

        Parameters
        ----------
        by, ddof, strict
            As :func:`neuroalign.store.ncsnr`.

        Returns
        -------
        xr.DataArray
            ncsnr on ``neuroid``.
        """
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
        """Noise ceiling in percent (see :func:`neuroalign.store.noise_ceiling`).

        Parameters
        ----------
        n, split, by, ddof, strict
            As :func:`neuroalign.store.noise_ceiling`.

        Returns
        -------
        xr.DataArray
            Percent of explainable variance on ``neuroid`` (a ceiling on R²).
        """
        return _reliability.noise_ceiling(
            self._ds, n, split=split, by=by, ddof=ddof, strict=strict
        )

    def split_half(self, *, n_splits: int = 10, seed=0, strict: bool = False) -> xr.DataArray:
        """Split-half reliability, Spearman-Brown corrected.

        Parameters
        ----------
        n_splits, seed, strict
            As :func:`neuroalign.store.split_half`.

        Returns
        -------
        xr.DataArray
            Reliability per neuroid (and time point).
        """
        return _split_half.split_half(self._ds, n_splits=n_splits, seed=seed, strict=strict)

    def cv_folds(self, n_splits: int = 5, *, shuffle: bool = True, random_state: int | None = 0):
        """Stimulus-grouped folds.

        Parameters
        ----------
        n_splits, shuffle, random_state
            As :func:`neuroalign.store.cv_folds`.

        Returns
        -------
        list of (ndarray, ndarray)
            ``(train, test)`` row indices of each fold.
        """
        return cv_folds(self._ds, n_splits, shuffle=shuffle, random_state=random_state)
