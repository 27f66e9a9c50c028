"""Brain -> embedding decoders (ridge or MLP with InfoNCE + MSE) and retrieval."""

from __future__ import annotations

from typing import Literal

import numpy as np
import xarray as xr
from sklearn.base import BaseEstimator

from neuroalign._config import resolve_device
from neuroalign._logging import get_logger, progress
from neuroalign._preflight import check_decoder
from neuroalign._sklearn import DEPRECATED, check_fitted, random_state_of
from neuroalign._validation import UNSET, check_option, format_list, renamed
from neuroalign.exceptions import DimensionError

__all__ = ["EmbeddingDecoder", "brain_matrix", "target_matrix", "retrieve"]

log = get_logger(__name__)
KINDS = ("ridge", "mlp")


def brain_matrix(store: xr.Dataset, window: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(n_samples, n_features)`` brain matrix and the stimulus id of each row.

    fMRI stores give ``presentation|stimulus x neuroid``; MEG/EEG stores are cut to the
    time ``window`` (seconds, inclusive) and flattened to ``neuroid x time`` per row.

    Parameters
    ----------
    store : xr.Dataset
        A store.
    window : (float, float), optional
        MEG/EEG: the time window kept (default: all time points).

    Returns
    -------
    X : ndarray, shape (n_samples, n_features)
        One row per presentation (or stimulus).
    stimulus_ids : ndarray of str
        The stimulus of each row.
    """
    from neuroalign.store import check_store, sample_dim

    check_store(store)
    dim = sample_dim(store)
    resp = store["responses"]
    if "time" in resp.dims:
        if window is not None:
            t = np.asarray(store.coords["time"].values, dtype=float)
            keep = (t >= window[0]) & (t <= window[1])
            if not keep.any():
                raise DimensionError(
                    f"Invalid value for 'window': {tuple(window)!r}. No time point of the store "
                    f"({t.min():.3f} .. {t.max():.3f} s) falls inside it."
                )
            resp = resp.isel(time=np.flatnonzero(keep))
        resp = resp.transpose(dim, "neuroid", "time")
    else:
        resp = resp.transpose(dim, "neuroid")
    X = np.asarray(resp.values, dtype=np.float64).reshape(resp.shape[0], -1)
    return X, np.asarray(store.coords["stimulus_id"].values).astype(str)


def target_matrix(target, variable: str | None = None) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], tuple[int, ...]]:
    """The target embeddings as ``(n_stimuli, D)``, their stimulus ids, dims and trailing shape.

    ``target`` is a features Dataset (one variable per layer on ``("stimulus", ...)``, pick
    one with ``variable``) or a DataArray on ``("stimulus", ...)`` with ``stimulus_id``;
    token embeddings ``("stimulus", "token", unit)`` are flattened and restored on predict.

    Parameters
    ----------
    target : xr.Dataset or xr.DataArray
        The embeddings.
    variable : str, optional
        The variable of a Dataset with several.

    Returns
    -------
    T : ndarray, shape (n_stimuli, D)
        The flattened embeddings.
    stimulus_ids : ndarray of str
        The stimulus of each row.
    dims : tuple of str
        The embedding's dims after ``stimulus``.
    shape : tuple of int
        Their sizes (to restore the shape of predictions).
    """
    if isinstance(target, xr.Dataset):
        names = [str(v) for v in target.data_vars]
        if variable is None:
            if len(names) != 1:
                raise ValueError(
                    f"The target features hold {len(names)} variables ({format_list(names)}); "
                    "pass target=<name> to EmbeddingDecoder to choose one."
                )
            variable = names[0]
        if variable not in names:
            raise KeyError(
                f"Invalid value for 'target' in EmbeddingDecoder: {variable!r}. The features "
                f"hold {format_list(names)}."
            )
        target = target[variable]
    if not isinstance(target, xr.DataArray) or "stimulus" not in target.dims:
        raise DimensionError(
            "EmbeddingDecoder.fit(): 'features' must be a features Dataset or a DataArray with "
            f"dim 'stimulus' and coordinate 'stimulus_id'; got {type(target).__name__}"
            + (f" with dims {target.dims!r}." if hasattr(target, "dims") else ".")
        )
    if "stimulus_id" not in target.coords:
        raise DimensionError("EmbeddingDecoder.fit(): the target has no 'stimulus_id' coordinate.")
    da = target.transpose("stimulus", ...)
    dims = tuple(str(d) for d in da.dims[1:])
    shape = tuple(da.shape[1:])
    return (np.asarray(da.values, dtype=np.float64).reshape(da.shape[0], -1),
            np.asarray(da.coords["stimulus_id"].values).astype(str), dims, shape)


def _align(ids: np.ndarray, target_ids: np.ndarray) -> np.ndarray:
    """Row of the target embeddings for each stimulus of the store (the one join on
    ``stimulus_id``: order free, extra targets fine, missing or repeated ones named)."""
    from neuroalign.store._join import match_stimuli

    return match_stimuli(target_ids, ids, have_name="the target embeddings", want_name="the store",
                         func="EmbeddingDecoder")


def retrieve(predicted, candidates, *, k: int = 1) -> np.ndarray:
    """Indices of the ``k`` candidates most cosine-similar to each predicted embedding.

    Parameters
    ----------
    predicted : array-like (N, ...)
        Predicted embeddings (flattened after the first axis).
    candidates : array-like (M, ...)
        Candidate embeddings, same trailing shape.
    k : int
        Candidates returned per prediction.

    Returns
    -------
    ndarray of int, shape (N, k), best first.
    """
    p = np.asarray(predicted, dtype=np.float64).reshape(len(predicted), -1)
    c = np.asarray(candidates, dtype=np.float64).reshape(len(candidates), -1)
    if p.shape[1] != c.shape[1]:
        raise DimensionError(
            f"retrieve(): predicted embeddings have {p.shape[1]} values and candidates "
            f"{c.shape[1]}; expected the same embedding size."
        )
    p /= np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
    c /= np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
    return np.argsort(-(p @ c.T), axis=1, kind="stable")[:, :k]


class EmbeddingDecoder(BaseEstimator):
    """Map brain responses to a target embedding (CLIP image embeddings, CLIP tokens, any
    features), then retrieve or reconstruct images from it.

    Parameters
    ----------
    kind : {"ridge", "mlp"}
        Closed-form ridge with the penalty chosen by stimulus-grouped cross-validation
        (:func:`neuroalign.store.cv_folds`), or an MLP trained with symmetric InfoNCE plus MSE
        (MindEye-style).
    target : str, optional
        Variable of the features Dataset to decode (e.g. ``"clip_image"``); needed only when
        it holds several.
    alphas : sequence of float
        Ridge penalties tried (on z-scored brain features).
    cv : int
        Folds for the ridge penalty.
    window : (float, float), optional
        MEG/EEG: time window (s) of the responses used.
    hidden : int
        MLP hidden width.
    epochs, lr, batch_size, weight_decay : training settings of the MLP.
    temperature : float
        InfoNCE temperature.
    mse_weight : float
        Weight of the MSE term (the InfoNCE term has weight 1).
    average : bool
        Average repetitions of the training store first (trial-level stores).
    random_state : int
        Seed of the ridge's folds and of the MLP's initialisation and minibatches.
    device : str
    seed : int, deprecated
        Old name of ``random_state`` (``FutureWarning``).

    Attributes
    ----------
    coef_ : ndarray (n_brain_features, n_embedding_dims)
        Ridge weights on the z-scored brain features (``kind="ridge"``), in the one
        orientation of every neuroalign estimator, ``(n_features, n_targets)``.
    intercept_ : ndarray (n_embedding_dims,)
    alpha_ : float
        The penalty, shared by every embedding dimension: the one of ``alphas`` with the
        least cross-validated mean squared error, averaged over folds and dimensions (as
        scikit-learn's ``RidgeCV(cv=folds, scoring="neg_mean_squared_error")``).
    cv_errors_ : ndarray (n_alphas,)
        That error for each alpha (when several were given).

    Examples
    --------
    >>> import numpy as np
    >>> import xarray as xr
    >>> from neuroalign.decoders import EmbeddingDecoder
    >>> from neuroalign.store import from_arrays
    >>> rng = np.random.default_rng(0)
    >>> ids = np.array([f"s{i:02d}" for i in range(80)])
    >>> embedding = rng.standard_normal((80, 3))
    >>> betas = embedding @ rng.standard_normal((3, 20)) + 0.1 * rng.standard_normal((80, 20))
    >>> store = from_arrays(betas, ids, test=ids[:10])
    >>> target = xr.DataArray(embedding, dims=("stimulus", "dim"),
    ...                       coords={"stimulus_id": ("stimulus", ids)})
    >>> decoder = EmbeddingDecoder("ridge").fit(store.na.split("train"), target)
    >>> predicted = decoder.predict(store.na.split("test"))
    >>> predicted.shape
    (10, 3)
    >>> bool(np.corrcoef(np.asarray(predicted).ravel(), embedding[:10].ravel())[0, 1] > 0.9)
    True
    """

    def __init__(
        self,
        kind: Literal["ridge", "mlp"] = "ridge",
        *,
        target: str | None = None,
        alphas=(0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5),
        cv: int = 5,
        window: tuple[float, float] | None = None,
        hidden: int = 512,
        epochs: int = 200,
        lr: float = 1e-3,
        batch_size: int = 64,
        weight_decay: float = 1e-2,
        temperature: float = 0.05,
        mse_weight: float = 1.0,
        average: bool = False,
        random_state: int = 0,
        device: str = "auto",
        seed=DEPRECATED,
    ) -> None:
        self.kind = kind
        self.target = target
        self.alphas = alphas
        self.cv = cv
        self.window = window
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.temperature = temperature
        self.mse_weight = mse_weight
        self.average = average
        self.random_state = random_state
        self.device = device
        self.seed = seed

    # ------------------------------------------------------------------ fit
    def fit(self, store: xr.Dataset, features) -> EmbeddingDecoder:
        """Fit on a store and the target embeddings of its stimuli (joined on ``stimulus_id``).

        Parameters
        ----------
        store : xr.Dataset
            Store (trial-level or averaged; fMRI or MEG/EEG). Use its train split.
        features : xr.Dataset or xr.DataArray
            Target embeddings on dim ``stimulus`` with ``stimulus_id``.

        Returns
        -------
        EmbeddingDecoder
            ``self``, fitted.
        """
        from neuroalign.store import is_trial_level

        check_option(self.kind, KINDS, name="kind", func="EmbeddingDecoder")
        self._seed = int(random_state_of(self, func="EmbeddingDecoder"))
        if self.average and is_trial_level(store):
            store = store.na.average_repetitions()
        X, ids = brain_matrix(store, self.window)
        T, tids, dims, shape = target_matrix(features, self.target)
        if self.kind == "ridge":  # memory preflight
            check_decoder(*X.shape, int(np.prod(T.shape[1:])), func="EmbeddingDecoder.fit",
                          n_alphas=np.size(self.alphas), n_folds=int(self.cv), copy=False)
        Y = T[_align(ids, tids)]
        self.target_dims_, self.target_shape_ = dims, shape
        self.n_features_in_ = X.shape[1]
        self.x_mean_ = X.mean(0)
        sd = X.std(0)
        self.x_scale_ = np.where(sd > 0, sd, 1.0)
        Z = (X - self.x_mean_) / self.x_scale_
        if self.kind == "ridge":
            self._fit_ridge(Z, Y, ids)
        else:
            self._fit_mlp(Z, Y)
        return self

    def _fit_ridge(self, Z: np.ndarray, Y: np.ndarray, ids: np.ndarray) -> None:
        from neuroalign.encoders._solvers import ridge_cv, ridge_refit
        from neuroalign.store import cv_folds

        alphas = np.atleast_1d(np.asarray(self.alphas, dtype=float))
        if alphas.size == 0 or (alphas <= 0).any():
            raise ValueError(
                f"Invalid value for 'alphas' in EmbeddingDecoder: {tuple(self.alphas)!r}. "
                "Expected positive penalties."
            )
        if len(alphas) > 1:
            folds = cv_folds(ids, self.cv, random_state=self._seed)
            res = ridge_cv(Z, Y, alphas, folds, relative_alphas=False, dtype=np.float64)
            self.cv_errors_ = res.cv_mse.mean(1)  # one alpha for every embedding dimension
            self.alpha_ = float(alphas[int(np.argmin(self.cv_errors_))])
        else:
            self.alpha_ = float(alphas[0])
        self.coef_, self.intercept_ = ridge_refit(Z, Y, self.alpha_, relative_alphas=False,
                                                  dtype=np.float64)
        log.info("EmbeddingDecoder ridge: alpha=%g", self.alpha_)

    def _fit_mlp(self, Z: np.ndarray, Y: np.ndarray) -> None:
        import torch
        import torch.nn.functional as F

        device = resolve_device(self.device)
        g = torch.Generator().manual_seed(int(self._seed))
        torch.manual_seed(int(self._seed))
        d_in, d_out = Z.shape[1], Y.shape[1]
        self.y_mean_ = Y.mean(0)
        ysd = Y.std(0)
        self.y_scale_ = np.where(ysd > 0, ysd, 1.0)
        net = torch.nn.Sequential(
            torch.nn.Linear(d_in, self.hidden), torch.nn.LayerNorm(self.hidden), torch.nn.GELU(),
            torch.nn.Dropout(0.15), torch.nn.Linear(self.hidden, d_out),
        ).to(device)
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        Xt = torch.as_tensor(Z, dtype=torch.float32, device=device)
        Yt = torch.as_tensor((Y - self.y_mean_) / self.y_scale_, dtype=torch.float32, device=device)
        Yraw = torch.as_tensor(Y, dtype=torch.float32, device=device)
        n = len(Xt)
        bs = min(self.batch_size, n)
        self.loss_curve_ = []
        for _ in progress(range(int(self.epochs)), desc="EmbeddingDecoder (mlp)", unit="epoch"):
            net.train()
            perm = torch.randperm(n, generator=g).to(device)
            total = 0.0
            for start in range(0, n - bs + 1, bs):
                idx = perm[start:start + bs]
                out = net(Xt[idx])
                mse = F.mse_loss(out, Yt[idx])
                pred = out * torch.as_tensor(self.y_scale_, dtype=torch.float32, device=device) \
                    + torch.as_tensor(self.y_mean_, dtype=torch.float32, device=device)
                logits = F.normalize(pred, dim=1) @ F.normalize(Yraw[idx], dim=1).T / self.temperature
                labels = torch.arange(len(idx), device=device)
                nce = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
                loss = nce + self.mse_weight * mse
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach())
            self.loss_curve_.append(total)
        self.net_ = net.eval().cpu()

    # -------------------------------------------------------------- predict
    def _check_fitted(self) -> None:
        check_fitted(self, "n_features_in_", call="fit(store, features)")

    def predict(self, store: xr.Dataset) -> xr.DataArray:
        """Predicted embeddings of the store's rows.

        Parameters
        ----------
        store : xr.Dataset
            A store with the neuroids (and time points) the decoder was fitted on.

        Returns
        -------
        xr.DataArray
            On the store's sample dim and the target's dims, with the store's
            ``stimulus_id``.
        """
        import torch

        from neuroalign.store import sample_dim

        self._check_fitted()
        X, ids = brain_matrix(store, self.window)
        if X.shape[1] != self.n_features_in_:
            raise DimensionError(
                f"The store gives {X.shape[1]} brain features per sample; this decoder was "
                f"fitted on {self.n_features_in_}."
            )
        Z = (X - self.x_mean_) / self.x_scale_
        if self.kind == "ridge":
            Y = Z @ self.coef_ + self.intercept_
        else:
            with torch.no_grad():
                Y = self.net_(torch.as_tensor(Z, dtype=torch.float32)).double().numpy()
            Y = Y * self.y_scale_ + self.y_mean_
        dim = sample_dim(store)
        return xr.DataArray(
            Y.reshape(len(Y), *self.target_shape_), dims=(dim, *self.target_dims_),
            coords={"stimulus_id": (dim, ids)}, name="predicted_embedding",
        )

    def score(self, store: xr.Dataset, features, *, n_way: int = 300, n_draws: int = 30,
              random_state: int = 0, seed=UNSET) -> dict[str, float]:
        """Top-1 retrieval of the store's (averaged) stimuli by predicted embedding.

        Repetitions are averaged first; see :func:`neuroalign.decoders.metrics.retrieval_top1`.

        Parameters
        ----------
        store : xr.Dataset
            Held-out responses.
        features : xr.Dataset or xr.DataArray
            The true embeddings of its stimuli (joined on ``stimulus_id``).
        n_way : int
            Candidates per draw (scaled down to the number of stimuli when smaller).
        n_draws : int
            Random draws of candidates.
        random_state : int
            Seed of the draws.
        seed : int, deprecated
            Old name of ``random_state`` (``FutureWarning``).

        Returns
        -------
        dict
            ``{"forward", "backward", "n_way", "n_draws", "chance"}``: top-1 accuracies of
            brain -> image and image -> brain retrieval, and chance (``1 / n_way``).
        """
        seed = renamed(seed, random_state, old="seed", new="random_state",
                       func="EmbeddingDecoder.score", default=0)
        from neuroalign.decoders.metrics import retrieval_top1
        from neuroalign.store import is_trial_level

        if is_trial_level(store):
            store = store.na.average_repetitions()
        pred = self.predict(store)
        T, tids, _, _ = target_matrix(features, self.target)
        true = T[_align(np.asarray(pred.coords["stimulus_id"].values).astype(str), tids)]
        return retrieval_top1(pred.values, true, n_way=n_way, n_draws=n_draws, random_state=seed)
