"""Plot functions return pyplot-managed figures: ``plt.show()`` and Jupyter display them."""

from __future__ import annotations

import numpy as np
import pytest

plt = pytest.importorskip("matplotlib.pyplot")


def test_plot_functions_register_their_figures_with_pyplot():
    from neuroalign.compare import plot_rdms
    from neuroalign.mapping import plot_layer_profile
    from neuroalign.testing import make_store

    fig = plot_rdms(np.eye(3))
    assert fig.number in plt.get_fignums()
    store = make_store(n_stimuli=12, n_neuroids=6, rois={"V1": np.arange(6) < 3, "V2": np.arange(6) >= 3})
    import xarray as xr

    scores = xr.DataArray(np.random.default_rng(0).random((2, 6)), dims=("layer", "neuroid"),
                          coords={"layer": ["a", "b"]})
    fig2 = plot_layer_profile(scores, store=store, rois=["V1", "V2"])
    assert fig2.number in plt.get_fignums()
    plt.close(fig)
    plt.close(fig2)


def test_closing_new_figures_closes_only_the_figures_of_its_block():
    from neuroalign._plotting import closing_new_figures
    from neuroalign.compare import plot_rdms

    kept = plt.figure()
    with closing_new_figures():
        inner = plot_rdms(np.eye(2))
        assert inner.number in plt.get_fignums()
    assert inner.number not in plt.get_fignums()
    assert kept.number in plt.get_fignums()
    plt.close(kept)
