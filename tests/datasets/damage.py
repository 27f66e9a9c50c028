"""Damage applied to files written in the published formats, for the damage-matrix tests.

Each test of a matrix copies a pristine fixture tree (written once per module by the
writers of ``adapter_fixtures`` / ``neuroalign.datasets.simulate``), damages one file and
checks that the adapter either raises a named error whose message names the file, or
loads the right values (with a warning where the file needed a fallback).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from neuroalign.exceptions import NeuroalignError


def truncate(path: Path, keep: float = 0.5) -> None:
    """Keep the first ``keep`` fraction of the file's bytes."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * keep)])


def empty(path: Path) -> None:
    Path(path).write_bytes(b"")


def flip(path: Path, offset: int, n: int = 4) -> None:
    """Invert ``n`` bytes at ``offset`` (negative: from the end)."""
    data = bytearray(Path(path).read_bytes())
    offset = offset % len(data)
    for i in range(offset, min(offset + n, len(data))):
        data[i] ^= 0xFF
    Path(path).write_bytes(bytes(data))


def flip_gzip(path: Path) -> None:
    """Invert bytes in the middle of a gzip stream (.nii.gz, .mgz): a CRC or inflate error."""
    flip(path, Path(path).stat().st_size // 2, 8)


def flip_h5_chunk(path: Path, key: str, chunk: int = 0) -> None:
    """Invert bytes in the middle of stored chunk ``chunk`` of dataset ``key``."""
    import h5py

    with h5py.File(path, "r") as f:
        info = f[key].id.get_chunk_info(chunk)
    flip(path, int(info.byte_offset) + int(info.size) // 2, 8)


def compress_h5(path: Path, key: str) -> None:
    """Rewrite dataset ``key`` gzip-compressed in chunks (attrs kept)."""
    import h5py

    with h5py.File(path, "r") as f:
        data = f[key][()]
        attrs = dict(f[key].attrs)
    with h5py.File(path, "w") as f:
        d = f.create_dataset(key, data=data, compression="gzip", chunks=True)
        d.attrs.update(attrs)


def rewrite_h5(path: Path, key: str, data) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        f.create_dataset(key, data=data)


def read_h5(path: Path, key: str) -> np.ndarray:
    import h5py

    with h5py.File(path, "r") as f:
        return f[key][()]


def nifti(path: Path, data, affine=None, *, mgh: bool = False) -> None:
    import nibabel as nib

    data = np.asarray(data)
    affine = np.eye(4) if affine is None else affine
    img = nib.MGHImage(data, affine) if mgh else nib.Nifti1Image(data, affine)
    nib.save(img, str(path))


def nifti_data(path: Path) -> np.ndarray:
    import nibabel as nib

    return np.asarray(nib.load(str(path)).dataobj)


def savemat(path: Path, **kw) -> None:
    """Rewrite a .mat file with some keys replaced (``None`` deletes a key)."""
    import scipy.io

    mat = {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
    mat.update(kw)
    scipy.io.savemat(path, {k: v for k, v in mat.items() if v is not None})


def latin1(path: Path, old: str, new: str) -> None:
    """Replace ``old`` by ``new`` and re-encode the text file as latin-1."""
    text = Path(path).read_text(encoding="utf-8").replace(old, new)
    Path(path).write_bytes(text.encode("latin-1"))


class Evil:
    """Unpickling it runs ``touch <sentinel>`` (a crafted payload)."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (os.system, (f"touch '{self.sentinel}'",))


def evil_pickle(sentinel: Path) -> bytes:
    return pickle.dumps({"payload": Evil(sentinel)})


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def check_case(load: Callable, error, match: str, check: Callable | None = None, warns=None):
    """Run ``load()``: it raises ``error`` matching ``match``, or loads and passes ``check``.

    A raised error must be a neuroalign error or a FileNotFoundError (never a raw library
    exception), and its message must match (the file name is part of every ``match``).
    """
    if error is None:
        ctx = pytest.warns(warns, match=match) if warns else contextlib.nullcontext()
        with ctx:
            ds = load()
        if check is not None:
            check(ds)
        return
    with pytest.raises(Exception) as info:
        load()
    err = info.value
    named = (NeuroalignError, FileNotFoundError) + ((ValueError,) if error is ValueError else ())
    assert isinstance(err, named), (
        f"raw {type(err).__module__}.{type(err).__name__}: {err}")
    assert isinstance(err, error), f"{type(err).__name__}: {err}"
    info.match(match)
