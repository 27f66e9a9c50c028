"""Mapping inputs: features are read, never modified; results are taken as the schema says."""

import numpy as np
import xarray as xr

from neuroalign.mapping._units import feature_matrix


def test_feature_matrix_leaves_the_callers_attrs_alone():
    feats = xr.Dataset({"l1": (("stimulus", "l1_unit"), np.zeros((3, 2)), {"units": "a.u."})},
                       coords={"stimulus_id": ("stimulus", ["a", "b", "c"])}, attrs={"model": "net"})
    out = feature_matrix(feats)
    assert out.attrs == {"units": "a.u.", "model": "net", "layer": "l1"}
    assert feats["l1"].attrs == {"units": "a.u."} and feats.attrs == {"model": "net"}
    da = feats["l1"].rename("mine")
    da.attrs = {"units": "a.u."}
    assert feature_matrix(da).attrs["layer"] == "mine"
    assert da.attrs == {"units": "a.u."}
