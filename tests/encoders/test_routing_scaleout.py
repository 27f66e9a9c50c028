"""AttentionRoutingEncoder.fit in cached cells: chunks of epochs (the network is shared by
every neuroid, so it does not split into batches of neuroids). The same fit as the plain
one for 1, 2 and 4 workers and every batch size; a rerun computes only the missing cells,
a damaged one is redone, a finished fit is loaded whole."""

from __future__ import annotations

import numpy as np
import pytest
from test_attention_routing import routed_data

from neuroalign._config import max_threads
from neuroalign.encoders import AttentionRoutingEncoder

# dropout > 0: the cells must carry the dropout generator as well; patience small enough
# that early stopping ends the fit before max_epochs (the chain ends at a stopped cell)
KW = dict(d_model=16, max_epochs=40, patience=5, lr=1e-2, dropout=0.1, device="cpu")


def _data():
    tok, resp, _ = routed_data(n=96, n_tokens=8, n_units=6, n_vox=6, seed=3)
    return tok, resp


@pytest.fixture(scope="module")
def single():
    tok, resp = _data()
    enc = AttentionRoutingEncoder(**KW).fit(tok, resp)
    assert 5 < len(enc.history_) < KW["max_epochs"]  # stopped early, mid-chunk for most sizes
    return enc


def _cells(path) -> dict[str, int]:
    return {f.name: f.stat().st_mtime_ns for f in (path / "cells").glob("*.npz")}


def _assert_same(enc, ref, tok):
    assert enc.history_ == ref.history_
    np.testing.assert_array_equal(enc.cv_scores_, ref.cv_scores_)
    np.testing.assert_array_equal(enc.predict(tok.values), ref.predict(tok.values))
    for k, v in ref.model_.state_dict().items():
        np.testing.assert_array_equal(enc.model_.state_dict()[k].numpy(), v.numpy())


@pytest.mark.parametrize("workers", ["client1", "client", "client4"])
def test_cells_of_epochs_give_the_plain_fit_for_any_workers_and_batch_size(
        request, workers, single, tmp_path):
    c = request.getfixturevalue(workers)
    tok, resp = _data()
    n_epochs = len(single.history_)
    for batch in (3, 8, 100):
        enc = AttentionRoutingEncoder(**KW).fit(tok, resp, client=c, batch_size=batch,
                                                result_path=tmp_path / str(batch))
        info = enc.scaleout_info_
        assert info["n_batches"] == -(-n_epochs // batch) == len(info["computed"])
        assert len(_cells(tmp_path / str(batch))) == info["n_batches"]
        _assert_same(enc, single, tok)


def test_rerun_computes_only_missing_cells_and_redoes_a_damaged_one(single, tmp_path):
    tok, resp = _data()
    n = -(-len(single.history_) // 4)
    fit = AttentionRoutingEncoder(**KW).fit
    enc = fit(tok, resp, result_path=tmp_path, batch_size=4)
    assert enc.scaleout_info_["computed"] == list(range(n))
    first = _cells(tmp_path)
    assert len(first) == n
    _assert_same(enc, single, tok)
    # a finished fit: its last cell is loaded, nothing trained, and a cluster named is never
    # started (for Slurm: no job submitted)
    def refuse(kind, options=None):
        raise AssertionError(f"a {kind!r} cluster was started for a finished fit")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("neuroalign._scaleout.make_cluster", refuse)
        enc = fit(tok, resp, result_path=tmp_path, batch_size=4, cluster="slurm")
    assert enc.scaleout_info_["computed"] == [] and enc.scaleout_info_["skipped"] == list(range(n))
    assert _cells(tmp_path) == first
    _assert_same(enc, single, tok)
    # the last two cells lost (a fit killed two chunks before its end): those two are redone
    by_age = sorted(first, key=first.get)
    for name in by_age[-2:]:
        (tmp_path / "cells" / name).unlink()
    enc = fit(tok, resp, result_path=tmp_path, batch_size=4)
    assert enc.scaleout_info_["computed"] == [n - 2, n - 1]
    after = _cells(tmp_path)
    assert set(after) == set(first)
    assert sorted(k for k in after if after[k] != first[k]) == sorted(by_age[-2:])
    _assert_same(enc, single, tok)
    # a damaged last cell (truncated): redone from the one before
    (tmp_path / "cells" / by_age[-1]).write_bytes(b"PK\x03\x04 truncated")
    before = _cells(tmp_path)
    enc = fit(tok, resp, result_path=tmp_path, batch_size=4)
    assert enc.scaleout_info_["computed"] == [n - 1]
    after = _cells(tmp_path)
    assert [k for k in after if after[k] != before[k]] == [by_age[-1]]
    _assert_same(enc, single, tok)


def test_cells_are_keyed_by_the_epoch_reached_and_by_data_and_seed(single, tmp_path):
    """Another batch size reuses the states at the epochs both reach; another seed or other
    responses share no cell."""
    tok, resp = _data()
    AttentionRoutingEncoder(**KW).fit(tok, resp, result_path=tmp_path, batch_size=4)
    first = _cells(tmp_path)
    enc = AttentionRoutingEncoder(**KW).fit(tok, resp, result_path=tmp_path, batch_size=8)
    # the ends 8, 16, ... are ends of the batch_size=4 chain: at most the stopped one is new
    assert len(enc.scaleout_info_["computed"]) <= 1 and enc.scaleout_info_["skipped"]
    assert {k: v for k, v in _cells(tmp_path).items() if k in first} == first
    _assert_same(enc, single, tok)
    other = AttentionRoutingEncoder(**{**KW, "random_state": 1}).fit(
        tok, resp, result_path=tmp_path, batch_size=4)
    assert other.scaleout_info_["skipped"] == []
    resp2 = resp.copy(data=resp.values * 1.5 + 0.1)
    moved = AttentionRoutingEncoder(**KW).fit(tok, resp2, result_path=tmp_path, batch_size=4)
    assert moved.scaleout_info_["skipped"] == []


def test_a_failed_cell_stops_the_fit_and_the_rerun_resumes_from_the_cell_before(
        single, tmp_path, monkeypatch):
    from neuroalign.encoders import _routing_train

    tok, resp = _data()
    original = _routing_train.routing_chunk

    def failing(*args):
        if args[-1] == 8:  # the cell that ends at epoch 8
            raise RuntimeError("simulated failure")
        return original(*args)

    monkeypatch.setattr(_routing_train, "routing_chunk", failing)
    with pytest.raises(RuntimeError, match=r"AttentionRoutingEncoder.fit \(routing epochs to "
                                           r"8\): 1 cell\(s\) failed .*simulated failure"):
        AttentionRoutingEncoder(**KW).fit(tok, resp, result_path=tmp_path, batch_size=4)
    assert len(_cells(tmp_path)) == 1  # epochs 0-3 kept
    monkeypatch.setattr(_routing_train, "routing_chunk", original)
    enc = AttentionRoutingEncoder(**KW).fit(tok, resp, result_path=tmp_path, batch_size=4)
    n = -(-len(single.history_) // 4)
    assert enc.scaleout_info_["skipped"] == [0]
    assert enc.scaleout_info_["computed"] == list(range(1, n))
    _assert_same(enc, single, tok)


def test_routing_batch_size_is_validated(tmp_path):
    tok, resp = _data()
    with pytest.raises(ValueError, match=r"Invalid value for 'batch_size' in "
                                         r"AttentionRoutingEncoder.fit\(\): 0"):
        AttentionRoutingEncoder(**KW).fit(tok, resp, result_path=tmp_path, batch_size=0)


@pytest.mark.slow
@pytest.mark.parametrize("threads", [None, 1])
def test_cells_on_worker_processes_give_the_plain_fit(process_client, tmp_path, threads):
    """The cells pickled to 2 worker processes (one torch thread each, as dask starts
    them) train with this process's torch threads (all its cores, or one): bit for bit the
    plain fit run here (they trained with one thread, and differed in the last bits,
    before). Cells computed with one thread count are reused with another (same keys)."""
    import torch

    from neuroalign import thread_limits

    tok, resp = _data()
    with thread_limits(threads):
        ref = AttentionRoutingEncoder(**KW).fit(tok, resp)
        n = torch.get_num_threads()
        enc = AttentionRoutingEncoder(**KW).fit(tok, resp, client=process_client, batch_size=6,
                                                result_path=tmp_path)
    assert n == (1 if threads else max_threads())
    assert enc.scaleout_info_["n_batches"] == -(-len(ref.history_) // 6)
    _assert_same(enc, ref, tok)
    with thread_limits(1 if threads is None else None):
        again = AttentionRoutingEncoder(**KW).fit(tok, resp, result_path=tmp_path, batch_size=6)
    assert again.scaleout_info_["computed"] == []
