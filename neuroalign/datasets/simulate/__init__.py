"""Simulated ground-truth brains, written in published dataset formats.

:func:`simulate` generates procedural images, passes them through a seeded network
(torchvision ResNet-18 by default), and makes each simulated ROI's neuroids sparse linear
read-outs of one layer plus trial noise at a chosen ncsnr. The result is written as an
NSD-format tree (``format="nsd"``) or a THINGS-EEG2-format tree (``format="things-eeg2"``,
each sensor group responding at its own latency), with ``truth.json`` holding the answer:
the layer of each ROI, the true ncsnr and noise ceiling of each neuroid, the generating
model and its seed. ``store.zarr`` beside it is the store the files encode.

:func:`simulate_nsd_scale` writes an NSD-size subject instead (NSD's full design and
grids, a low-rank signal with known ncsnr), session by session in bounded memory, for
benchmarks of ingest at scale.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr

from neuroalign._logging import get_logger
from neuroalign._validation import check_option, check_positive_int
from neuroalign.datasets.simulate._common import write_json_atomic
from neuroalign.datasets.simulate._eeg import CHANNELS, SENSOR_GROUPS, simulate_things_eeg2
from neuroalign.datasets.simulate._images import FAMILIES, make_images
from neuroalign.datasets.simulate._nsd import ATLAS_LABELS, DEFAULT_ROIS, nsd_paths, simulate_nsd
from neuroalign.datasets.simulate._routing import ROUTING_ROI, token_activations
from neuroalign.datasets.simulate._scale import ScaleSimulation, simulate_nsd_scale
from neuroalign.datasets.simulate._store import nsd_stimulus_id, volume_neuroid_id
from neuroalign.datasets.simulate._truth import (
    GroundTruthBrain,
    ROISpec,
    build_network,
    pooled_activations,
    preprocess,
)

__all__ = [
    "simulate",
    "simulation_settings",
    "SimulationResult",
    "GroundTruthBrain",
    "ROISpec",
    "DEFAULT_ROIS",
    "planted_unit_rois",
    "ATLAS_LABELS",
    "CHANNELS",
    "SENSOR_GROUPS",
    "FAMILIES",
    "make_images",
    "build_network",
    "pooled_activations",
    "preprocess",
    "ROUTING_ROI",
    "token_activations",
    "nsd_paths",
    "nsd_stimulus_id",
    "volume_neuroid_id",
    "simulate_nsd_scale",
    "ScaleSimulation",
]

log = get_logger(__name__)

FORMATS = ("nsd", "things-eeg2")
TRUTH_FILE = "truth.json"
STORE_FILE = "store.zarr"


@dataclass
class SimulationResult:
    """A simulated dataset on disk (a dataclass; fields as parameters).

    Parameters
    ----------
    root : Path
        The dataset folder (NSD or THINGS-EEG2 layout).
    format : str
        ``"nsd"`` or ``"things-eeg2"``.
    truth : dict
        The content of ``truth.json``.
    """

    root: Path
    format: str
    truth: dict[str, Any]

    @property
    def truth_path(self) -> Path:
        return self.root / TRUTH_FILE

    @property
    def store_path(self) -> Path:
        return self.root / STORE_FILE

    def store(self, chunks=None) -> xr.Dataset:
        """The store the simulated files encode (opened from ``store.zarr``).

        Parameters
        ----------
        chunks : optional
            As :func:`neuroalign.store.open_store`.

        Returns
        -------
        xr.Dataset
            The trial-level store.
        """
        from neuroalign.store import open_store

        return open_store(self.store_path, chunks=chunks)

    def brain(self) -> GroundTruthBrain:
        """The ground truth as a callable model of every neuroid's noise-free response.

        Returns
        -------
        GroundTruthBrain
            The network and read-out weights of ``truth.json``.
        """
        return GroundTruthBrain.from_truth(self.truth)

    def layer_of_roi(self) -> dict[str, str]:
        """The layer each simulated ROI reads.

        Returns
        -------
        dict of str to str
            ``{roi: layer}``, in hierarchy order.
        """
        return dict(self.truth["layer_of_roi"])

    def true_ncsnr(self) -> xr.DataArray:
        """True ncsnr per neuroid (peak ncsnr per sensor for EEG), indexed like the store.

        Returns
        -------
        xr.DataArray
            On ``neuroid``, with ``neuroid_id``.
        """
        key = "ncsnr" if self.format == "nsd" else "ncsnr_peak"
        ids = [n["neuroid_id"] for n in self.truth["neuroids"]]
        return xr.DataArray(
            np.array([n[key] for n in self.truth["neuroids"]]),
            dims="neuroid", coords={"neuroid_id": ("neuroid", ids)}, name="true_ncsnr",
        )

    def true_noise_ceiling(self) -> xr.DataArray:
        """True noise ceiling (percent) per neuroid for the test-set averages.

        Returns
        -------
        xr.DataArray
            On ``neuroid``, with ``neuroid_id``.
        """
        key = "noise_ceiling" if self.format == "nsd" else "noise_ceiling_peak"
        ids = [n["neuroid_id"] for n in self.truth["neuroids"]]
        return xr.DataArray(
            np.array([n[key] for n in self.truth["neuroids"]]),
            dims="neuroid", coords={"neuroid_id": ("neuroid", ids)}, name="true_noise_ceiling",
        )

    @classmethod
    def load(cls, root: str | Path) -> SimulationResult:
        """Open a simulated dataset written earlier (reads ``truth.json``).

        Parameters
        ----------
        root : path-like
            The dataset folder.

        Returns
        -------
        SimulationResult
            The dataset and its truth.

        Raises
        ------
        FileNotFoundError
            ``root`` holds no ``truth.json``.
        """
        root = Path(root)
        path = root / TRUTH_FILE
        if not path.exists():
            raise FileNotFoundError(
                f"{path}: no truth.json; {root} is not a finished simulation "
                "(write one with neuroalign.datasets.simulate or `neuroalign simulate`)."
            )
        truth = json.loads(path.read_text())
        return cls(root=root, format=truth["format"], truth=truth)

    def summary(self) -> str:
        """A short description: the true network, the layer of each ROI, the ncsnr range.

        Returns
        -------
        str
            Several lines.
        """
        t = self.truth
        lines = [f"simulated {t['format']} dataset at {self.root}",
                 f"ground truth: {t['model']['arch']} (seed {t['model']['seed']}), layers by ROI:"]
        for roi, layer in t["layer_of_roi"].items():
            lines.append(f"  {roi:<18} <- {layer}")
        key = "ncsnr" if self.format == "nsd" else "ncsnr_peak"
        vals = np.array([n[key] for n in t["neuroids"] if n.get("layer")])
        if vals.size:
            lines.append(f"driven neuroids: {vals.size}, true ncsnr {vals.min():.2f} .. {vals.max():.2f}")
        return "\n".join(lines)


def planted_unit_rois(
    rois: tuple[ROISpec, ...] = DEFAULT_ROIS, units_per_roi: int = 3, *, seed: int = 0
) -> tuple[ROISpec, ...]:
    """Give each ROI its own planted units ("named units drive specific ROIs").

    Every ROI without ``units`` gets ``units_per_roi`` distinct channels of its layer,
    drawn (seeded) from the first 64 channels (every stage of the torchvision ResNets has
    at least 64). ROIs that share a layer get disjoint channels. ROIs that already name
    their units keep them.

    Parameters
    ----------
    rois : tuple of ROISpec
        The simulated ROIs (default :data:`DEFAULT_ROIS`).
    units_per_roi : int
        Planted channels per ROI (1..64).
    seed : int
        Seed of the draw.

    Returns
    -------
    tuple of ROISpec
    """
    from dataclasses import replace

    units_per_roi = check_positive_int(units_per_roi, name="units_per_roi", func="planted_unit_rois")
    if units_per_roi > 64:
        raise ValueError(
            f"Invalid value for 'units_per_roi' in planted_unit_rois(): {units_per_roi!r}. "
            "Expected an integer between 1 and 64."
        )
    rng = np.random.default_rng(seed + 7919)
    taken: dict[str, set[int]] = {}
    out = []
    for spec in rois:
        if spec.units is not None:
            taken.setdefault(spec.layer, set()).update(spec.units)
            out.append(spec)
            continue
        free = np.array(sorted(set(range(64)) - taken.get(spec.layer, set())))
        if len(free) < units_per_roi:
            raise ValueError(
                f"planted_unit_rois(): layer {spec.layer!r} has only {len(free)} free channels "
                f"left for ROI {spec.name!r}; expected at least units_per_roi={units_per_roi}."
            )
        units = tuple(int(u) for u in np.sort(rng.choice(free, size=units_per_roi, replace=False)))
        taken.setdefault(spec.layer, set()).update(units)
        out.append(replace(spec, units=units))
    return tuple(out)


def _json_value(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    return str(value)


def simulation_settings(**kwargs: Any) -> dict[str, Any]:
    """The settings of a :func:`simulate` call with ``kwargs``: every argument but ``out``
    and ``overwrite``, defaults filled in, as JSON values. ``simulate`` records them in
    ``truth.json["settings"]``; a recipe's ``[store.simulate]`` compares them with the
    simulation it finds.

    Returns
    -------
    dict

    Raises
    ------
    TypeError
        A keyword that is not an argument of :func:`simulate`.
    """
    bound = inspect.signature(simulate).bind_partial(**kwargs)
    bound.apply_defaults()
    args = {k: v for k, v in bound.arguments.items() if k not in ("out", "overwrite")}
    return json.loads(json.dumps(args, sort_keys=True, default=_json_value))


def simulate(
    out: str | Path,
    *,
    format: Literal["nsd", "things-eeg2"] = "nsd",
    n_images: int = 240,
    n_test: int = 40,
    n_repetitions: int | None = None,
    n_test_repetitions: int = 20,
    n_sessions: int = 6,
    image_size: int = 96,
    seed: int = 0,
    arch: str = "resnet18",
    model_seed: int = 0,
    rois: tuple[ROISpec, ...] | None = None,
    ncsnr_range: tuple[float, float] = (0.4, 1.6),
    volume_shape: tuple[int, int, int] = (18, 22, 16),
    withhold_sessions: int = 0,
    n_active: int = 8,
    units_per_roi: int | None = None,
    overwrite: bool = False,
    write_store: bool = True,
    routing_roi: bool = False,
    routing_grid: int = 7,
) -> SimulationResult:
    """Simulate a brain with a known answer and write it in a published format.

    Parameters
    ----------
    out : path-like
        Output folder. Written atomically: the tree appears at ``out`` only when complete.
    format : {"nsd", "things-eeg2"}
        NSD tree (volume betas, int16 x300 HDF5 per session, ROI NIfTIs, ``.ctab`` labels,
        ``ncsnr.nii.gz``) or THINGS-EEG2 tree (preprocessed ``.npy`` dicts, JPEG images,
        ``image_metadata.npy``).
    n_images, n_test : int
        Total images, and how many of them form the test split (NSD: the shared images).
    n_repetitions : int, optional
        Presentations per image (NSD default 3; THINGS-EEG2 training default 4).
    n_test_repetitions : int
        THINGS-EEG2 only: presentations per test image (published: 80).
    n_sessions : int
        NSD only: sessions; ``n_images * n_repetitions`` must divide evenly.
    image_size : int
        Side of the square images in pixels.
    seed : int
        Seed of images, design, read-outs and noise.
    arch, model_seed : str, int
        The ground-truth torchvision architecture and the seed of its random weights.
    rois : tuple of ROISpec, optional
        NSD only: simulated ROIs (default :data:`DEFAULT_ROIS`: V1v <- layer1,
        hV4 <- layer2, PPA <- layer3, FFA-1 <- layer4).
    ncsnr_range : (float, float)
        True ncsnr of driven neuroids is drawn uniformly from this range.
    volume_shape : (int, int, int)
        NSD only: volume (X, Y, Z).
    withhold_sessions : int
        NSD only: leave out the last sessions' beta files, as public NSD copies do.
    n_active : int
        Channels read out by each neuroid (sparsity of the read-out).
    units_per_roi : int, optional
        NSD only: "named units drive specific ROIs". Every ROI of ``rois`` that does not
        name its ``units`` gets ``units_per_roi`` planted channels of its layer (see
        :func:`planted_unit_rois`), and all of its voxels read out only those channels.
        The planted channels are recorded in ``truth["rois"][name]["units"]``.
    overwrite : bool
        Replace an existing ``out``.
    write_store : bool
        Also save the encoded store as ``out/store.zarr``.
    routing_roi : bool
        NSD only: paste a target object at a random cell of a ``routing_grid`` x
        ``routing_grid`` layout in every image and add ROI ``EBA`` whose voxels read out
        ``layer3`` at the target's cell (see :mod:`._routing`); ``truth.json["routing"]``
        records each image's target cell. Off by default (outputs unchanged).
    routing_grid : int
        Grid of target positions (and of the token layout the routing ROI reads).

    Returns
    -------
    SimulationResult
        Its ``truth["settings"]`` records the arguments (:func:`simulation_settings`).
    """
    # first, while locals() holds only the arguments
    settings = simulation_settings(**{k: v for k, v in locals().items() if k != "out"})
    from neuroalign._config import require_torch
    from neuroalign.store import save_store
    from neuroalign.store._io import atomic_dir

    check_option(format, FORMATS, name="format", func="simulate")
    require_torch("neuroalign.datasets.simulate()")  # its ground truth is a torchvision network
    n_images = check_positive_int(n_images, name="n_images", func="simulate", minimum=4)
    n_test = check_positive_int(n_test, name="n_test", func="simulate")
    if n_test >= n_images:
        raise ValueError(
            f"Invalid value for 'n_test' in simulate(): {n_test!r}. Expected fewer than "
            f"n_images={n_images}."
        )
    if ncsnr_range[0] <= 0 or ncsnr_range[1] < ncsnr_range[0]:
        raise ValueError(
            f"Invalid value for 'ncsnr_range' in simulate(): {ncsnr_range!r}. Expected "
            "(low, high) with 0 < low <= high."
        )
    if units_per_roi is not None:
        units_per_roi = check_positive_int(units_per_roi, name="units_per_roi", func="simulate")
        rois = planted_unit_rois(tuple(rois) if rois else DEFAULT_ROIS, units_per_roi, seed=seed)
    out = Path(out)
    with atomic_dir(out, overwrite=overwrite, kind="simulation") as tmp:
        tmp.mkdir(parents=True)
        if format == "nsd":
            reps = 3 if n_repetitions is None else check_positive_int(
                n_repetitions, name="n_repetitions", func="simulate")
            if not 0 <= withhold_sessions < n_sessions:
                raise ValueError(
                    f"Invalid value for 'withhold_sessions' in simulate(): {withhold_sessions!r}. "
                    f"Expected 0 <= withhold_sessions < n_sessions={n_sessions}."
                )
            truth, store = simulate_nsd(
                tmp, n_images=n_images, n_test=n_test, n_repetitions=reps,
                n_sessions=check_positive_int(n_sessions, name="n_sessions", func="simulate"),
                image_size=image_size, seed=seed, arch=arch, model_seed=model_seed,
                rois=(tuple(rois) if rois else DEFAULT_ROIS) + ((ROUTING_ROI,) if routing_roi else ()),
                ncsnr_range=tuple(ncsnr_range),
                volume_shape=tuple(volume_shape), withhold_sessions=withhold_sessions,
                n_active=n_active,
                routing_grid=check_positive_int(routing_grid, name="routing_grid", func="simulate",
                                                minimum=2) if routing_roi else None,
            )
        else:
            if routing_roi:
                raise ValueError(
                    "Invalid value for 'routing_roi' in simulate(): True is only available with "
                    "format='nsd'."
                )
            reps = 4 if n_repetitions is None else check_positive_int(
                n_repetitions, name="n_repetitions", func="simulate")
            truth, store = simulate_things_eeg2(
                tmp, n_images=n_images, n_test=n_test, n_repetitions=reps,
                n_test_repetitions=check_positive_int(
                    n_test_repetitions, name="n_test_repetitions", func="simulate", minimum=2),
                image_size=image_size, seed=seed, arch=arch, model_seed=model_seed,
                ncsnr_range=tuple(ncsnr_range), n_active=n_active,
            )
        store.attrs["source"] = {"simulate": {"seed": seed, "format": format, "truth": TRUTH_FILE}}
        # Where the pixels live (read lazily by neuroalign.stimuli); paths are final, not tmp.
        if format == "nsd":
            store.attrs["stimulus_set"] = {
                "kind": "hdf5-brick",
                "path": str((out / "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5").resolve()),
                "key": "imgBrick",
                "id_coord": "nsd_id",
            }
        else:
            store.attrs["stimulus_set"] = {
                "kind": "image-files",
                "root": str((out / "image_set").resolve()),
                "file_coord": "image_file",
            }
        if write_store:
            save_store(store, tmp / STORE_FILE)
        truth["settings"] = settings
        write_json_atomic(truth, tmp / TRUTH_FILE)
    log.info("simulated %s dataset written to %s", format, out)
    return SimulationResult(root=out, format=format, truth=truth)
