"""AttentionRoutingEncoder: learned queries route token features to each ROI (or voxel).

For each ROI (or each voxel, through learned voxel embeddings) a few learned queries
cross-attend over the tokens of a stimulus (patch features plus a learned positional
embedding); a per-voxel linear read-out of the routed vectors predicts the response, as in
the transformer brain encoder (Adeli et al.) and voxel-embedding encoders.
Because the attention depends on token content, a region can "look" at a different place in
every image. Trained with AdamW on MSE, early stopping on a validation fold of stimuli.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from sklearn.base import BaseEstimator, RegressorMixin

from neuroalign._config import resolve_device
from neuroalign._logging import get_logger
from neuroalign._sklearn import DEPRECATED, check_fitted, random_state_of
from neuroalign._validation import check_option, check_positive_int
from neuroalign.encoders import _routing_train
from neuroalign.encoders._data import valid_neuroids
from neuroalign.encoders._results import CV_KIND
from neuroalign.encoders._scoring import SCORERS, r2_score
from neuroalign.exceptions import DimensionError
from neuroalign.store import cv_folds
from neuroalign.store._join import match_stimuli

__all__ = ["AttentionRoutingEncoder"]

log = get_logger(__name__)


def _tokens(X) -> tuple[np.ndarray, xr.DataArray | None]:
    if isinstance(X, xr.Dataset):
        names = [n for n in X.data_vars if X[n].ndim == 3]
        if len(names) != 1:
            raise DimensionError(
                f"AttentionRoutingEncoder needs exactly one token-level variable (dims "
                f"('stimulus', 'token', unit)); found {names!r} in the features Dataset."
            )
        X = X[names[0]]
    if isinstance(X, xr.DataArray):
        if X.ndim != 3:
            raise DimensionError(
                f"Invalid dims for token features {X.name!r}: {X.dims!r}. Expected ('stimulus', "
                "'token', '<layer>_unit')."
            )
        return np.asarray(X.values, dtype=np.float32), X
    arr = np.asarray(X.detach().cpu() if hasattr(X, "detach") else X, dtype=np.float32)
    if arr.ndim != 3:
        raise DimensionError(
            f"Invalid shape for 'X': {arr.shape!r}. Expected 3 dims (stimuli, tokens, units)."
        )
    return arr, None


class AttentionRoutingEncoder(RegressorMixin, BaseEstimator):
    """Attention-routing encoder over token-level features.

    Parameters
    ----------
    n_queries_per_roi : int
        Learned queries per ROI (ignored with ``voxel_queries=True``).
    voxel_queries : bool
        One query per voxel (learned voxel embeddings) instead of per ROI.
    d_model, n_heads : int
        Width of the routed vectors and attention heads.
    rois : list of str or None
        ROIs (``roi_*`` coordinates of the responses) that get their own queries; by default
        every ROI in the store. Neuroids in none of them share one "unassigned" group.
    max_epochs, batch_size, lr, weight_decay, dropout : training settings (AdamW, MSE).
        With ``lr=1e-2`` the queries learn where the target is in 20 of 20 fits of the
        simulated routing ROI (4 simulations x 4-8 seeds); at ``3e-3`` they mostly settle on
        the uniform-attention (ridge-like) solution, and from ``2e-2`` training diverges.
    patience : int
        Early stopping: epochs without improvement of the validation score.
    val_fraction : float
        Fraction of the training stimuli held out for early stopping.
    device : str
    random_state : int
        Seed of the validation fold, the initialisation and the minibatch order.
    seed : int, deprecated
        Old name of ``random_state`` (``FutureWarning``).
    metric : {"pearson", "r2"}
        What :meth:`score` returns per neuroid.

    Attributes
    ----------
    groups_ : list of str
        Query groups (ROIs, plus ``"unassigned"`` when needed).
    history_ : list of float
        Validation mean Pearson r per epoch (the early-stopping criterion).
    cv_scores_ : ndarray, shape (n_neuroids,)
        Validation R² per neuroid at the kept epoch, on the held-out validation stimuli
        (one stimulus-grouped fold, ``val_fraction`` of the stimuli; the same fold chose
        the epoch, so this is mildly optimistic). NaN for excluded neuroids.
    valid_neuroids_ : ndarray of bool
    model_ : torch.nn.Module

    Notes
    -----
    With xarray inputs the rows are put in a canonical order (by ``stimulus_id``, then
    ``repetition`` when present) before training, so the fit does not depend on row order.
    """

    def __init__(
        self,
        n_queries_per_roi: int = 1,
        *,
        voxel_queries: bool = False,
        d_model: int = 64,
        n_heads: int = 1,
        rois: list[str] | None = None,
        max_epochs: int = 300,
        batch_size: int = 32,
        lr: float = 1e-2,
        weight_decay: float = 1e-3,
        dropout: float = 0.0,
        patience: int = 30,
        val_fraction: float = 0.15,
        metric: str = "pearson",
        device: str = "auto",
        random_state: int = 0,
        seed=DEPRECATED,
    ) -> None:
        self.n_queries_per_roi = n_queries_per_roi
        self.voxel_queries = voxel_queries
        self.d_model = d_model
        self.n_heads = n_heads
        self.rois = rois
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.patience = patience
        self.val_fraction = val_fraction
        self.metric = metric
        self.device = device
        self.random_state = random_state
        self.seed = seed

    # -- data --------------------------------------------------------------------------------
    def _align(self, X, Y, *, canonical: bool = False, func: str = "fit"):
        tokens, tok_da = _tokens(X)
        if isinstance(Y, xr.Dataset | xr.DataArray):
            resp = Y["responses"] if isinstance(Y, xr.Dataset) else Y
            if tok_da is None or "stimulus_id" not in tok_da.coords:
                raise TypeError(
                    "With xarray responses, X must be token features with a 'stimulus_id' "
                    "coordinate (joined exactly on stimulus_id)."
                )
            sdim = next(d for d in resp.dims if d != "neuroid")
            resp = resp.transpose(sdim, "neuroid")
            rows = match_stimuli(tok_da["stimulus_id"].values, resp["stimulus_id"].values,
                                 func=f"AttentionRoutingEncoder.{func}")
            if canonical:  # row order must not change the fit (minibatches, init)
                keys = [np.asarray(resp["stimulus_id"].values).astype(str)]
                if "repetition" in resp.coords and resp["repetition"].dims == (sdim,):
                    keys.insert(0, np.asarray(resp["repetition"].values))
                order = np.lexsort(keys)
                resp, rows = resp.isel({sdim: order}), rows[order]
            tmpl = resp.isel({sdim: 0}, drop=True)
            tmpl = tmpl.drop_vars([c for c in tmpl.coords if tmpl[c].dims != ("neuroid",)])
            return tokens[rows], np.asarray(resp.values, dtype=np.float32), \
                np.asarray(resp["stimulus_id"].values), tmpl
        Ym = np.asarray(Y, dtype=np.float32)
        if Ym.ndim != 2 or Ym.shape[0] != tokens.shape[0]:
            raise DimensionError(
                f"Invalid shape for 'Y': {Ym.shape!r}. Expected ({tokens.shape[0]}, n_neuroids) "
                "to match X."
            )
        return tokens, Ym, None, None

    def _group_mask(self, tmpl, n_out: int) -> tuple[list[str], np.ndarray]:
        if tmpl is None:
            return ["all"], np.ones((n_out, 1), np.float32)
        available = sorted(str(c)[4:] for c in tmpl.coords if str(c).startswith("roi_"))
        rois = available if self.rois is None else list(self.rois)
        unknown = [r for r in rois if r not in available]
        if unknown:
            raise ValueError(
                f"Invalid value for 'rois' in AttentionRoutingEncoder: {unknown!r} not in the "
                f"store's ROIs {available!r}."
            )
        cols = [np.asarray(tmpl[f"roi_{r}"].values, dtype=bool) for r in rois]
        mask = np.stack(cols, 1) if cols else np.zeros((n_out, 0), bool)
        groups = list(rois)
        if not mask.any(1).all():
            mask = np.concatenate([mask, ~mask.any(1, keepdims=True)], axis=1)
            groups.append("unassigned")
        return groups, mask.astype(np.float32)

    # -- API ----------------------------------------------------------------------------------
    def fit(self, X, Y, *, client=None, result_path=None, batch_size: int | None = None,
            cluster=None, cluster_options: dict | None = None):
        """Train on token features ``X`` (stimulus, token, unit) and responses ``Y``.

        The network's attention, projections and positional embedding are shared by every
        neuroid and early stopping watches the mean over all of them, so unlike
        :meth:`RidgeEncoder.fit <neuroalign.encoders.RidgeEncoder.fit>` this fit does not
        split into batches of neuroids (a batch trained alone would learn other shared
        weights). Its cells are chunks of epochs instead: each cell holds the whole training
        state after its last epoch and the next starts from it, restored exactly, so the
        result is the same for every ``batch_size`` and with or without cells, bit for bit:
        each cell trains with as many torch threads as this process has, whatever its
        worker's own setting (dask's worker processes run one each by default), unless the
        worker has fewer cores (float32 sums over another thread count differ in the last
        bits, as the plain fit itself does between 1 and 2 threads). The cells of
        one fit run one after the other (on a cluster, one worker at a time); they make the
        fit resumable: a rerun with the same ``result_path`` (after a kill, or of a grid of
        fits sharing the folder) starts from the latest cell there, and a finished fit is
        loaded without training.

        Parameters
        ----------
        X : xr.DataArray or ndarray, shape (n_stimuli, n_tokens, n_units)
            Token-level features (``extract(..., pooling=None)``).
        Y : xr.Dataset or array-like
            A store (joined on ``stimulus_id``) or responses ``(n_stimuli, n_neuroids)``.
        client : dask.distributed.Client, optional
            Run the cells on this client's workers.
        result_path : path-like, optional
            Folder of the cached cells (``result_path/cells/``), keyed by the token features,
            the responses, the ROI mask, the validation split, the parameters, the seed and
            the epoch reached. Default with ``cluster``/``client``: a temporary folder,
            removed once the fit succeeds. Slurm/PBS and scheduler addresses need it, on a
            folder the workers share.
        batch_size : int, optional
            Epochs per cell (default 50; the estimator's own ``batch_size`` is the
            minibatch of stimuli).
        cluster : None, "none", "local", "slurm", "pbs", scheduler address, Client or dict
            Where the cells run (:func:`neuroalign._scaleout.get_client`; a dict as a
            recipe's ``[cluster]`` table, which may also carry ``result_path`` and
            ``batch_size``).
        cluster_options : dict, optional
            Options of the cluster (as :meth:`RidgeEncoder.fit
            <neuroalign.encoders.RidgeEncoder.fit>`).

        Returns
        -------
        AttentionRoutingEncoder
            ``self``, fitted.
        """
        import torch

        func = "AttentionRoutingEncoder"
        check_positive_int(self.n_queries_per_roi, name="n_queries_per_roi", func=func)
        check_positive_int(self.max_epochs, name="max_epochs", func=func)
        check_positive_int(self.batch_size, name="batch_size", func=func)
        check_option(self.metric, tuple(SCORERS), name="metric", func=func)
        if self.d_model % self.n_heads:
            raise ValueError(
                f"Invalid value for 'n_heads' in {func}: {self.n_heads!r}. Expected a divisor of "
                f"d_model={self.d_model}."
            )
        if not 0 < self.val_fraction < 0.5:
            raise ValueError(
                f"Invalid value for 'val_fraction' in {func}: {self.val_fraction!r}. Expected 0 < "
                "val_fraction < 0.5."
            )
        device = resolve_device(self.device)
        seed = int(random_state_of(self, func=func))
        tokens, Ym, ids, tmpl = self._align(X, Y, canonical=True)
        ok = valid_neuroids(Ym, func=f"{func}.fit")
        Ym = np.where(ok, np.nan_to_num(Ym), 0.0).astype(np.float32)
        groups, mask = self._group_mask(tmpl, Ym.shape[1])
        n_val_splits = max(2, int(round(1 / self.val_fraction)))
        train, val = cv_folds(ids if ids is not None else np.arange(len(Ym)).astype(str),
                              n_val_splits, random_state=seed)[0]
        self.y_mean_ = Ym[train].mean(0)
        sd = Ym[train].std(0)
        self.y_sd_ = np.where(sd > 0, sd, 1.0)
        self.x_shape_ = tokens.shape[1:]
        spec = {"model": (tokens.shape[1], tokens.shape[2], len(groups), self.n_queries_per_roi,
                          self.d_model, self.n_heads, Ym.shape[1], self.voxel_queries,
                          self.dropout),
                "lr": self.lr, "weight_decay": self.weight_decay, "batch_size": self.batch_size,
                "patience": self.patience, "max_epochs": self.max_epochs, "seed": seed,
                "device": str(device),
                # the cells train with this process's torch threads (where the worker has
                # the cores), so that their float32 sums are the plain fit's, bit for bit
                "threads": torch.get_num_threads()}
        Yz = ((Ym - self.y_mean_) / self.y_sd_).astype(np.float32)
        arrays = (tokens, Yz, mask, ok, train, val)
        from neuroalign._scaleout import ScaleOut

        if ScaleOut(cluster=cluster, client=client, result_path=result_path).active:
            from neuroalign.encoders._scaleout import routing_cells

            state, _ = routing_cells(self, arrays, spec, client=client, cluster=cluster,
                                     cluster_options=cluster_options, result_path=result_path,
                                     batch_size=batch_size)
        else:
            state = _routing_train.train(_routing_train.new_state(spec),
                                         _routing_train.tensors(*arrays, device), spec,
                                         self.max_epochs)
        model, history, best = state.model, state.history, state.best
        model.load_state_dict(state.best_state)
        model.eval()
        Xt, M = torch.from_numpy(tokens).to(device), torch.from_numpy(mask).to(device)
        with torch.no_grad():
            pv = model(Xt[torch.as_tensor(val, device=device)], M).cpu().numpy()
        self.cv_scores_ = np.full(Ym.shape[1], np.nan)
        self.cv_scores_[ok] = r2_score(Yz[val][:, ok], pv[:, ok])
        self.model_ = model
        self.groups_ = groups
        self.group_mask_ = mask
        self.valid_neuroids_ = ok
        self.history_ = history
        self.best_val_score_ = best
        self._template = tmpl
        self._device = device
        log.info("attention routing: %d epochs, best validation r %.3f", len(history), best)
        return self

    def _check_fitted(self):
        check_fitted(self, "model_")

    def _forward_np(self, tokens: np.ndarray, fn: str):
        import torch

        if tokens.shape[1:] != tuple(self.x_shape_):
            raise DimensionError(
                f"X has (tokens, units) = {tokens.shape[1:]!r}; this encoder was fitted with "
                f"{tuple(self.x_shape_)!r}."
            )
        out = []
        M = torch.from_numpy(self.group_mask_).to(self._device)
        with torch.no_grad():
            for start in range(0, len(tokens), 256):
                xb = torch.from_numpy(tokens[start:start + 256]).to(self._device)
                if fn == "predict":
                    out.append(self.model_(xb, M).cpu().numpy())
                else:
                    out.append(self.model_.attention(xb)[0].mean(1).cpu().numpy())
        return np.concatenate(out)

    def predict(self, X):
        """Predicted responses.

        Parameters
        ----------
        X : xr.DataArray or ndarray, shape (n_stimuli, n_tokens, n_units)
            Token-level features (``extract(..., pooling=None)``).

        Returns
        -------
        ndarray (n_stimuli, n_neuroids) or xr.DataArray
            A DataArray ('stimulus', 'neuroid') for xarray token features.
        """
        self._check_fitted()
        tokens, tok_da = _tokens(X)
        pred = self._forward_np(tokens, "predict") * self.y_sd_ + self.y_mean_
        pred[:, ~self.valid_neuroids_] = np.nan
        if tok_da is None:
            return pred
        coords = {k: v for k, v in tok_da.coords.items() if v.dims == ("stimulus",)}
        out = xr.DataArray(pred, dims=("stimulus", "neuroid"), coords=coords, name="prediction")
        if self._template is not None:
            out = out.assign_coords({k: v for k, v in self._template.coords.items()})
        return out

    def score(self, X, Y, sample_weight=None):
        """Held-out score per neuroid (``metric``); NaN for excluded neuroids.

        Parameters
        ----------
        X : xr.DataArray or ndarray, shape (n_stimuli, n_tokens, n_units)
            Token-level features (``extract(..., pooling=None)``).
        Y : xr.Dataset or array-like
            Held-out responses (joined on ``stimulus_id``; the token features may cover
            more stimuli).
        sample_weight : None
            Not supported (scikit-learn's signature); must be None.

        Returns
        -------
        xr.DataArray or ndarray
            One score per neuroid: a DataArray on ``neuroid`` for xarray inputs.
        """
        self._check_fitted()
        if sample_weight is not None:
            raise ValueError("AttentionRoutingEncoder.score(): sample_weight is not supported; expected None.")
        from neuroalign.encoders._neuroid_scores import held_out_scores

        tokens, Ym, _, tmpl = self._align(X, Y, func="score")
        ok = self.valid_neuroids_
        if tmpl is None and Ym.shape[1] != len(ok):
            raise DimensionError(
                f"Y has {Ym.shape[1]} neuroids; this AttentionRoutingEncoder was fitted with {len(ok)}."
            )
        # NaN where undefined (never 0), each neuroid matched to its own fit on neuroid_id
        s = held_out_scores(Ym, np.asarray(self.predict(tokens)), ok, self.metric, tmpl,
                            func="AttentionRoutingEncoder.score", fit_coords=self._template)
        if tmpl is None:
            return s
        out = tmpl.copy(data=s).rename("score")
        out.attrs.update(metric=self.metric, kind="held-out")
        return out

    def to_dataset(self) -> xr.Dataset:
        """The fit's results in the schema of :func:`neuroalign.store.check_results`.

        Returns
        -------
        xr.Dataset
            One layer (the token features); ``score`` the validation R² (see
            ``cv_scores_``); ``alpha`` NaN (no ridge penalty is chosen); excluded neuroids
            left out.
        """
        from neuroalign.encoders._results import build_results, params_json

        self._check_fitted()
        return build_results(
            np.asarray(self.cv_scores_, dtype=np.float64)[None], layers=["tokens"],
            template=self._template, valid=self.valid_neuroids_, metric="r2", score_kind=CV_KIND,
            split="all", encoder=type(self).__name__, params=params_json(self),
            cv=f"one stimulus-grouped validation fold ({self.val_fraction:g} of the stimuli; "
               "also chose the epoch)",
        )

    def routing_maps(self, X) -> xr.DataArray:
        """Attention of each query group (ROI) over the tokens of each stimulus.

        Parameters
        ----------
        X : xr.DataArray or ndarray, shape (n_stimuli, n_tokens, n_units)
            Token-level features (``extract(..., pooling=None)``).

        Returns
        -------
        xr.DataArray
            Dims ('stimulus', 'roi', 'token'): weights sum to 1 over tokens; queries of one
            ROI are averaged; token coordinates of ``X`` (e.g. grid ``row``/``col``) are
            carried over. With ``voxel_queries=True`` the dim is 'neuroid'.
        """
        self._check_fitted()
        tokens, tok_da = _tokens(X)
        attn = self._forward_np(tokens, "maps")  # (B, Q, T)
        if self.voxel_queries:
            dims, qcoord = ("stimulus", "neuroid", "token"), {}
        else:
            attn = attn.reshape(attn.shape[0], len(self.groups_), self.n_queries_per_roi, -1).mean(2)
            dims, qcoord = ("stimulus", "roi", "token"), {"roi": self.groups_}
        coords = dict(qcoord)
        if tok_da is not None:
            sdim, tdim = tok_da.dims[0], tok_da.dims[1]
            coords.update({k: (("stimulus",) if v.dims == (sdim,) else ("token",), v.values)
                           for k, v in tok_da.coords.items() if v.dims in ((sdim,), (tdim,))})
        return xr.DataArray(attn, dims=dims, coords=coords, name="routing_map")
