"""Differentiable encoders: image tensors in [0, 1] -> predicted responses, with gradients.

The protocol used by :class:`~neuroalign.decoders.BrainGuidedGenerator` is simply a
``torch.nn.Module`` (or any callable) mapping ``(B, 3, H, W)`` float images in ``[0, 1]`` to
``(B, n_neuroids)`` predicted responses. :class:`DifferentiableRidgeEncoder` builds one from
a differentiable feature extractor and linear weights (``coef``, ``intercept``), e.g. those
of a fitted ``RidgeEncoder`` (:meth:`DifferentiableRidgeEncoder.from_estimator`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from neuroalign.exceptions import DimensionError

__all__ = ["PooledFeatureExtractor", "DifferentiableRidgeEncoder"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _torch():
    import torch

    return torch


def readout_fit(X, Y, alpha: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Ridge read-out on z-scored features, solved by the ridge core
    (:func:`neuroalign.encoders._solvers.ridge_refit`), folded back to the features' units.

    ``alpha`` is the penalty on the z-scored features (population standard deviation;
    constant features are left unscaled), as ``Ridge(alpha)`` after ``StandardScaler``.

    Returns
    -------
    coef : ndarray (n_features, n_targets)
    intercept : ndarray (n_targets,)
        ``Y ≈ X @ coef + intercept``.
    """
    from neuroalign.encoders._solvers import ridge_refit

    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    Y = Y[:, None] if Y.ndim == 1 else Y
    if X.ndim != 2 or len(X) != len(Y):
        raise DimensionError(
            f"fit_store(): the features have shape {X.shape!r} and the responses {Y.shape!r}; "
            "expected (n_samples, n_features) and (n_samples, n_targets) with equal n_samples."
        )
    mx, sx = X.mean(0), X.std(0)
    sx = np.where(sx > 0, sx, 1.0)
    W, b = ridge_refit((X - mx) / sx, Y, alpha, relative_alphas=False, dtype=np.float64)
    coef = W / sx[:, None]
    return coef, b - mx @ coef


def _module_base():
    return _torch().nn.Module


class PooledFeatureExtractor(_module_base()):  # type: ignore[misc]
    """Spatially averaged activations of named layers, differentiable w.r.t. the image.

    ``forward(images)`` takes ``(B, 3, H, W)`` floats in ``[0, 1]``, resizes them
    (bilinear, antialiased) to ``input_size``, normalises with ``mean``/``std``, runs
    ``model`` and returns the concatenation of each layer's spatial mean, ``(B, F)``. A layer
    run several times per forward pass gives its output at its last call (as
    :func:`neuroalign.features.extract`).

    Parameters
    ----------
    model : torch.nn.Module
        Any network (kept frozen: its parameters get ``requires_grad=False``).
    layers : sequence of str
        Module names (``model.named_modules()``).
    input_size : int
        Side the images are resized to.
    mean, std : tuple of float
        Input normalisation (ImageNet by default).
    network_spec : dict, optional
        A JSON description of ``model`` (``{"source": "torchvision", "arch": ..., "weights":
        None | "DEFAULT" | name, "seed": int}``) that rebuilds it; needed to save an encoder
        on this extractor (:meth:`DifferentiableRidgeEncoder.save`). Set by :meth:`from_spec`.
    """

    def __init__(self, model, layers: Sequence[str], *, input_size: int = 224,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD, network_spec: dict | None = None) -> None:
        super().__init__()
        torch = _torch()
        self.network_spec = None if network_spec is None else dict(network_spec)
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.layers = list(layers)
        modules = dict(self.model.named_modules())
        missing = [name for name in self.layers if name not in modules]
        if missing:
            raise KeyError(
                f"Unknown layer(s) {missing!r} of the feature model. Expected module names "
                f"such as {[n for n in modules if n][:10]!r}."
            )
        self.input_size = int(input_size)
        self._layer_calls: dict[str, int] | None = None  # counted by the first forward
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    @classmethod
    def from_spec(cls, network: dict, layers: Sequence[str], *, allow_download: bool = False,
                  **kwargs) -> PooledFeatureExtractor:
        """Build the network a JSON description names (offline unless ``allow_download``) and
        wrap it; the description is kept so that an encoder on it can be saved.

        Parameters
        ----------
        network : dict
            The JSON description (``source``, ``arch``, ``weights``, ``seed``...).
        layers : sequence of str
            Layers whose pooled outputs are the features.
        allow_download : bool
            Allow pretrained weights to be downloaded (else the local cache only).
        **kwargs
            Passed to the constructor (e.g. ``input_size``).

        Returns
        -------
        PooledFeatureExtractor

        Examples
        --------
        >>> ext = PooledFeatureExtractor.from_spec(
        ...     {"source": "torchvision", "arch": "resnet18", "weights": None, "seed": 0},
        ...     ["layer4"], input_size=32)
        >>> ext.network_spec["arch"]
        'resnet18'
        """
        from neuroalign.decoders._encoder_io import network_from_spec

        net = network_from_spec(network, allow_download=allow_download)
        return cls(net, layers, network_spec=network, **kwargs)

    def forward(self, images):
        """Pooled features of a batch of images.

        Parameters
        ----------
        images : torch.Tensor, shape (B, 3, H, W)
            Images in [0, 1].

        Returns
        -------
        torch.Tensor, shape (B, n_features)
            The layers' pooled outputs side by side (differentiable).
        """
        import torch.nn.functional as F

        if images.ndim != 4 or images.shape[1] != 3:
            raise DimensionError(
                f"PooledFeatureExtractor expects images (B, 3, H, W) in [0, 1]; got shape "
                f"{tuple(images.shape)!r}."
            )
        x = images.float()
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                              align_corners=False, antialias=True)
        from neuroalign.features._hooks import LayerRecorder

        # the one hook engine, kept differentiable: spatial mean of feature maps, each layer
        # at its last call (the first forward counts the calls, later ones stop after them)
        with LayerRecorder(self.model, self.layers, pooling="mean", modality="image",
                           detach=False, calls=self._layer_calls) as rec:
            out = rec.run(self.model, (x - self.mean) / self.std)
        self._layer_calls = rec.calls
        return _torch().cat([out[name] for name in self.layers], dim=1)

    def extract(self, images: np.ndarray, *, batch_size: int = 32) -> np.ndarray:
        """Features of uint8 images, without gradients.

        Parameters
        ----------
        images : ndarray of uint8, shape (N, H, W, 3)
            The images.
        batch_size : int
            Images per forward pass.

        Returns
        -------
        ndarray of float64, shape (N, F)
            Their features.
        """
        torch = _torch()
        out = []
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                x = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size]))
                x = x.permute(0, 3, 1, 2).float() / 255.0
                out.append(self(x).double().cpu().numpy())
        return np.concatenate(out)


class DifferentiableRidgeEncoder(_module_base()):  # type: ignore[misc]
    """A linear read-out on a differentiable feature extractor: ``extractor(x) @ coef.T + b``.

    Parameters
    ----------
    extractor : torch.nn.Module or callable
        Images ``(B, 3, H, W)`` in ``[0, 1]`` -> features ``(B, F)``.
    coef : array-like (n_neuroids, F)
        Read-out weights (scikit-learn convention, like ``RidgeEncoder.coef_``).
    intercept : array-like (n_neuroids,), optional
    rois : dict of str -> array-like of bool or int, optional
        Named neuroid sets (ROI masks or indices), used to resolve guidance targets by name.
    neuroid_ids : sequence of str, optional
    """

    def __init__(self, extractor, coef, intercept=None, *, rois=None, neuroid_ids=None) -> None:
        super().__init__()
        torch = _torch()
        coef = np.asarray(coef, dtype=np.float32)
        if coef.ndim == 1:
            coef = coef[None]
        if coef.ndim != 2:
            raise DimensionError(
                f"Invalid shape for 'coef' in DifferentiableRidgeEncoder: {coef.shape!r}. "
                "Expected (n_neuroids, n_features)."
            )
        intercept = np.zeros(len(coef), np.float32) if intercept is None else np.asarray(
            intercept, dtype=np.float32).reshape(-1)
        if intercept.shape != (len(coef),):
            raise DimensionError(
                f"Invalid shape for 'intercept' in DifferentiableRidgeEncoder: "
                f"{intercept.shape!r}. Expected ({len(coef)},)."
            )
        self.extractor = extractor
        self.register_buffer("coef", torch.from_numpy(coef))
        self.register_buffer("intercept", torch.from_numpy(intercept))
        self.rois = {k: np.asarray(v) for k, v in (rois or {}).items()}
        self.neuroid_ids = None if neuroid_ids is None else list(neuroid_ids)

    @property
    def n_neuroids(self) -> int:
        return int(self.coef.shape[0])

    def forward(self, images):
        """Predicted responses to a batch of images (differentiable).

        Parameters
        ----------
        images : torch.Tensor, shape (B, 3, H, W)
            Images in [0, 1].

        Returns
        -------
        torch.Tensor, shape (B, n_neuroids)
            The predictions.
        """
        feats = self.extractor(images)
        if feats.shape[-1] != self.coef.shape[1]:
            raise DimensionError(
                f"The extractor gives {feats.shape[-1]} features; 'coef' expects "
                f"{self.coef.shape[1]}."
            )
        return feats @ self.coef.T + self.intercept

    def save(self, path, *, network_weights: bool = False, overwrite: bool = False):
        """Write the encoder to the folder ``path``: ``encoder.json`` (the extractor's network
        description, layers, input size, normalisation, neuroid ids, ROIs) and
        ``readout.safetensors`` (``coef``, ``intercept``); no file holds code.

        Parameters
        ----------
        path : path-like
            A new folder (an existing one is replaced only with ``overwrite=True`` and only
            when neuroalign wrote it).
        network_weights : bool
            Also write the network's weights (``network.safetensors``), for a network that its
            description alone does not rebuild (e.g. fine-tuned weights).
        overwrite : bool

        Returns
        -------
        Path
        """
        from neuroalign.decoders._encoder_io import save_encoder

        return save_encoder(self, path, network_weights=network_weights, overwrite=overwrite)

    @classmethod
    def load(cls, path, *, allow_download: bool = False) -> DifferentiableRidgeEncoder:
        """Read a folder written by :meth:`save` (JSON and safetensors only: nothing in it can
        run code). The network is rebuilt offline from its description; pretrained weights
        come from the local torch cache unless ``allow_download``.

        Parameters
        ----------
        path : path-like
            The folder.
        allow_download : bool
            Allow pretrained weights to be downloaded.

        Returns
        -------
        DifferentiableRidgeEncoder
        """
        from neuroalign.decoders._encoder_io import load_encoder

        return load_encoder(path, allow_download=allow_download)

    @classmethod
    def from_estimator(cls, extractor, estimator, **kwargs) -> DifferentiableRidgeEncoder:
        """Wrap a fitted linear estimator (``coef_``, ``intercept_``): a scikit-learn linear
        model (``coef_`` of shape (n_neuroids, F)) or a neuroalign estimator (``RidgeEncoder``,
        ``BandedRidgeEncoder``, ...: ``coef_`` of shape (F, n_neuroids), transposed here).

        Parameters
        ----------
        extractor : PooledFeatureExtractor
            The features the estimator was fitted on.
        estimator : fitted estimator
            Its ``coef_`` and ``intercept_`` are used.
        **kwargs
            Passed to the constructor (``rois``, ``neuroid_ids``).

        Returns
        -------
        DifferentiableRidgeEncoder
        """
        if not hasattr(estimator, "coef_"):
            from neuroalign.exceptions import NotFittedError

            raise NotFittedError(
                f"{type(estimator).__name__} has no 'coef_': fit it before wrapping it in "
                "DifferentiableRidgeEncoder."
            )
        coef = np.asarray(estimator.coef_)
        if type(estimator).__module__.startswith("neuroalign."):
            coef = coef.T  # every neuroalign estimator: (n_features, n_neuroids)
        return cls(extractor, coef, getattr(estimator, "intercept_", None), **kwargs)

    @classmethod
    def fit_store(cls, extractor, store, *, images: np.ndarray | None = None,
                  alpha: float = 1.0) -> DifferentiableRidgeEncoder:
        """Fit the read-out with closed-form ridge on a store's repetition-averaged responses.

        Parameters
        ----------
        extractor : PooledFeatureExtractor
            Needs an ``extract(images)`` method (uint8 ``(N, H, W, 3)`` -> ``(N, F)``).
        store : xr.Dataset
            fMRI store (trial-level or averaged) with ``roi_*`` coordinates.
        images : ndarray (n_stimuli, H, W, 3) uint8, optional
            One image per stimulus of the averaged store, in its order; default: read through
            the store's ``stimulus_set`` attribute.
        alpha : float
            Ridge penalty (on z-scored features).
        """
        from neuroalign.decoders._stimuli import store_images
        from neuroalign.store import is_trial_level, roi_names

        avg = store.na.average_repetitions() if is_trial_level(store) else store
        images = store_images(avg) if images is None else np.asarray(images)
        if len(images) != avg.sizes["stimulus"]:
            raise DimensionError(
                f"fit_store(): 'images' holds {len(images)} images; the averaged store has "
                f"{avg.sizes['stimulus']} stimuli. Expected one image per stimulus, in order."
            )
        X = extractor.extract(images)
        Y = np.asarray(avg["responses"].transpose("stimulus", "neuroid").values, dtype=np.float64)
        coef, intercept = readout_fit(X, Y, alpha)
        rois = {name: np.asarray(avg.coords["roi_" + name].values, dtype=bool)
                for name in roi_names(avg)}
        return cls(extractor, coef.T, intercept, rois=rois,
                   neuroid_ids=[str(v) for v in avg.coords["neuroid_id"].values])
