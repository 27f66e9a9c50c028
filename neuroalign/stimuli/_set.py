"""Stimulus sets: a table keyed by ``stimulus_id`` with a lazy loader for pixels or text."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from neuroalign._logging import get_logger
from neuroalign._validation import check_option, format_list
from neuroalign.exceptions import DataFormatError, StimulusMismatchError
from neuroalign.stimuli import _set_files
from neuroalign.stimuli._set_files import IMAGE_EXTENSIONS

__all__ = ["StimulusSet", "IMAGE_EXTENSIONS", "MODALITIES"]

log = get_logger(__name__)

MODALITIES = ("image", "text")
Modality = Literal["image", "text"]


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
    fingerprint : dict or callable, optional
        JSON-serialisable description of the content, hashed by :meth:`content_hash`
        together with the ids; or a function returning one, called by every
        :meth:`content_hash` (content that can change after the set is built: files,
        arrays).

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
        fingerprint: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
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
        self._fingerprint = fingerprint if callable(fingerprint) else dict(fingerprint or {})
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
        """A hash of the ids, the modality and the content, as it is when called.

        Keyed on content, never on modification times: texts and in-memory arrays are
        hashed by value (arrays with their shape and dtype); image files by the SHA-256 of
        their bytes, with their paths relative to the set's folder and the version of the
        rules that read them into pixels; an HDF5 brick by the bytes of the rows the set
        uses. A file rewritten with other content keeps no hash, whatever its size and
        mtime; a touched or copied file keeps its hash. Used in feature-cache keys
        (:func:`~neuroalign.features.extract`).

        Every call reads the content again: about 0.07 s for 1,000 JPEGs of 58 kB
        (decoding them takes 1.2 s), 0.8 s per GB of an HDF5 brick or 0.6 s per GB of
        arrays, when the files are in the page cache; otherwise a read of the files.

        Returns
        -------
        str
            32 hexadecimal characters.
        """
        content = self._fingerprint() if callable(self._fingerprint) else self._fingerprint
        payload = json.dumps(
            {"ids": self._ids, "modality": self.modality, "content": content},
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
            The images. They are not copied: the set serves them as they are when loaded,
            and :meth:`content_hash` hashes them (with their shape and dtype) as they are
            when it is called, so an edit in place after building the set changes both
            together. (Hashing them again costs about 0.6 s per GB at each call, where a
            copy would double the memory they take.)
        ids : sequence of str, optional
            Their stimulus ids, one per image (default ``image-00000``, ``image-00001``,
            ...).

        Returns
        -------
        StimulusSet
            An image set hashed by the pixel values. Each image loaded is a copy.

        Raises
        ------
        DataFormatError
            ``images`` is not uint8 ``(N, H, W, 3)``.
        ValueError
            ``ids`` does not hold one id per image.
        """
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise DataFormatError(
                f"Invalid value for 'images' in StimulusSet.from_arrays(): dtype "
                f"{images.dtype}, shape {images.shape}. Expected uint8 (N, H, W, 3)."
            )
        ids = [f"image-{i:05d}" for i in range(len(images))] if ids is None else list(ids)
        if len(ids) != len(images):
            raise ValueError(
                f"Invalid value for 'ids' in StimulusSet.from_arrays(): {len(ids)} ids for "
                f"{len(images)} images (shape {images.shape}). Expected one id per image."
            )

        def fingerprint() -> dict[str, Any]:
            digest = hashlib.sha256()
            for i in range(len(images)):  # image by image: no copy of the whole array
                digest.update(np.ascontiguousarray(images[i]).data)
            return {"arrays": digest.hexdigest(), "shape": list(images.shape),
                    "dtype": images.dtype.str}

        def loader(indices: Sequence[int]) -> list[np.ndarray]:
            return [images[i].copy() for i in indices]

        return cls(ids, modality="image", loader=loader, fingerprint=fingerprint)

    # -- constructors from files (:mod:`neuroalign.stimuli._set_files`) ----------------
    from_folder = classmethod(_set_files.from_folder)
    _from_files = classmethod(_set_files._from_files)
    from_hdf5 = classmethod(_set_files.from_hdf5)
    from_store = classmethod(_set_files.from_store)
