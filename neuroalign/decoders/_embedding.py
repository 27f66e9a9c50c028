"""Brain -> embedding decoders (ridge or MLP with InfoNCE + MSE) and retrieval."""

from __future__ import annotations

from typing import Literal

import numpy as np
import xarray as xr

from neuroalign._config import resolve_device
from neuroalign._logging import get_logger, progress
from neuroalign._preflight import check_decoder
from neuroalign._validation import check_option, format_list
from neuroalign.exceptions import DimensionError, NotFittedError, StimulusMismatchError

__all__ = ["EmbeddingDecoder", "brain_matrix", "target_matrix", "retrieve"]

log = get_logger(__name__)
KINDS = ("ridge", "mlp")


def brain_matrix(store: xr.Dataset, window: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(n_samples, n_features)`` brain matrix and the stimulus id of each row.

    fMRI stores give ``presentation|stimulus x neuroid``; MEG/EEG stores are cut to the
    time ``window`` (seconds, inclusive) and flattened to ``neuroid x time`` per row.
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
    lookup = {s: i for i, s in enumerate(target_ids)}
    missing = sorted({s for s in ids if s not in lookup})
    if missing:
        raise StimulusMismatchError(
            f"{len(missing)} stimuli of the store have no target embedding: "
            f"{format_list(missing, limit=5)}."
        )
    return np.array([lookup[s] for s in ids])


def retrieve(predicted, candidates, *, k: int = 1) -> np.ndarray:
    """Indices of the ``k`` candidates most cosine-similar to each predicted embedding.

    Parameters
    ----------
    predicted : array-like (N, ...)
    candidates : array-like (M, ...)

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


class EmbeddingDecoder:
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
    seed : int
    device : str
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
        seed: int = 0,
        device: str = "auto",
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
        self.seed = seed
        self.device = device

    # ------------------------------------------------------------------ fit
    def fit(self, store: xr.Dataset, features) -> EmbeddingDecoder:
        """Fit on a store and the target embeddings of its stimuli (joined on ``stimulus_id``).

        Parameters
        ----------
        store : xr.Dataset
            Store (trial-level or averaged; fMRI or MEG/EEG). Use its train split.
        features : xr.Dataset or xr.DataArray
            Target embeddings on dim ``stimulus`` with ``stimulus_id``.
        """
        from neuroalign.store import is_trial_level

        check_option(self.kind, KINDS, name="kind", func="EmbeddingDecoder")
        if self.average and is_trial_level(store):
            store = store.na.average_repetitions()
        X, ids = brain_matrix(store, self.window)
        T, tids, dims, shape = target_matrix(features, self.target)
        if self.kind == "ridge":  # memory preflight
            check_decoder(*X.shape, int(np.prod(T.shape[1:])), func="EmbeddingDecoder.fit")
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
        from neuroalign.store import cv_folds

        alphas = np.atleast_1d(np.asarray(self.alphas, dtype=float))
        if (alphas <= 0).any() or alphas.size == 0:
            raise ValueError(
                f"Invalid value for 'alphas' in EmbeddingDecoder: {tuple(self.alphas)!r}. "
                "Expected positive penalties."
            )
        ym = Y.mean(0)
        if len(alphas) > 1:
            err = np.zeros(len(alphas))
            for tr, te in cv_folds(ids, self.cv, seed=self.seed):
                U, s, Vt = np.linalg.svd(Z[tr], full_matrices=False)
                UtY = U.T @ (Y[tr] - Y[tr].mean(0))
                for a, alpha in enumerate(alphas):
                    W = Vt.T @ ((s / (s**2 + alpha))[:, None] * UtY)
                    pred = Z[te] @ W + Y[tr].mean(0)
                    err[a] += ((pred - Y[te]) ** 2).sum()
            self.alpha_ = float(alphas[int(np.argmin(err))])
            self.cv_errors_ = err
        else:
            self.alpha_ = float(alphas[0])
        U, s, Vt = np.linalg.svd(Z, full_matrices=False)
        self.coef_ = (Vt.T @ ((s / (s**2 + self.alpha_))[:, None] * (U.T @ (Y - ym)))).T
        self.intercept_ = ym
        log.info("EmbeddingDecoder ridge: alpha=%g", self.alpha_)

    def _fit_mlp(self, Z: np.ndarray, Y: np.ndarray) -> None:
        import torch
        import torch.nn.functional as F

        device = resolve_device(self.device)
        g = torch.Generator().manual_seed(int(self.seed))
        torch.manual_seed(int(self.seed))
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
        if not hasattr(self, "n_features_in_"):
            raise NotFittedError(
                "This EmbeddingDecoder is not fitted yet: call fit(store, features) first."
            )

    def predict(self, store: xr.Dataset) -> xr.DataArray:
        """Predicted embeddings, DataArray on the store's sample dim and the target's dims,
        with the store's ``stimulus_id``.
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
            Y = Z @ self.coef_.T + self.intercept_
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
              seed: int = 0) -> dict[str, float]:
        """Top-1 retrieval of the store's (averaged) stimuli by predicted embedding.

        Repetitions are averaged first; see :func:`neuroalign.decoders.metrics.retrieval_top1`.
        """
        from neuroalign.decoders.metrics import retrieval_top1
        from neuroalign.store import is_trial_level

        if is_trial_level(store):
            store = store.na.average_repetitions()
        pred = self.predict(store)
        T, tids, _, _ = target_matrix(features, self.target)
        true = T[_align(np.asarray(pred.coords["stimulus_id"].values).astype(str), tids)]
        return retrieval_top1(pred.values, true, n_way=n_way, n_draws=n_draws, seed=seed)
