"""The one results schema and its gate, neuroalign.store.check_results: every message names
what is missing and what is present."""

import json

import numpy as np
import pytest
import xarray as xr

from neuroalign.encoders import concat_results, results_from_scores
from neuroalign.exceptions import DataFormatError, DimensionError
from neuroalign.store import RESULTS_SCHEMA, check_results, open_results, save_results


def _scores(n_layers=3, n=5, seed=0):
    rng = np.random.default_rng(seed)
    return xr.DataArray(
        rng.uniform(-0.1, 0.9, (n_layers, n)), dims=("layer", "neuroid"),
        coords={"layer": [f"l{i}" for i in range(n_layers)],
                "model": ("layer", ["net"] * n_layers),
                "neuroid_id": ("neuroid", [f"v{i}" for i in range(n)]),
                "roi_A": ("neuroid", np.arange(n) < 3)},
    )


@pytest.fixture
def res():
    return results_from_scores(_scores(), metric="r2", score_kind="cv", split="train",
                               cv="5-fold", encoder="Mine", params={"alpha": 1.0})


def test_a_valid_results_dataset(res):
    assert check_results(res) is res
    assert res.attrs["results_schema"] == RESULTS_SCHEMA == "1"
    assert res["score"].dims == ("layer", "neuroid") and res["alpha"].dims == ("layer", "neuroid")
    assert res["depth"].values.tolist() == [0, 1, 2] and res["model"].values.tolist() == ["net"] * 3
    np.testing.assert_allclose(res["best_score"].values, res["score"].max("layer").values)
    assert (res["best_layer"].values == res["layer"].values[res["score"].values.argmax(0)]).all()
    assert np.isnan(res["alpha"].values).all() and np.isnan(res["best_alpha"].values).all()
    assert json.loads(res.attrs["params"]) == {"alpha": 1.0}
    assert res.attrs["selection"] == "cv-r2 within train" and "roi_A" in res.coords


def test_saved_results_open_checked(res, tmp_path):
    save_results(res, tmp_path / "results.zarr")
    back = open_results(tmp_path / "results.zarr")
    xr.testing.assert_identical(back["score"].reset_coords(drop=True), res["score"].reset_coords(drop=True))
    assert back.attrs["metric"] == "r2"


def _drop_attr(ds, name):
    out = ds.copy()
    del out.attrs[name]
    return out


BROKEN = [
    (lambda r: r["score"], TypeError, r"check_results\(\) expects an xarray.Dataset of results, got DataArray"),
    (lambda r: r.drop_vars("score"), DimensionError,
     r"Results have no variable 'score' \(per-layer scores on \('layer', 'neuroid'\[, 'time'\]\)\)\. "
     r"Variables present: 'alpha', 'best_alpha'"),
    (lambda r: r.isel(layer=0).drop_vars(["layer", "model", "depth"]), DimensionError,
     r"Results variable 'score' has dims \('neuroid',\), missing 'layer'\. Expected \('layer', 'neuroid'\)"),
    (lambda r: r.drop_vars("alpha"), DimensionError,
     r"Results are missing the variable 'alpha' on \('layer', 'neuroid'\)\. Variables on \('layer', "
     r"'neuroid'\): 'score'\."),
    (lambda r: r.drop_vars("model"), DimensionError,
     r"Results are missing the coordinate 'model' on dim 'layer'\. Coordinates on 'layer': 'depth', 'layer'"),
    (lambda r: r.assign_coords(depth=("layer", [0.0, 1.0, 2.0])), DataFormatError,
     r"Results coordinate 'depth' has dtype float64, expected int"),
    (lambda r: r.assign_coords(layer=["l0", "l0", "l2"]), DataFormatError,
     r"Results name the \(model, layer\) pair\(s\) \('net', 'l0'\) more than once"),
    (lambda r: r.assign_coords(layer=["a/l0", "a/l1", "b/l0"], model=("layer", ["", "", ""])),
     DataFormatError, r"Results layers are named 'a/l0', 'a/l1', 'b/l0' with an empty 'model' coordinate"),
    (lambda r: r.drop_vars("best_layer"), DimensionError,
     r"Results are missing the variable 'best_layer' on \('neuroid',\)\. Variables on \('neuroid',\): "
     r"'best_alpha', 'best_model', 'best_score'"),
    (lambda r: r.assign(best_layer=("neuroid", ["l9"] * 5)), DataFormatError,
     r"Results variable 'best_layer' names 'l9', which are not layers of the results \('l0', 'l1', 'l2'\)"),
    (lambda r: r.drop_vars("neuroid_id"), DimensionError,
     r"Results are missing the coordinate 'neuroid_id' on dim 'neuroid'\. Coordinates on 'neuroid': 'roi_A'"),
    (lambda r: r.assign_coords(neuroid_id=("neuroid", ["v0"] * 5)), DataFormatError,
     r"Results coordinate 'neuroid_id' has duplicates: 'v0'"),
    (lambda r: r.assign(noise_ceiling=("neuroid", np.ones(5))), DimensionError,
     r"Results hold 'noise_ceiling' without 'ceiling_normalised'; expected both or neither"),
    (lambda r: _drop_attr(r, "metric"), DataFormatError,
     r"Results are missing the attribute\(s\) 'metric'\. Attributes present: "),
    (lambda r: r.assign_attrs(metric="spearman"), DataFormatError,
     r"Results attribute 'metric' is 'spearman'; expected one of 'r2', 'pearson'"),
    (lambda r: r.assign_attrs(score_kind="held-out"), DataFormatError,
     r"Results attribute 'score_kind' is 'held-out'; expected one of 'cv', 'test'"),
    (lambda r: r.assign_attrs(score_kind="test", split="train"), DataFormatError,
     r"Results attribute 'split' is 'train' for held-out scores \(score_kind 'test'\); expected the name"),
    (lambda r: r.assign_attrs(params="alpha=1"), DataFormatError,
     r"Results attribute 'params' is 'alpha=1'; expected the estimator's parameters as a JSON string"),
    (lambda r: r.assign_attrs(results_schema="0"), DataFormatError,
     r"Results attribute 'results_schema' is '0'; this version of neuroalign reads schema '1'"),
]


@pytest.mark.parametrize(("breaks", "error", "message"), BROKEN)
def test_check_results_names_what_is_wrong(res, breaks, error, message):
    with pytest.raises(error, match=message):
        check_results(breaks(res))


def test_time_resolved_results_need_a_float_time():
    da = _scores().expand_dims(time=[0.0, 0.1]).transpose("layer", "neuroid", "time")
    ok = results_from_scores(da, metric="r2", score_kind="cv", split="all")
    assert ok["score"].dims == ("layer", "neuroid", "time") and ok["best_layer"].dims == ("neuroid", "time")
    with pytest.raises(DimensionError, match=r"Results have dim 'time' but no float coordinate 'time'"):
        check_results(ok.drop_vars("time"))


def test_results_from_scores_refuses_model_slash_layer_names():
    da = _scores().drop_vars("model").assign_coords(layer=["a/x", "a/y", "b/x"])
    with pytest.raises(ValueError, match=r"results_from_scores\(\): the layers are named 'a/x', 'a/y', 'b/x'; "
                       r"give the model as a 'model' coordinate"):
        results_from_scores(da, metric="r2", score_kind="cv", split="all")


def test_held_out_scores_choose_by_cv_score():
    """With cv_score, best_layer follows the cross-validated R², not the held-out score."""
    test = _scores(seed=1)
    cv = test.copy(data=-test.values)  # the opposite ranking
    res = results_from_scores(test, cv_score=cv, metric="pearson", score_kind="test", split="test")
    chosen = res["layer"].values[cv.values.argmax(0)]
    assert (res["best_layer"].values == chosen).all()
    np.testing.assert_allclose(res["best_score"].values, test.values[cv.values.argmax(0), np.arange(5)])
    assert "unbiased" in res["best_score"].attrs["estimate"]


def test_concat_results_recomputes_the_best_layer():
    a = results_from_scores(_scores().isel(layer=[0]), metric="r2", score_kind="cv", split="all")
    b = results_from_scores(_scores().isel(layer=[1, 2]), metric="r2", score_kind="cv", split="all")
    both = concat_results([a, b])
    whole = results_from_scores(_scores(), metric="r2", score_kind="cv", split="all")
    assert both["layer"].values.tolist() == ["l0", "l1", "l2"]
    np.testing.assert_array_equal(both["best_layer"].values, whole["best_layer"].values)
    with pytest.raises(ValueError, match=r"concat_results\(\): the results differ in 'metric'"):
        concat_results([a, b.assign_attrs(metric="pearson")])
