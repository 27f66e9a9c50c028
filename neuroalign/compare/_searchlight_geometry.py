"""Searchlight neighbourhoods: spheres on a voxel grid, geodesic discs on a surface mesh.

Both are produced chunk by chunk over centres, as a padded table of neuroid indices
(``-1`` marks padding), so that no table for the whole brain is held in memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from neuroalign.exceptions import DimensionError

__all__ = ["VolumeSpheres", "SurfaceDiscs", "load_surface"]

_DIST_BYTES = 64 * 2**20  # dense Dijkstra distances computed at a time (surface discs)


def _check_radius(radius: Any) -> float:
    if isinstance(radius, bool) or not isinstance(radius, int | float | np.integer | np.floating) \
            or not np.isfinite(radius) or radius <= 0:
        raise ValueError(
            f"Invalid value for 'radius' in searchlight(): {radius!r}. Expected a positive "
            "number (voxels for a volume, mesh units, usually mm, for a surface)."
        )
    return float(radius)


class VolumeSpheres:
    """Spheres of voxels at a Euclidean distance ``< radius`` (in voxels) from each centre,
    as rsatoolbox's ``get_volume_searchlight``.

    Parameters
    ----------
    ijk : ndarray, shape (n_neuroids, 3)
        Integer voxel indices of the neuroids (the store's mask).
    radius : float
        Sphere radius in voxels (strictly less than, as rsatoolbox).
    volume_shape : tuple of 3 ints, optional
        The grid; sphere voxels outside it do not count towards ``threshold`` (as
        rsatoolbox). Default: unbounded.
    threshold : float
        A neuroid is a centre when at least this share of its sphere's voxels (on the grid)
        are neuroids. Spheres contain only neuroids.
    """

    def __init__(self, ijk: np.ndarray, radius: float, volume_shape=None, threshold: float = 1.0):
        ijk = np.asarray(ijk)
        if ijk.ndim != 2 or ijk.shape[1] != 3 or ijk.shape[0] == 0:
            raise DimensionError(
                f"Invalid value for 'ijk' in searchlight(): shape {ijk.shape!r}. Expected voxel "
                "indices of shape (n_neuroids, 3) (the store's coordinates i, j, k)."
            )
        if not np.array_equal(ijk, np.round(ijk)) or ijk.min() < 0:
            raise ValueError(
                "Invalid value for 'ijk' in searchlight(): voxel indices must be non-negative "
                f"integers; got values such as {ijk[np.argmax(ijk != np.round(ijk))].tolist()!r}."
            )
        self.radius = _check_radius(radius)
        self.ijk = ijk.astype(np.int64)
        top = self.ijk.max(axis=0) + 1
        if volume_shape is not None:
            volume_shape = tuple(int(s) for s in volume_shape)
            if len(volume_shape) != 3 or np.any(top > np.array(volume_shape)):
                raise DimensionError(
                    f"Invalid value for 'volume_shape' in searchlight(): {volume_shape!r}. "
                    f"Expected 3 sizes that contain every voxel index (at least {tuple(top)!r})."
                )
        self.shape = volume_shape
        self.threshold = threshold
        r = int(np.ceil(self.radius))
        g = np.arange(-r, r + 1)
        off = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
        self.offsets = off[(off**2).sum(1) < self.radius**2]
        # lookup table over the bounding box (padded by r): neuroid index or -1
        self._pad = r
        dims = tuple(top + 2 * r)
        self._lut = np.full(dims, -1, dtype=np.int64)
        p = self.ijk + r
        if len(np.unique(np.ravel_multi_index(p.T, dims))) != len(p):
            raise ValueError(
                "Invalid value for 'ijk' in searchlight(): repeated voxel indices. Expected "
                "one neuroid per voxel."
            )
        self._lut[p[:, 0], p[:, 1], p[:, 2]] = np.arange(len(p))
        self.n_neuroids = len(p)
        self.max_size = len(self.offsets)

    def chunks(self, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(centres, table)`` per chunk of neuroids: the centres among them (neuroid
        indices) and their spheres, ``(n_centres, max_size)`` with ``-1`` padding."""
        for start in range(0, self.n_neuroids, size):
            c = np.arange(start, min(start + size, self.n_neuroids))
            pos = self.ijk[c][:, None, :] + self.offsets[None]  # (c, n_off, 3)
            if self.shape is not None:
                on_grid = ((pos >= 0) & (pos < np.array(self.shape))).all(-1)
            else:
                on_grid = np.ones(pos.shape[:2], dtype=bool)
            q = pos + self._pad
            table = self._lut[q[..., 0], q[..., 1], q[..., 2]]  # padded box: never out of range
            table[~on_grid] = -1
            inside = (table >= 0).sum(1)
            keep = inside >= self.threshold * on_grid.sum(1) - 1e-9
            yield c[keep], table[keep]


def _mesh_graph(vertices: np.ndarray, faces: np.ndarray):
    """Sparse symmetric graph of the mesh's edges weighted by their Euclidean lengths.

    Built with few temporaries (the memory preflight counts them: with ``F`` faces and
    ``E`` edges, at most ``72 F`` bytes for the edge keys and ``56 E`` for the CSR build).
    An edge between two vertices at the same place is kept, of length 0 (an explicit zero,
    which scipy's Dijkstra follows)."""
    import scipy.sparse as sp

    n = len(vertices)
    f = faces.astype(np.int64)
    b = f[:, [1, 2, 0]]
    key = np.minimum(f, b)  # each face's three edges as one key, lower vertex first
    np.maximum(f, b, out=b)
    key *= n
    key += b
    del f, b
    key = np.unique(key)
    i, j = np.divmod(key, n)
    del key
    w = np.zeros(len(i))
    for k in range(3):
        t = vertices[i, k] - vertices[j, k]
        t *= t
        w += t
    del t
    np.sqrt(w, out=w)
    idx = np.int32 if n < 2**31 else np.int64
    rows = np.concatenate([i, j]).astype(idx)
    cols = np.concatenate([j, i]).astype(idx)
    del i, j
    w = np.concatenate([w, w])
    return sp.csr_matrix((w, (rows, cols)), shape=(n, n))


def load_surface(name: str, hemisphere: str) -> tuple[np.ndarray, np.ndarray]:
    """``(vertices, faces)`` of a named template's white/pial midthickness surface.

    ``"fsaverage5"`` comes with nilearn (no download). ``"fsaverage"`` (163,842 vertices per
    hemisphere) is read from a FreeSurfer installation (``$SUBJECTS_DIR/fsaverage/surf`` or
    ``$FREESURFER_HOME/subjects/fsaverage/surf``, files ``lh.white`` and ``lh.pial``); it is
    never downloaded.
    """
    hemi = {"lh": "left", "rh": "right"}.get(hemisphere)
    if hemi is None:
        raise ValueError(
            f"Invalid hemisphere {hemisphere!r} in searchlight(): expected 'lh' or 'rh' "
            "(the store's 'hemisphere' coordinate)."
        )
    if name == "fsaverage5":
        from nilearn.datasets import load_fsaverage

        mesh = load_fsaverage("fsaverage5")
        white, pial = mesh["white_matter"].parts[hemi], mesh["pial"].parts[hemi]
        v = (np.asarray(white.coordinates) + np.asarray(pial.coordinates)) / 2
        return v, np.asarray(white.faces)
    if name == "fsaverage":
        import nibabel.freesurfer as fs

        dirs = [os.environ.get("SUBJECTS_DIR"), os.environ.get("FREESURFER_HOME")
                and str(Path(os.environ["FREESURFER_HOME"]) / "subjects")]
        for d in dirs:
            surf = Path(d) / "fsaverage" / "surf" if d else None
            if surf is not None and (surf / f"{hemisphere}.white").exists() \
                    and (surf / f"{hemisphere}.pial").exists():
                vw, f = fs.read_geometry(str(surf / f"{hemisphere}.white"))
                vp, _ = fs.read_geometry(str(surf / f"{hemisphere}.pial"))
                return (vw + vp) / 2, f
        raise FileNotFoundError(
            "searchlight(surface='fsaverage'): no FreeSurfer fsaverage found (looked for "
            f"{hemisphere}.white and {hemisphere}.pial under $SUBJECTS_DIR/fsaverage/surf and "
            "$FREESURFER_HOME/subjects/fsaverage/surf). Expected a FreeSurfer installation, or "
            "pass the mesh itself: surface={'lh': (vertices, faces), 'rh': (vertices, faces)}."
        )
    raise ValueError(
        f"Invalid value for 'surface' in searchlight(): {name!r}. Expected 'fsaverage', "
        "'fsaverage5', a mesh (vertices, faces) or a dict {'lh': mesh, 'rh': mesh}."
    )


class SurfaceDiscs:
    """Discs of mesh vertices within ``radius`` of each centre, distances along the mesh's
    edges (Dijkstra; an upper bound of the geodesic distance that approaches it on fine
    meshes).

    Parameters
    ----------
    meshes : dict
        ``hemisphere -> (vertices (n, 3), faces (m, 3))``.
    hemisphere : ndarray of str, shape (n_neuroids,)
        The hemisphere of each neuroid (a key of ``meshes``).
    vertex : ndarray of int, shape (n_neuroids,)
        The mesh vertex of each neuroid.
    radius : float
        Disc radius in mesh units (mm for FreeSurfer surfaces), inclusive.
    threshold : float
        A neuroid is a centre when at least this share of its disc's vertices are neuroids.
    """

    def __init__(self, meshes: dict, hemisphere: np.ndarray, vertex: np.ndarray,
                 radius: float, threshold: float = 1.0):
        self.radius = _check_radius(radius)
        self.threshold = threshold
        self.hemisphere = np.asarray(hemisphere).astype(str)
        self.vertex = np.asarray(vertex).astype(np.int64)
        self.graphs, self.luts, self.coords, self.n_faces = {}, {}, {}, {}
        for h in np.unique(self.hemisphere):
            if h not in meshes:
                raise ValueError(
                    f"Invalid value for 'surface' in searchlight(): no mesh for hemisphere {h!r} "
                    f"(meshes given: {sorted(meshes)!r}). Expected one mesh per hemisphere of "
                    "the data."
                )
            v, f = (np.asarray(a) for a in meshes[h])
            if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3:
                raise DimensionError(
                    f"Invalid value for 'surface' in searchlight(): mesh {h!r} with vertices "
                    f"{v.shape!r} and faces {f.shape!r}. Expected (n, 3) coordinates and (m, 3) "
                    "vertex indices."
                )
            idx = np.flatnonzero(self.hemisphere == h)
            if self.vertex[idx].max() >= len(v) or self.vertex[idx].min() < 0:
                raise DimensionError(
                    f"searchlight(): the data has vertex {int(self.vertex[idx].max())} in "
                    f"hemisphere {h!r} but its mesh has {len(v)} vertices. Expected the mesh of "
                    "the data's surface space."
                )
            self.coords[h] = v.astype(np.float64)
            self.graphs[h] = _mesh_graph(self.coords[h], f)
            self.n_faces[h] = len(f)
            lut = np.full(len(v), -1, dtype=np.int64)
            lut[self.vertex[idx]] = idx
            self.luts[h] = lut
        self.n_neuroids = len(self.vertex)
        self.max_size = None
        self.max_chunk = 512  # centres per chunk (their Dijkstra runs on one subgraph)
        self.widest_exact = None  # set by widest(): whether its widths are exact

    def _order(self, h: str) -> np.ndarray:
        """The neuroids of hemisphere ``h`` in the order of a grid of cells of ``4 radius``
        (so that a chunk's balls overlap)."""
        idx = np.flatnonzero(self.hemisphere == h)
        xyz = self.coords[h]
        cell = np.floor((xyz[self.vertex[idx]] - xyz.min(0)) / (4 * self.radius)).astype(np.int64)
        return idx[np.lexsort(cell.T[::-1])]

    def _balls(self, h: str, tree, c: np.ndarray) -> list:
        """The mesh vertices within ``radius`` (straight line) of each centre of ``c``."""
        return tree.query_ball_point(self.coords[h][self.vertex[c]],
                                     self.radius * (1 + 1e-9) + 1e-12)

    def chunks(self, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(centres, table)`` per chunk of spatially close centres (at most
        ``max_chunk``).

        A path of length at most ``radius`` never leaves the Euclidean ball of that radius
        around its start, so each chunk's Dijkstra runs on the subgraph of the vertices
        within ``radius`` (straight line, a KD-tree query) of its centres: exact, and its
        cost does not grow with the size of the mesh. Centres are taken in the order of a
        grid of cells of ``4 radius`` so that a chunk's balls overlap. Only the table of a
        chunk outlives its construction (:meth:`_discs`).
        """
        from scipy.spatial import cKDTree

        rows_max = max(1, min(size, self.max_chunk))
        for h in self.graphs:
            idx = self._order(h)
            tree = cKDTree(self.coords[h])
            for start in range(0, len(idx), rows_max):
                c = idx[start:start + rows_max]
                keep, table = self._discs(h, tree, c)
                yield c[keep], table
            del tree

    def widest(self, budget: int = 2**25) -> tuple[int, int, int]:
        """``(neuroids, vertices, ball)``: the most neuroids and mesh vertices in a disc,
        and the most mesh vertices in a Euclidean ball of ``radius``: for the memory
        preflight (a chunk's table is as wide as its widest disc's neuroids).

        A disc lies inside the Euclidean ball of the same radius around its centre (a path
        is never shorter than the straight line), so the ball's counts, found for every
        centre by a KD-tree, bound the disc's. The discs are searched (Dijkstra on the
        subgraph of the ball, as :meth:`chunks`) in decreasing order of their ball until
        no unsearched ball can hold a wider disc: then the widths are exact (on a folded
        cortex the widest discs are rare, and an even sample misses them). ``budget``
        caps the work (mesh vertices in the balls searched, per hemisphere): when it runs
        out, the widths are the largest ball counts left, an upper bound (and
        :attr:`widest_exact` is False). Measured: exact for fsaverage5 (both hemispheres,
        6-15 mm) in 0.1-1.9 s; at fsaverage's density (163,842 vertices per hemisphere),
        6 mm in 3.3 s and 10 mm in 9.7 s per hemisphere."""
        from scipy.sparse.csgraph import dijkstra
        from scipy.spatial import cKDTree

        r, most = self.radius, [1, 1, 1]
        self.widest_exact = True
        for h, graph in self.graphs.items():
            idx = np.flatnonzero(self.hemisphere == h)
            lut = self.luts[h]
            tree = cKDTree(self.coords[h])
            at = self.coords[h][self.vertex[idx]]
            reach = r * (1 + 1e-9) + 1e-12  # as _balls
            n_ball = tree.query_ball_point(at, reach, return_length=True)
            if (lut >= 0).all():
                n_nb = n_ball
            else:  # neuroids in the ball: the same query on the neuroids' vertices
                n_nb = cKDTree(self.coords[h][lut >= 0]).query_ball_point(
                    at, reach, return_length=True)
            most[2] = max(most[2], int(n_ball.max()))
            order = np.argsort(-n_ball, kind="stable")
            # the most neuroids any ball from position i on can hold
            left_nb = np.maximum.accumulate(n_nb[order][::-1])[::-1]
            spent = 0
            for i, j in enumerate(order):
                if n_ball[j] <= most[1] and left_nb[i] <= most[0]:
                    break  # no ball left can hold a wider disc: exact
                if spent >= budget:  # the largest balls left bound the discs
                    most[1] = max(most[1], int(n_ball[j]))
                    most[0] = max(most[0], int(left_nb[i]))
                    self.widest_exact = False
                    break
                centre = idx[j]
                cand = np.sort(np.asarray(self._balls(h, tree, idx[j:j + 1])[0],
                                          dtype=np.int64))
                spent += len(cand)
                d = dijkstra(graph[cand][:, cand], limit=r * (1 + 1e-12),
                             indices=np.searchsorted(cand, self.vertex[centre]))
                disc = cand[d <= r]
                most[0] = max(most[0], int((lut[disc] >= 0).sum()))
                most[1] = max(most[1], len(disc))
            del tree
        return most[0], most[1], most[2]

    def candidates(self, size: int) -> int:
        """The most mesh vertices a chunk's Dijkstra runs on (the union of its centres'
        balls, over every chunk of ``size`` centres): for the memory preflight (the
        chunk's distances are ``rows x candidates``).

        Exact, without listing every ball: a chunk's centres are grouped by cells of side
        ``radius``; the union lies in the balls of radius ``radius`` + the group's spread
        around each group's centroid (a few KD-tree queries per chunk), whose vertices
        within ``radius`` of a centre (a KD-tree of the chunk's centres) are counted. (An
        even sample of 16 chunks, used before, was up to 45 % low on a folded cortex at
        fsaverage's density.)"""
        from scipy.spatial import cKDTree

        rows_max = max(1, min(size, self.max_chunk))
        reach = self.radius * (1 + 1e-9) + 1e-12  # as _balls
        most = 1
        for h in self.graphs:
            idx = self._order(h)
            xyz = self.coords[h]
            tree = cKDTree(xyz)
            for start in range(0, len(idx), rows_max):
                pts = xyz[self.vertex[idx[start:start + rows_max]]]
                _, group = np.unique(np.floor(pts / self.radius).astype(np.int64), axis=0,
                                     return_inverse=True)
                group = group.ravel()
                count = np.bincount(group).astype(np.float64)
                mid = np.stack([np.bincount(group, weights=pts[:, k]) for k in range(3)], 1)
                mid /= count[:, None]
                spread = np.zeros(len(count))
                np.maximum.at(spread, group, np.sqrt(((pts - mid[group]) ** 2).sum(1)))
                near = tree.query_ball_point(mid, spread * (1 + 1e-9) + reach)
                near = np.unique(np.concatenate([np.asarray(b, dtype=np.int64)
                                                 for b in near]))
                d, _ = cKDTree(pts).query(xyz[near], distance_upper_bound=2 * reach)
                most = max(most, int((d <= reach).sum()))
            del tree
        return most

    def _discs(self, h: str, tree, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(keep, table)`` of the centres ``c`` (all in hemisphere ``h``): which pass
        ``threshold``, and their discs as a padded table of neuroid indices (``-1``)."""
        from scipy.sparse.csgraph import dijkstra

        r, lut = self.radius, self.luts[h]
        src = self.vertex[c]
        balls = self._balls(h, tree, c)
        cand = np.unique(np.concatenate([np.asarray(b, dtype=np.int64) for b in balls]))
        del balls
        sub = self.graphs[h][cand][:, cand]
        step = max(1, _DIST_BYTES // (8 * len(cand)))
        pieces = []
        for s0 in range(0, len(c), step):
            d = dijkstra(sub, indices=np.searchsorted(cand, src[s0:s0 + step]),
                         limit=r * (1 + 1e-12))
            rr, cc = np.nonzero(d <= r)
            del d
            pieces.append((rr + s0, cand[cc]))
            del rr, cc
        del sub
        rows = np.concatenate([p[0] for p in pieces])
        nb = lut[np.concatenate([p[1] for p in pieces])]
        del pieces
        total = np.bincount(rows, minlength=len(c))
        inside = np.bincount(rows, weights=nb >= 0, minlength=len(c))
        keep = inside >= self.threshold * total - 1e-9
        rows, nb = rows[nb >= 0], nb[nb >= 0]
        counts = np.bincount(rows, minlength=len(c))
        width = int(counts.max()) if len(counts) else 0
        table = np.full((len(c), max(width, 1)), -1, dtype=np.int64)
        slot = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
        table[rows, slot] = nb
        return keep, table[keep]
