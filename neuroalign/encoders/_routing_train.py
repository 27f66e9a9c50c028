"""The attention-routing model and its training loop, resumable at any epoch.

:class:`~neuroalign.encoders.AttentionRoutingEncoder` trains one network whose attention,
projections and positional embedding are shared by every neuroid, and stops early on the
mean validation score over all neuroids: its fit does not split into independent batches
of neuroids (a batch trained alone would learn other shared weights and stop at another
epoch). What splits without changing the result is time: the training state after ``e``
epochs (the weights, AdamW's moments, the minibatch generator and the dropout generator,
the best state so far, the early-stopping counter and the history) determines every later
epoch. :func:`train` runs epochs from such a state; :func:`to_bytes` / :func:`from_bytes`
write and restore it exactly, so training in chunks of epochs gives the same weights as
training in one go, and the chunks are the cached cells of a routing fit
(:func:`neuroalign.encoders._scaleout.routing_cells`).
"""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neuroalign._logging import progress
from neuroalign.encoders._scoring import SCORERS

__all__ = ["TrainState", "build_model", "from_bytes", "new_state", "routing_chunk", "to_bytes",
           "train"]


def build_model(n_tokens, n_units, n_groups, n_queries, d_model, n_heads, n_out, voxel_queries,
                dropout):
    """The routing network (a ``torch.nn.Module``): learned queries per ROI (or per voxel)
    cross-attend over the projected tokens; a per-voxel linear read-out of the routed
    vectors."""
    import torch
    from torch import nn

    class RoutingModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = nn.LayerNorm(n_units)
            self.proj = nn.Linear(n_units, d_model)
            self.pos = nn.Parameter(0.02 * torch.randn(n_tokens, d_model))
            self.key = nn.Linear(d_model, d_model)
            self.value = nn.Linear(d_model, d_model)
            n_q = n_out if voxel_queries else n_groups * n_queries
            self.queries = nn.Parameter(0.02 * torch.randn(n_q, d_model))
            self.drop = nn.Dropout(dropout)
            width = d_model if voxel_queries else n_queries * d_model
            self.readout = nn.Parameter(torch.randn(n_out, width) / np.sqrt(width))
            self.bias = nn.Parameter(torch.zeros(n_out))

        def attention(self, x):
            h = self.proj(self.norm(x)) + self.pos
            k = self.key(h)
            b, t, _ = k.shape
            hd = d_model // n_heads
            q = self.queries.view(-1, n_heads, hd).transpose(0, 1)  # (H, Q, hd)
            kh = k.view(b, t, n_heads, hd).permute(0, 2, 3, 1)  # (B, H, hd, T)
            logits = torch.matmul(q.unsqueeze(0), kh) / np.sqrt(hd)  # (B, H, Q, T)
            return logits.softmax(-1), h

        def forward(self, x, group_mask):
            attn, h = self.attention(x)
            b = attn.shape[0]
            v = self.value(h)  # (B, T, d)
            hd = d_model // n_heads
            vh = v.view(b, -1, n_heads, hd).transpose(1, 2)  # (B, H, T, hd)
            routed = torch.matmul(attn, vh).transpose(1, 2).reshape(b, -1, d_model)  # (B, Q, d)
            routed = self.drop(routed)
            if voxel_queries:
                return (routed * self.readout).sum(-1) + self.bias
            g = routed.view(b, n_groups, n_queries * d_model)  # (B, G, Qd)
            # each voxel reads out the routed vector of its ROI(s); overlapping ROIs add
            per_group = torch.einsum("bgk,vk->bvg", g, self.readout)
            return (per_group * group_mask).sum(-1) + self.bias

    return RoutingModel()


@dataclass
class TrainState:
    """Everything that determines the epochs still to run."""

    model: Any
    opt: Any
    gen: Any
    epoch: int = 0
    best: float = -np.inf
    best_state: dict | None = None
    wait: int = 0
    history: list = field(default_factory=list)
    stopped: bool = False


def new_state(spec: dict) -> TrainState:
    """The state before the first epoch: weights initialised from ``spec["seed"]``."""
    import torch

    torch.manual_seed(spec["seed"])
    model = build_model(*spec["model"]).to(spec["device"])
    opt = torch.optim.AdamW(model.parameters(), lr=spec["lr"], weight_decay=spec["weight_decay"])
    return TrainState(model, opt, torch.Generator().manual_seed(spec["seed"]))


def _cuda(device: str) -> bool:
    return str(device).startswith("cuda")


def to_bytes(state: TrainState, device: str) -> bytes:
    """The state as bytes (``torch.save`` of tensors and numbers only), with the global
    random generators that dropout draws from."""
    import torch

    buf = io.BytesIO()
    torch.save({"model": state.model.state_dict(), "opt": state.opt.state_dict(),
                "gen": state.gen.get_state(), "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(device) if _cuda(device) else None,
                "epoch": state.epoch, "best": float(state.best), "best_state": state.best_state,
                "wait": state.wait, "history": [float(h) for h in state.history],
                "stopped": state.stopped}, buf)
    return buf.getvalue()


def from_bytes(blob: bytes, spec: dict) -> TrainState:
    """Restore a state written by :func:`to_bytes` (``weights_only``: never runs code from
    the file), the global random generators included."""
    import torch

    device = spec["device"]
    saved = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    state = new_state(spec)
    state.model.load_state_dict(saved["model"])
    state.opt.load_state_dict(saved["opt"])
    state.gen.set_state(saved["gen"])
    torch.set_rng_state(saved["rng"])
    if saved["cuda_rng"] is not None and _cuda(device):
        torch.cuda.set_rng_state(saved["cuda_rng"], device)
    best_state = saved["best_state"]
    if best_state is not None:
        best_state = {k: v.to(device) for k, v in best_state.items()}
    state.epoch, state.best, state.best_state = int(saved["epoch"]), float(saved["best"]), best_state
    state.wait, state.history, state.stopped = int(saved["wait"]), list(saved["history"]), \
        bool(saved["stopped"])
    return state


def train(state: TrainState, data: dict, spec: dict, stop: int) -> TrainState:
    """Run epochs ``state.epoch`` .. ``stop - 1`` (fewer when early stopping ends the
    training: ``state.stopped``). ``data``: tensors ``X``, ``Yz`` (z-scored responses),
    ``M`` (ROI mask), ``w`` (valid neuroids), ``train`` (row indices) and numpy ``val``,
    ``ok``, ``Yval`` (the validation rows of the valid neuroids)."""
    import torch

    model, opt, gen, device = state.model, state.opt, state.gen, spec["device"]
    Xt, Yz, M, w, train_t = data["X"], data["Yz"], data["M"], data["w"], data["train"]
    val_t = torch.as_tensor(data["val"], device=device)
    batch = spec["batch_size"]
    epochs = range(state.epoch, stop)
    for _epoch in progress(epochs, desc="routing epochs", unit="epoch", total=len(epochs)):
        if state.stopped:
            break
        model.train()
        perm = train_t[torch.randperm(len(train_t), generator=gen)]
        for start in range(0, len(perm), batch):
            idx = perm[start:start + batch].to(device)
            pred = model(Xt[idx], M)
            loss = (((pred - Yz[idx]) ** 2) * w).sum() / (w.sum() * len(idx))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        model.eval()
        with torch.no_grad():
            pv = model(Xt[val_t], M).cpu().numpy()
        score = float(np.mean(SCORERS["pearson"](data["Yval"], pv[:, data["ok"]])))
        state.history.append(score)
        state.epoch += 1
        if score > state.best + 1e-4:
            state.best, state.best_state, state.wait = score, copy.deepcopy(model.state_dict()), 0
        else:
            state.wait += 1
            if state.wait >= spec["patience"]:
                state.stopped = True
    return state


def tensors(tokens, Yz, mask, ok, train_rows, val_rows, device: str) -> dict:
    """The data of :func:`train` on ``device``."""
    import torch

    Yz = np.asarray(Yz, dtype=np.float32)
    return {"X": torch.from_numpy(np.asarray(tokens)).to(device),
            "Yz": torch.from_numpy(Yz).to(device), "M": torch.from_numpy(np.asarray(mask)).to(device),
            "w": torch.from_numpy(np.asarray(ok).astype(np.float32)).to(device),
            "train": torch.as_tensor(np.asarray(train_rows)), "val": np.asarray(val_rows),
            "ok": np.asarray(ok), "Yval": Yz[np.asarray(val_rows)][:, np.asarray(ok)]}


def routing_chunk(tokens, Yz, mask, ok, train_rows, val_rows, spec: dict, blob, stop: int) -> dict:
    """Task of one cell: from the state ``blob`` (None: the start) train up to epoch
    ``stop``; the new state as arrays (``state`` bytes, ``epoch``, ``stopped``)."""
    import torch  # noqa: F401 - imported before the limit, which sets only a torch imported

    from neuroalign._config import thread_limits

    # the driver's torch threads (at most this worker's cores): the plain fit's float32 sums
    with thread_limits(int(spec.get("threads") or 1), blas=False):
        state = new_state(spec) if blob is None else from_bytes(bytes(np.asarray(blob)), spec)
        data = tensors(tokens, Yz, mask, ok, train_rows, val_rows, spec["device"])
        state = train(state, data, spec, stop)
    return {"state": np.frombuffer(to_bytes(state, spec["device"]), dtype=np.uint8),
            "epoch": np.array(state.epoch), "stopped": np.array(state.stopped)}
