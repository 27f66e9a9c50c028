"""DifferentiableRidgeEncoder.from_estimator wraps neuroalign's own RidgeEncoder."""

import numpy as np


def test_from_estimator_accepts_a_ridge_encoder():
    import torch

    from neuroalign.decoders import DifferentiableRidgeEncoder
    from neuroalign.encoders import RidgeEncoder

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 6))
    Y = X @ rng.normal(size=(6, 3)) + rng.normal(size=(40, 3)) * 0.1
    est = RidgeEncoder(alphas=(0.1, 1.0), cv=4, device="cpu").fit(X, Y)
    assert est.coef_.shape == (6, 3)  # (n_features, n_neuroids)
    enc = DifferentiableRidgeEncoder.from_estimator(torch.nn.Identity(), est, rois={"A": [0, 2]})
    assert enc.n_neuroids == 3
    out = enc(torch.as_tensor(X[:5], dtype=torch.float32)).numpy()
    np.testing.assert_allclose(out, est.predict(X[:5]), rtol=1e-4, atol=1e-4)


def test_from_estimator_takes_every_estimator_in_the_one_orientation():
    """neuroalign's estimators share coef_ (n_features, n_neuroids); scikit-learn's are
    (n_neuroids, n_features): both wrap to the same predictions."""
    import torch
    from sklearn.linear_model import Ridge

    from neuroalign.decoders import DifferentiableRidgeEncoder
    from neuroalign.encoders import BandedRidgeEncoder

    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 3))  # 3 features, 3 neuroids: a square coef_ must not confuse
    Y = X @ rng.normal(size=(3, 3)) + rng.normal(size=(40, 3)) * 0.1
    x = torch.as_tensor(X[:5], dtype=torch.float32)
    for est in (BandedRidgeEncoder(alphas=(0.1, 1.0), cv=4, n_iter=1).fit(X, Y),
                Ridge(alpha=1.0).fit(X, Y)):
        enc = DifferentiableRidgeEncoder.from_estimator(torch.nn.Identity(), est)
        np.testing.assert_allclose(enc(x).numpy(), est.predict(X[:5]), rtol=1e-4, atol=1e-4)


def test_from_estimator_wraps_a_dual_form_ridge_encoder():
    """p > n: the encoder keeps dual coefficients; coef_ is formed when the wrapper asks."""
    import torch

    from neuroalign.decoders import DifferentiableRidgeEncoder
    from neuroalign.encoders import RidgeEncoder

    rng = np.random.default_rng(2)
    X = rng.normal(size=(30, 80)) + 5.0  # a mean: the offsets must be folded in
    Y = X @ rng.normal(size=(80, 4)) * 0.1 + rng.normal(size=(30, 4))
    est = RidgeEncoder(alphas=(0.1, 1.0, 10.0), cv=3, device="cpu").fit(X, Y)
    assert est.form_ == "dual"
    enc = DifferentiableRidgeEncoder.from_estimator(torch.nn.Identity(), est)
    out = enc(torch.as_tensor(X[:5], dtype=torch.float32)).numpy()
    np.testing.assert_allclose(out, est.predict(X[:5]), rtol=1e-4, atol=1e-4 * np.abs(out).max())
