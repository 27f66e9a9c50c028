"""THINGS-fMRI single-trial table format (DATASETS.md §6) -> store.

``sub-0X_ResponseData.h5`` is a pandas HDFStore (fixed format, key ``ResponseData``);
reading it needs PyTables, the optional extra ``neuroalign[tables]``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import xarray as xr

from neuroalign._validation import format_list
from neuroalign.datasets._formats import repetition_index, require_file
from neuroalign.exceptions import DataFormatError
from neuroalign.store._schema import SCHEMA_VERSION

__all__ = ["load_things_fmri", "find_things_fmri_files"]

_NON_ROI = ("voxel_id", "subject_id", "voxel_x", "voxel_y", "voxel_z")
_NON_ROI_PREFIX = ("nc_", "splithalf", "prf-")


def _require_tables() -> None:
    try:
        import tables  # noqa: F401
    except ImportError as err:
        raise ImportError(
            "Reading THINGS-fMRI ResponseData (a pandas HDFStore) needs PyTables, which is not "
            "installed. Install the optional extra: pip install 'neuroalign[tables]'."
        ) from err


def find_things_fmri_files(root: str | os.PathLike, subject: int | str) -> dict[str, Path]:
    """Paths of the response table, stimulus and voxel metadata of ``subject``.

    Looks for the figshare names (``betas_csv/sub-0X_ResponseData.h5``,
    ``sub-0X_StimulusMetadata.csv``, ``sub-0X_VoxelMetadata.csv``) under ``root`` and
    ``root/betas_csv``, then for the OpenNeuro names under
    ``derivatives/ICA-betas/sub-0X/voxel-metadata``.
    """
    root = Path(root)
    n = subject if isinstance(subject, int) else int(re.sub(r"\D", "", str(subject)) or 0)
    sub = f"sub-{n:02d}"
    layouts = [
        (d, {"responses": f"{sub}_ResponseData.h5", "stimuli": f"{sub}_StimulusMetadata.csv",
             "voxels": f"{sub}_VoxelMetadata.csv"})
        for d in (root, root / "betas_csv")
    ] + [(root / f"derivatives/ICA-betas/{sub}/voxel-metadata",
          {"responses": f"{sub}_task-things_voxel-wise-responses.h5",
           "stimuli": f"{sub}_task-things_stimulus-metadata.tsv",
           "voxels": f"{sub}_task-things_voxel-metadata.tsv"})]
    for folder, names in layouts:
        if (folder / names["responses"]).exists():
            return {k: folder / v for k, v in names.items()}
    raise FileNotFoundError(
        f"{root}: no THINGS-fMRI response table for {sub} (looked for "
        f"{format_list(str(f / n['responses']) for f, n in layouts)})."
    )


def _read_csv(path: Path, required: list[str], what: str):
    import pandas as pd

    require_file(path, what)
    df = pd.read_csv(path)  # the OpenNeuro ".tsv" files are comma-separated too
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataFormatError(
            f"{path}: missing column(s) {format_list(missing)}. Columns present: {format_list(list(df.columns))}."
        )
    return df


def load_things_fmri(root: str | os.PathLike, subject: int | str) -> xr.Dataset:
    """Load THINGS-fMRI single-trial responses of one subject as a store.

    Parameters
    ----------
    root : path-like
        Folder with the table-format files (see :func:`find_things_fmri_files`).
    subject : int or str
        1..3 or ``"sub-01"``.

    Returns
    -------
    xr.Dataset
        Store with ``responses`` of dims ('presentation', 'neuroid'), presentations in
        ``trial_id`` order (catch trials are not in the table). ``stimulus_id`` is
        ``things-<file stem>``; ``split`` from ``trial_type``; ``session``, ``run``,
        ``concept``. Neuroids are the table's voxels with ``i, j, k`` (voxel_x/y/z), one
        ``roi_<column>`` per 0/1 ROI column of the voxel metadata, and variables
        ``noise_ceiling`` (``nc_testset``) and ``noise_ceiling_singletrial``.

    Raises
    ------
    ImportError
        PyTables is missing (install ``neuroalign[tables]``).
    """
    import pandas as pd

    _require_tables()
    files = find_things_fmri_files(root, subject)
    path = files["responses"]
    n = subject if isinstance(subject, int) else int(re.sub(r"\D", "", str(subject)))
    sub = f"sub-{n:02d}"
    try:
        with pd.HDFStore(path, mode="r") as store:
            keys = [k.lstrip("/") for k in store.keys()]
            if "ResponseData" not in keys:
                raise DataFormatError(
                    f"{path}: has no key 'ResponseData'. Keys present: {format_list(keys) or 'none'}."
                )
            table = store["ResponseData"]
    except DataFormatError:
        raise
    except Exception as err:
        raise DataFormatError(
            f"{path}: cannot be read as a pandas HDFStore ({type(err).__name__}: {err}); the file "
            "is truncated or corrupt."
        ) from err
    if "voxel_id" not in table.columns:
        raise DataFormatError(
            f"{path}: 'ResponseData' has no column 'voxel_id'. Expected 'voxel_id' then trial columns 0..N-1."
        )
    stim = _read_csv(files["stimuli"], ["trial_type", "session", "run", "trial_id", "stimulus"],
                     "THINGS-fMRI stimulus metadata")
    vox = _read_csv(files["voxels"], ["voxel_id", "voxel_x", "voxel_y", "voxel_z"], "THINGS-fMRI voxel metadata")
    trial_cols = {int(c): c for c in table.columns if c != "voxel_id"}
    missing = [t for t in stim.trial_id if int(t) not in trial_cols]
    if missing:
        raise DataFormatError(
            f"{files['stimuli']}: trial_id(s) {format_list(missing, limit=5)} have no column in "
            f"{path.name} ({len(trial_cols)} trial columns)."
        )
    stim = stim.sort_values("trial_id", kind="stable").reset_index(drop=True)
    table = table.set_index("voxel_id")
    if len(vox) != len(table) or not np.array_equal(vox.voxel_id.to_numpy(), table.index.to_numpy()):
        missing_v = np.setdiff1d(vox.voxel_id.to_numpy(), table.index.to_numpy())
        if len(vox) != len(table) or missing_v.size:
            raise DataFormatError(
                f"{files['voxels']}: {len(vox)} voxels, but {path.name} has {len(table)}; expected the "
                "same voxel_id values."
            )
        table = table.loc[vox.voxel_id.to_numpy()]
    values = table[[trial_cols[int(t)] for t in stim.trial_id]].to_numpy(dtype=np.float32).T
    del table
    bad = sorted(set(stim.trial_type) - {"train", "test"})
    if bad:
        raise DataFormatError(
            f"{files['stimuli']}: trial_type values {format_list(bad)}, expected only 'train' and 'test' "
            "(catch trials are excluded from the table format)."
        )
    ids = np.array([f"things-{Path(str(s)).stem}" for s in stim.stimulus])
    coords = {
        "stimulus_id": ("presentation", ids),
        "repetition": ("presentation", repetition_index(ids)),
        "session": ("presentation", stim.session.to_numpy().astype(np.int64)),
        "run": ("presentation", stim.run.to_numpy().astype(np.int64)),
        "trial": ("presentation", stim.trial_id.to_numpy().astype(np.int64)),
        "split": ("presentation", stim.trial_type.to_numpy().astype(str)),
        "image_file": ("presentation", stim.stimulus.to_numpy().astype(str)),
        "neuroid_id": ("neuroid", np.array([f"{sub}_{v}" for v in vox.voxel_id])),
        "subject": ("neuroid", np.array([sub] * len(vox))),
        "voxel_id": ("neuroid", vox.voxel_id.to_numpy().astype(np.int64)),
        "i": ("neuroid", vox.voxel_x.to_numpy().astype(np.int64)),
        "j": ("neuroid", vox.voxel_y.to_numpy().astype(np.int64)),
        "k": ("neuroid", vox.voxel_z.to_numpy().astype(np.int64)),
    }
    if "concept" in stim.columns:
        coords["concept"] = ("presentation", stim.concept.to_numpy().astype(str))
    for col in vox.columns:
        if col in _NON_ROI or col.startswith(_NON_ROI_PREFIX):
            continue
        v = vox[col].to_numpy()
        if v.dtype.kind in "biuf" and np.isin(v, (0, 1)).all():
            coords[f"roi_{col}"] = ("neuroid", v.astype(bool))
    data_vars = {"responses": (("presentation", "neuroid"), values)}
    if "nc_testset" in vox.columns:
        data_vars["noise_ceiling"] = ("neuroid", vox.nc_testset.to_numpy().astype(np.float32))
    if "nc_singletrial" in vox.columns:
        data_vars["noise_ceiling_singletrial"] = ("neuroid", vox.nc_singletrial.to_numpy().astype(np.float32))
    from neuroalign.store import check_store

    ds = xr.Dataset(data_vars, coords=coords, attrs={
        "dataset": "things-fmri", "space": "T1w", "units": "single-trial betas (a.u.)",
        "schema_version": SCHEMA_VERSION, "subject": sub,
        "source": {"files": [str(p) for p in files.values()]},
    })
    return check_store(ds)
