"""Stimulus sets: a table keyed by ``stimulus_id`` with a lazy loader for pixels or text."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from neuroalign._logging import get_logger
from neuroalign._validation import check_option, format_list
from neuroalign.exceptions import DataFormatError, StimulusMismatchError

__all__ = ["StimulusSet", "IMAGE_EXTENSIONS", "MODALITIES"]

log = get_logger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MODALITIES = ("image", "text")
Modality = Literal["image", "text"]


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


class StimulusSet:
    """Stimuli keyed by ``stimulus_id``, loaded lazily.

    Build one with :meth:`from_store`, :meth:`from_folder`, :meth:`from_hdf5`,
    :meth:`from_texts`, :meth:`from_story` or :meth:`from_arrays`; the constructor is the
    low-level form.

    Parameters
    ----------
    ids : sequence of str
        Unique stimulus ids, in the order of the set.
    modality : {"image", "text"}
        What the loader returns: uint8 arrays ``(H, W, 3)`` or strings.
    loader : callable
        ``loader(indices) -> list`` of the stimuli at the given positions (ints, any order).
    source : dict of str to sequence, optional
        Source identifiers, one value per stimulus (``nsd_id``, ``image_file``, ``story``, ...).
    fingerprint : dict, optional
        JSON-serialisable description of where the content comes from, hashed by
        :meth:`content_hash` together with the ids.

    Examples
    --------
    >>> stim = StimulusSet.from_texts({"a": "a dog runs", "b": "a cat sleeps"})
    >>> len(stim), stim.modality, stim.load([1])
    (2, 'text', ['a cat sleeps'])
    """

    def __init__(
        self,
        ids: Sequence[str],
        *,
        modality: Modality,
        loader: Callable[[Sequence[int]], list[Any]],
        source: Mapping[str, Sequence[Any]] | None = None,
        fingerprint: Mapping[str, Any] | None = None,
    ) -> None:
        check_option(modality, MODALITIES, name="modality", func="StimulusSet")
        self._ids = [str(i) for i in ids]
        if len(set(self._ids)) != len(self._ids):
            seen: set[str] = set()
            dups = sorted({i for i in self._ids if i in seen or seen.add(i)})
            raise ValueError(
                f"Invalid value for 'ids' in StimulusSet(): duplicated stimulus ids "
                f"{format_list(dups, limit=10)}. Expected unique ids."
            )
        self.modality: Modality = modality
        self._loader = loader
        self.source = {k: list(v) for k, v in (source or {}).items()}
        for key, values in self.source.items():
            if len(values) != len(self._ids):
                raise ValueError(
                    f"Invalid value for 'source' in StimulusSet(): {key!r} has {len(values)} "
                    f"values, expected one per stimulus ({len(self._ids)})."
                )
        self._fingerprint = dict(fingerprint or {})
        self._index = {sid: i for i, sid in enumerate(self._ids)}

    # -- table ----------------------------------------------------------------------
    @property
    def ids(self) -> list[str]:
        """The stimulus ids, in order."""
        return list(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __repr__(self) -> str:
        src = ", ".join(self.source) or "none"
        return f"<StimulusSet {len(self)} {self.modality} stimuli; source: {src}>"

    def __contains__(self, stimulus_id: object) -> bool:
        return stimulus_id in self._index

    def to_dataframe(self):
        """The set as a table.

        Returns
        -------
        pandas.DataFrame
            One row per stimulus, indexed by ``stimulus_id``, with ``modality`` and the
            source columns (e.g. ``image_file``).
        """
        import pandas as pd

        df = pd.DataFrame({"modality": [self.modality] * len(self), **self.source})
        df.index = pd.Index(self._ids, name="stimulus_id")
        return df

    def positions(self, stimulus_ids: Sequence[str]) -> np.ndarray:
        """Positions of ``stimulus_ids`` in the set.

        Parameters
        ----------
        stimulus_ids : sequence of str
            Ids to look up.

        Returns
        -------
        ndarray of int
            Their positions, in the order given.

        Raises
        ------
        StimulusMismatchError
            Some ids are not in the set (the message names them).
        """
        missing = [s for s in stimulus_ids if s not in self._index]
        if missing:
            raise StimulusMismatchError(
                f"{len(missing)} stimulus id(s) not in the stimulus set: "
                f"{format_list(missing, limit=10)}."
            )
        return np.array([self._index[s] for s in stimulus_ids], dtype=int)

    def subset(self, stimulus_ids: Sequence[str]) -> StimulusSet:
        """A new set holding ``stimulus_ids`` (in that order), loading from the same source.

        Parameters
        ----------
        stimulus_ids : sequence of str
            Ids of this set.

        Returns
        -------
        StimulusSet
            The subset (its content hash stays tied to the same source).
        """
        pos = self.positions(list(stimulus_ids))
        parent = self._loader

        def loader(indices: Sequence[int]) -> list[Any]:
            return parent([int(pos[i]) for i in indices])

        return StimulusSet(
            [self._ids[p] for p in pos], modality=self.modality, loader=loader,
            source={k: [v[p] for p in pos] for k, v in self.source.items()},
            fingerprint=self._fingerprint,
        )

    # -- loading --------------------------------------------------------------------
    def load(self, indices: Sequence[int] | slice | None = None) -> list[Any]:
        """Load the stimuli at ``indices``.

        Parameters
        ----------
        indices : sequence of int, slice or None
            Positions in the set (negative ones count from the end); ``None`` loads all.

        Returns
        -------
        list
            uint8 arrays ``(H, W, 3)`` for images, ``str`` for texts.
        """
        if indices is None:
            indices = range(len(self))
        elif isinstance(indices, slice):
            indices = range(*indices.indices(len(self)))
        idx = [int(i) for i in indices]
        bad = [i for i in idx if not -len(self) <= i < len(self)]
        if bad:
            raise IndexError(
                f"Invalid value for 'indices' in StimulusSet.load(): {bad[:5]!r}. "
                f"Expected positions in [0, {len(self)})."
            )
        idx = [i % len(self) for i in idx]
        return list(self._loader(idx)) if idx else []

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            key = int(self.positions([key])[0])
        return self.load([key])[0]

    def iter_batches(self, batch_size: int):
        """Load the set batch by batch, in order.

        Parameters
        ----------
        batch_size : int
            Stimuli per batch.

        Yields
        ------
        start, stop : int
            Positions of the batch.
        items : list
            The loaded stimuli (as :meth:`load`).
        """
        for start in range(0, len(self), batch_size):
            stop = min(start + batch_size, len(self))
            yield start, stop, self.load(range(start, stop))

    # -- identity -------------------------------------------------------------------
    def content_hash(self) -> str:
        """A hash of the ids, the modality and where the content comes from.

        Texts and in-memory arrays are hashed by value; files by path, size and
        modification time. Used in feature-cache keys.

        Returns
        -------
        str
            32 hexadecimal characters.
        """
        payload = json.dumps(
            {"ids": self._ids, "modality": self.modality, "content": self._fingerprint},
            sort_keys=True, default=str,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:32]

    # -- constructors ---------------------------------------------------------------
    @classmethod
    def from_texts(cls, texts: Mapping[str, str] | Sequence[str], *, prefix: str = "text") -> StimulusSet:
        """Texts as stimuli.

        Parameters
        ----------
        texts : mapping of id to str, or sequence of str
            A sequence gets ids ``"{prefix}-00000"``, ``"{prefix}-00001"``, ...
        prefix : str
            Id prefix for a sequence.
        """
        if isinstance(texts, Mapping):
            ids, values = list(texts.keys()), list(texts.values())
        elif isinstance(texts, str) or not isinstance(texts, Sequence):
            raise TypeError(
                f"Invalid value for 'texts' in StimulusSet.from_texts(): {type(texts).__name__}. "
                "Expected a mapping of stimulus id to text or a list of texts."
            )
        else:
            values = list(texts)
            ids = [f"{prefix}-{i:05d}" for i in range(len(values))]
        bad = [i for i, v in zip(ids, values, strict=True) if not isinstance(v, str)]
        if bad:
            raise TypeError(
                f"Invalid value for 'texts' in StimulusSet.from_texts(): stimuli "
                f"{format_list(bad, limit=5)} are not str."
            )
        digest = hashlib.sha256("\x00".join(values).encode()).hexdigest()

        def loader(indices: Sequence[int]) -> list[str]:
            return [values[i] for i in indices]

        return cls(ids, modality="text", loader=loader, fingerprint={"texts": digest})

    @classmethod
    def from_story(
        cls, words: str | Sequence[str], *, story: str = "story"
    ) -> StimulusSet:
        """One stimulus per word of a naturalistic story (word-level features).

        The set carries ``story`` and ``word_index`` sources, so feature extraction can feed
        each word with its preceding words as context (``extract(..., context=N)``).

        Parameters
        ----------
        words : str or sequence of str
            The story (split on whitespace) or its words.
        story : str
            Story name; ids are ``"{story}-w00000"``, ...
        """
        if isinstance(words, str):
            words = words.split()
        words = [str(w) for w in words]
        if not words:
            raise ValueError(
                "Invalid value for 'words' in StimulusSet.from_story(): an empty story. "
                "Expected at least one word."
            )
        ids = [f"{story}-w{i:05d}" for i in range(len(words))]
        digest = hashlib.sha256("\x00".join(words).encode()).hexdigest()

        def loader(indices: Sequence[int]) -> list[str]:
            return [words[i] for i in indices]

        return cls(
            ids, modality="text", loader=loader,
            source={"story": [story] * len(words), "word_index": list(range(len(words))),
                    "word": list(words)},
            fingerprint={"story": digest},
        )

    @classmethod
    def from_arrays(cls, images: np.ndarray, ids: Sequence[str] | None = None) -> StimulusSet:
        """In-memory images as stimuli.

        Parameters
        ----------
        images : ndarray of uint8, shape (N, H, W, 3)
            The images.
        ids : sequence of str, optional
            Their stimulus ids (default ``image-00000``, ``image-00001``, ...).

        Returns
        -------
        StimulusSet
            An image set hashed by the pixel values.
        """
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise DataFormatError(
                f"Invalid value for 'images' in StimulusSet.from_arrays(): dtype "
                f"{images.dtype}, shape {images.shape}. Expected uint8 (N, H, W, 3)."
            )
        ids = [f"image-{i:05d}" for i in range(len(images))] if ids is None else list(ids)
        digest = hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()

        def loader(indices: Sequence[int]) -> list[np.ndarray]:
            return [images[i] for i in indices]

        return cls(ids, modality="image", loader=loader, fingerprint={"arrays": digest})

    @classmethod
    def from_folder(
        cls, path: str | os.PathLike, *, extensions: Sequence[str] = IMAGE_EXTENSIONS
    ) -> StimulusSet:
        """Every image file under ``path`` (recursively, sorted).

        Ids are the file paths relative to ``path`` without extension (``cat/001``).

        Parameters
        ----------
        path : path-like
            The folder.
        extensions : sequence of str
            File suffixes counted as images (case-insensitive).

        Returns
        -------
        StimulusSet
            An image set reading the files on demand.
        """
        root = Path(path)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: no such folder of images.")
        exts = {e.lower() for e in extensions}
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in exts)
        if not files:
            raise DataFormatError(
                f"{root}: no image files (expected extensions {format_list(sorted(exts))})."
            )
        rel = [f.relative_to(root).as_posix() for f in files]
        return cls._from_files(root, rel, [r.rsplit(".", 1)[0] for r in rel])

    @classmethod
    def _from_files(cls, root: Path, rel: list[str], ids: list[str]) -> StimulusSet:
        stats = []
        for r in rel:
            p = root / r
            if not p.is_file():
                raise FileNotFoundError(f"{p}: image file of stimulus set is missing.")
            st = p.stat()
            stats.append((r, st.st_size, st.st_mtime_ns))

        def loader(indices: Sequence[int]) -> list[np.ndarray]:
            return [_read_image(root / rel[i]) for i in indices]

        return cls(
            ids, modality="image", loader=loader, source={"image_file": rel},
            fingerprint={"files": hashlib.sha256(json.dumps(stats).encode()).hexdigest()},
        )

    @classmethod
    def from_hdf5(
        cls,
        path: str | os.PathLike,
        key: str = "imgBrick",
        *,
        indices: Sequence[int] | None = None,
        ids: Sequence[str] | None = None,
        id_name: str = "nsd_id",
    ) -> StimulusSet:
        """Images of an HDF5 brick ``(N, H, W, 3)`` uint8 (NSD's ``nsd_stimuli.hdf5``).

        Parameters
        ----------
        path : path-like
            The HDF5 file.
        key : str
            Dataset holding the brick.
        indices : sequence of int, optional
            Rows to use (default: all), recorded as source ``id_name``.
        ids : sequence of str, optional
            Stimulus ids (default ``nsd-{index:05d}``).
        id_name : str
            Name of the source identifier holding the row indices.
        """
        import h5py

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such HDF5 file.")
        with h5py.File(path, "r") as f:
            if key not in f:
                raise DataFormatError(
                    f"{path}: no dataset {key!r}. Expected one of {format_list(list(f.keys()))}."
                )
            shape, dtype = f[key].shape, f[key].dtype
        if len(shape) != 4 or shape[-1] != 3 or dtype != np.uint8:
            raise DataFormatError(
                f"{path}: dataset {key!r} has shape {shape} and dtype {dtype}, expected "
                "uint8 (N, H, W, 3)."
            )
        rows = np.arange(shape[0]) if indices is None else np.asarray(indices, dtype=int)
        if rows.size and (rows.min() < 0 or rows.max() >= shape[0]):
            raise IndexError(
                f"Invalid value for 'indices' in StimulusSet.from_hdf5(): values outside "
                f"[0, {shape[0]}) of {path} dataset {key!r}."
            )
        ids = [f"nsd-{int(r):05d}" for r in rows] if ids is None else list(ids)
        st = path.stat()

        def loader(pos: Sequence[int]) -> list[np.ndarray]:
            want = rows[np.asarray(pos, dtype=int)]
            # h5py fancy indexing needs increasing unique indices: sort, read, un-permute.
            uniq, inverse = np.unique(want, return_inverse=True)
            with h5py.File(path, "r") as f:
                block = f[key][uniq.tolist()] if len(uniq) > 1 else f[key][int(uniq[0]):int(uniq[0]) + 1]
            return list(block[inverse])

        return cls(
            ids, modality="image", loader=loader, source={id_name: rows.tolist()},
            fingerprint={"hdf5": str(path.resolve()), "key": key, "size": st.st_size,
                         "mtime": st.st_mtime_ns, "rows": hashlib.sha256(rows.tobytes()).hexdigest()},
        )

    @classmethod
    def from_store(cls, ds, *, stimulus_ids: Sequence[str] | None = None) -> StimulusSet:
        """The stimuli of a store, from its ``stimulus_set`` attribute.

        One entry per unique ``stimulus_id`` of the store, in order of first presentation.
        The attribute says where the pixels live: ``{"kind": "hdf5-brick", "path", "key",
        "id_coord"}`` (NSD) or ``{"kind": "image-files", "root", "file_coord"}``.

        Parameters
        ----------
        ds : xr.Dataset
            A store with a ``stimulus_id`` coordinate.
        stimulus_ids : sequence of str, optional
            Restrict to (and order by) these ids.
        """
        spec = ds.attrs.get("stimulus_set")
        if not isinstance(spec, Mapping) or "kind" not in spec:
            raise DataFormatError(
                f"store attribute 'stimulus_set' is {spec!r}; expected a dict with 'kind' "
                "('hdf5-brick' or 'image-files') saying where the stimuli live. Build the "
                "stimulus set with StimulusSet.from_folder() or from_hdf5() instead."
            )
        if "stimulus_id" not in ds.coords:
            raise DataFormatError(
                "store has no 'stimulus_id' coordinate; expected one on 'presentation'."
            )
        sid = np.asarray(ds["stimulus_id"].values).astype(str)
        _, first = np.unique(sid, return_index=True)
        first = np.sort(first)
        kind = spec["kind"]
        if kind == "hdf5-brick":
            coord = spec.get("id_coord", "nsd_id")
            if coord not in ds.coords:
                raise DataFormatError(
                    f"store attribute 'stimulus_set' names id_coord {coord!r}, but the store "
                    f"has no such coordinate (coordinates: {format_list(list(ds.coords))})."
                )
            rows = np.asarray(ds[coord].values)[first].astype(int)
            out = cls.from_hdf5(spec["path"], spec.get("key", "imgBrick"), indices=rows,
                                ids=sid[first].tolist(), id_name=coord)
        elif kind == "image-files":
            coord = spec.get("file_coord", "image_file")
            if coord not in ds.coords:
                raise DataFormatError(
                    f"store attribute 'stimulus_set' names file_coord {coord!r}, but the store "
                    f"has no such coordinate (coordinates: {format_list(list(ds.coords))})."
                )
            files = np.asarray(ds[coord].values).astype(str)[first].tolist()
            out = cls._from_files(Path(spec["root"]), files, sid[first].tolist())
        else:
            raise DataFormatError(
                f"store attribute 'stimulus_set' has kind {kind!r}; expected 'hdf5-brick' or "
                "'image-files'."
            )
        return out.subset(stimulus_ids) if stimulus_ids is not None else out
