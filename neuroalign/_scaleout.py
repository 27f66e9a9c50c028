"""Scale-out shared by every heavy entry point: ``cluster=`` and cached cells.

A heavy computation (a ridge fit, a searchlight, a shape distance matrix) is split into
cells whose results do not depend on one another (a batch of neuroids, a chunk of centres,
a block of pairs). Each cell is computed by a task (a module-level function) and written
under ``result_path/cells/<key>.npz``, the key a hash of everything that determines the
cell's result (the data, the features or models, the parameters, the folds and their
seed, the cell's own items). A cell is written beside its final name and renamed (never
half-written under its name) and carries a checksum of its arrays: a cell that does not
load or whose checksum does not match is computed again, and a temporary left by a killed
writer is never read (and removed by a later run once an hour old). A rerun with the same ``result_path`` loads the cells there and
computes only the missing ones (:func:`run_cells`), so a killed worker or driver costs only
the unfinished cells; cells of another computation have other keys and are never reused.

Where the cells run (``cluster=``, :func:`get_client`): in this process (None), on a
:class:`dask.distributed.LocalCluster` (``"local"``), on a running scheduler (its address,
or a ``Client``), or on Slurm / PBS through dask-jobqueue (``"slurm"``, ``"pbs"``; options
such as cores, memory, walltime, queue, account, job_extra in ``cluster_options``), or a
dict ``{"kind": ..., **options}`` as a recipe's ``[cluster]`` table gives it. On a
client, the cells wait for a first worker (jobs in a queue) and fail, naming the missing
cells, once every worker has gone (:mod:`neuroalign._scaleout_workers`). The cluster is
started only when a cell is to be computed (:attr:`ScaleOut.lazy`): a rerun whose cells
are all on disk starts none and submits no job.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from neuroalign._logging import get_logger, heartbeat, progress

__all__ = ["CLUSTER_KINDS", "Cell", "ScaleOut", "check_cell", "check_cluster",
           "clean_stale_temporaries", "fingerprint", "get_client", "make_cluster", "read_cell",
           "resolve_client", "run_cells", "write_cell"]

log = get_logger(__name__)

#: Values of ``cluster=`` besides a scheduler address, a ``Client`` or a dict.
CLUSTER_KINDS = ("local", "slurm", "pbs")
#: Options of dask-jobqueue clusters under the names recipes use -> dask-jobqueue's names.
_JOBQUEUE_ALIASES = {"job_extra": "job_extra_directives", "queue": "queue", "account": "account",
                     "env_extra": "job_script_prologue"}
#: Times the shared data of one run is scattered again after it was lost with every worker
#: holding it (the cells it cancelled are then submitted again).
MAX_RESCATTERS = 3
#: Keys of a ``cluster`` dict (a recipe's table) that are not cluster options.
RUN_KEYS = ("kind", "result_path", "batch_size")


# -- keys ----------------------------------------------------------------------------------
def fingerprint(*parts: Any) -> str:
    """Hash of arrays (values, dtype, shape), strings and JSON-able objects, in order."""
    return _digest(parts)


def _digest(parts: Iterable) -> str:
    """:func:`fingerprint` of the parts as they come (one of them in memory at a time)."""
    h = hashlib.blake2b(digest_size=20)
    for part in parts:
        _hash_part(h, part)
    return h.hexdigest()


def _hash_part(h, part: Any) -> None:
    if isinstance(part, np.ndarray):
        arr = np.ascontiguousarray(part)
        h.update(f"{arr.dtype.str}{arr.shape}".encode())
        h.update(arr.view(np.uint8).reshape(-1).data if arr.size else b"")
    else:
        h.update(json.dumps(part, sort_keys=True, default=str).encode())
    h.update(b"\x00")


# -- cells ---------------------------------------------------------------------------------
def cell_path(folder: str | os.PathLike, key: str) -> Path:
    """Where the cell of ``key`` lives under the results folder ``folder``."""
    return Path(folder) / "cells" / f"{key}.npz"


def _checksum(arrays: Mapping, names: Sequence[str]) -> str:
    """:func:`fingerprint` of the arrays ``names``, taken from ``arrays`` one at a time (a
    cell's ``np.load``: only one of its arrays in memory at once)."""
    return _digest(np.asarray(arrays[name]) for name in names)


def write_cell(path: str | os.PathLike, arrays: dict, names: Sequence[str]) -> None:
    """Write ``arrays`` (the variables ``names``) with their checksum, beside then renamed:
    a cell exists under its name only when complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, checksum=np.array(_checksum(arrays, names)),
                     **{k: np.asarray(arrays[k]) for k in names})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Cell(Mapping):
    """A cell written by :func:`write_cell`, left on disk: each array is read when asked
    for (``cell["coef"]``), so holding the cells of a whole fit costs nothing until they
    are assembled one at a time."""

    def __init__(self, path: str | os.PathLike, names: Sequence[str]) -> None:
        self.path = Path(path)
        self.names = tuple(names)

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.names:
            raise KeyError(name)
        with np.load(self.path, allow_pickle=False) as z:
            return np.asarray(z[name])

    def __iter__(self):
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"<Cell {self.path.name} {list(self.names)}>"


def check_cell(path: str | os.PathLike, names: Sequence[str]) -> bool:
    """Whether the cell at ``path`` is present, readable and matches its checksum, read
    one array at a time (a damaged one is logged, and computed again by its caller)."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as z:
            ok = str(z["checksum"]) == _checksum(z, names)
    except Exception as err:  # a damaged file: computed again
        log.warning("cached cell %s is unreadable (%s); computing it again", path.name, err)
        return False
    if not ok:
        log.warning("cached cell %s fails its checksum; computing it again", path.name)
        return False
    return True


def read_cell(path: str | os.PathLike, names: Sequence[str]) -> dict | None:
    """The cell's arrays, or None when it is missing, unreadable or fails its checksum."""
    return dict(Cell(path, names)) if check_cell(path, names) else None


#: A temporary cell file older than this (seconds) was left by a killed writer: removed.
STALE_TEMP_S = 3600.0


def clean_stale_temporaries(folder: str | os.PathLike, *, older_than: float = STALE_TEMP_S) -> int:
    """Remove the temporaries (``cells/.tmp-*.npz``, written by :func:`write_cell`) older
    than ``older_than`` seconds under the results folder ``folder``: what a killed writer
    left (a live writer renames its temporary within moments). Returns how many."""
    import time

    removed = 0
    now = time.time()
    for tmp in (Path(folder) / "cells").glob(".tmp-*.npz"):
        try:
            if now - tmp.stat().st_mtime > older_than:
                tmp.unlink()
                removed += 1
        except FileNotFoundError:  # renamed or removed meanwhile
            continue
    if removed:
        log.info("removed %d stale temporary cell file(s) under %s", removed, folder)
    return removed


def _run_task(path: str, names: tuple, task: Callable, shared: tuple, args: tuple,
              fail: str | None = None) -> str:
    """Worker side: ``task(*shared, *args)`` -> arrays, written as the cell ``path``.

    ``fail`` is for the tests: ``"raise"`` simulates a failing cell; ``"kill:<marker>"``
    kills this process (a worker dying mid-task) the first time, leaving ``<marker>``."""
    if fail == "raise":
        raise RuntimeError(f"simulated failure of cell {Path(path).stem}")
    if fail and fail.startswith("kill:"):
        marker = Path(fail[5:])
        if not marker.exists():
            marker.touch()
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
    write_cell(path, task(*shared, *args), names)
    return path


def _in_flight(client) -> int:
    """Cells submitted at a time: twice the workers (at least 4), so that the driver holds
    only a few batches (responses streamed from a store are read batch by batch)."""
    try:
        return max(4, 2 * len(client.scheduler_info()["workers"]))
    except Exception:  # pragma: no cover - a scheduler that does not answer: submit slowly
        return 4


def _futures_in(obj) -> list:
    """The futures of what ``client.scatter`` returned (a future, or lists, tuples and dicts
    of them, as the data scattered was)."""
    if isinstance(obj, list | tuple):
        return [f for o in obj for f in _futures_in(o)]
    if isinstance(obj, dict):
        return [f for o in obj.values() for f in _futures_in(o)]
    return [obj] if hasattr(obj, "status") else []


def _on_client(client, task, names, shared, todo, paths, args_of, fail) -> list:
    """Run the cells ``todo`` on ``client``, a bounded number in flight; the errors.

    When every worker holding the shared data is lost with it (a Slurm/PBS job cancelled,
    preempted or past its walltime), the cells it cancelled are kept, the data is scattered
    again once a worker is there (a job still in the queue, a worker of the user's cluster
    joining), and those cells are submitted again, up to ``MAX_RESCATTERS`` times. When
    every worker has gone (after one had joined) for ``LOST_WORKERS_TIMEOUT_S`` and no job
    of the cluster is still queued, the cells not done are cancelled and reported as
    errors rather than waited for for ever."""
    import time
    import warnings
    from concurrent.futures import CancelledError
    from itertools import chain, islice

    from dask.distributed import wait

    from neuroalign import _scaleout_workers as w

    w._wait_for_a_worker(client)  # jobs may wait in the queue: scatter would time out

    def scatter():
        # hash=False: a key of its own per run; with the content hash, two runs on the same
        # data share one key and releasing the first one's future can cancel the second one's
        return tuple(client.scatter(s, broadcast=True, hash=False) for s in shared)

    def submit(i):
        with warnings.catch_warnings():
            # a cell's own batch travels with its task (kept by the scheduler, so a task of
            # a worker that died is rerun elsewhere), never a whole array
            warnings.filterwarnings("ignore", message="Large object", category=UserWarning)
            fut = client.submit(_run_task, str(paths[i]), names, task, shared_f, args_of(i),
                                fail.get(i), pure=False)
        cell_of[fut] = i
        return fut

    def data_lost() -> bool:
        return any(f.status == "cancelled" for f in _futures_in(shared_f))

    shared_f = scatter()
    cell_of: dict = {}
    queue = iter(todo)
    pending = {submit(i) for i in islice(queue, _in_flight(client))}
    errors: list = []
    again: list[int] = []  # cells cancelled with the shared data: submitted after a re-scatter
    rescatters = 0
    joined, gone_since = bool(w._n_workers(client)), None
    while pending or again:
        if not pending:  # only cells waiting for a worker to scatter the data to again
            time.sleep(w._POLL_S)
            done = set()
        else:
            try:
                done, pending = wait(pending, timeout=w._POLL_S, return_when="FIRST_COMPLETED")
            except TimeoutError:
                done = set()
            except CancelledError:  # cells cancelled (e.g. their shared data lost with a worker)
                done = {f for f in pending if f.done()}
                pending -= done
        lost = data_lost()
        for fut in done:  # collected, then re-raised with the missing cells named
            i = cell_of.pop(fut)
            if lost and fut.status == "cancelled" and rescatters < MAX_RESCATTERS:
                again.append(i)  # cancelled with the data, not a failure of its own
            else:
                errors.extend(w._task_errors(fut))
        n = w._n_workers(client)
        if again and not pending and n:  # a worker is there: the data again, then the cells
            again = [i for i in again if not paths[i].exists()]  # (some finished meanwhile)
            rescatters += 1
            log.warning("the shared data was lost with its worker(s); scattering it again "
                        "(%d of %d) and submitting %d cell(s) again", rescatters,
                        MAX_RESCATTERS, len(again))
            shared_f = scatter()
            queue, again = chain(again, queue), []
        if not data_lost():  # (new cells would only be cancelled with it)
            for i in islice(queue, max(0, _in_flight(client) - len(pending))):
                pending.add(submit(i))
        if n:
            joined, gone_since = True, None
        elif n == 0 and joined:
            gone_since = time.monotonic() if gone_since is None else gone_since
            if time.monotonic() - gone_since > w.LOST_WORKERS_TIMEOUT_S and (
                    queued := w._jobs_still_queued(client)):
                log.info("every worker was lost; waiting for job(s) %s still in the queue",
                         ", ".join(queued))
                gone_since = time.monotonic()
            elif time.monotonic() - gone_since > w.LOST_WORKERS_TIMEOUT_S:
                log.warning("every worker was lost %.0f s ago; giving up %d cell(s) in flight",
                            w.LOST_WORKERS_TIMEOUT_S, len(pending) + len(again))
                client.cancel(list(pending))
                errors.insert(0, w._lost_workers(w.LOST_WORKERS_TIMEOUT_S))
                break
    if errors and w._n_workers(client) == 0 and not any(
            str(e).startswith("every worker was lost") for e in errors):
        # cells cancelled because their workers died with the shared data: say so first
        errors.insert(0, RuntimeError("every worker was lost (a Slurm/PBS job cancelled, "
                                      "preempted or past its walltime?)"))
    return errors


def run_cells(task: Callable, keys: Sequence[str], args_of: Callable[[int], tuple], *,
              names: Sequence[str], folder: str | os.PathLike, shared: tuple = (),
              client=None, what: str = "cells", fail: dict | None = None,
              rerun_hint: str = "Call it again with the same result_path to complete them.",
              lazy: bool = False) -> tuple[list, dict]:
    """Cached cells: load the cells of ``keys`` found under ``folder``, compute the others
    with ``task(*shared, *args_of(i))`` (a dict of the arrays ``names``) on ``client``'s
    workers (``shared`` scattered once to all of them) or in this process (``client`` may
    be a function that returns the client, called only when a cell is to be computed: a
    rerun whose cells are all on disk starts no cluster), write each as
    it completes, and return ``(cells, info)``: the arrays of every cell in order (with
    ``lazy``, each a :class:`Cell` left on disk, its arrays read when asked for, for a
    caller that assembles them one at a time while ``folder`` exists), and
    ``{"n_batches", "computed", "skipped", "result_path"}``. The cached cells are checked
    one at a time and not held while the others are computed.

    A cell that fails is named in a ``RuntimeError`` after the others have run; the cells
    written stay, so a rerun computes only the missing ones.
    """
    names = tuple(names)
    fail = dict(fail or {})
    clean_stale_temporaries(folder)
    paths = [cell_path(folder, k) for k in keys]
    loaded = {i for i, p in enumerate(paths) if check_cell(p, names)}
    todo = [i for i in range(len(paths)) if i not in loaded]
    log.info("%s: %d cells, %d cached, %d to compute", what, len(paths), len(loaded), len(todo))
    errors = []
    if client is not None and todo:  # a lazy client starts its cluster only now
        with heartbeat(f"{what}: {len(todo)} cell(s) on the cluster"):
            errors = _on_client(resolve_client(client), task, names, shared, todo, paths,
                                args_of, fail)
    else:
        for i in progress(todo, desc=what, unit="cell", total=len(todo)):
            try:
                _run_task(str(paths[i]), names, task, shared, args_of(i), fail.get(i))
            except Exception as err:
                errors.append(err)
    cells = [Cell(p, names) if i in loaded or check_cell(p, names) else None
             for i, p in enumerate(paths)]
    if not lazy:
        cells = [None if c is None else dict(c) for c in cells]
    missing = [i for i, c in enumerate(cells) if c is None]
    if errors or missing:
        first = errors[0] if errors else None
        raise RuntimeError(
            f"{what}: {len(missing)} cell(s) failed ({first!r}); batches {missing!r} of "
            f"{folder} are missing. {rerun_hint}"
        ) from first
    info = {"n_batches": len(paths), "computed": todo, "skipped": sorted(loaded),
            "result_path": str(folder)}
    return cells, info


# -- clusters ------------------------------------------------------------------------------
class kept_environ:
    """This process's environment as it was when the object was made, put back by
    :meth:`restore` or at the end of a ``with`` block.

    Starting worker processes with dask's ``Nanny`` (a ``LocalCluster`` of processes, or a
    worker killed and replaced) sets ``distributed.nanny.pre-spawn-environ`` in the
    parent's ``os.environ`` for good (``OMP_NUM_THREADS=1``, ``MKL_NUM_THREADS=1``,
    ``OPENBLAS_NUM_THREADS=1``, ``MALLOC_TRIM_THRESHOLD_=65536``): every process the user
    starts afterwards would inherit them. Variables added inside are removed, changed ones
    put back.

    Examples
    --------
    >>> import os
    >>> with kept_environ():
    ...     os.environ["NEUROALIGN_EXAMPLE"] = "1"
    >>> "NEUROALIGN_EXAMPLE" in os.environ
    False
    """

    def __init__(self) -> None:
        self.saved = dict(os.environ)

    def __enter__(self) -> kept_environ:
        return self

    def __exit__(self, *exc) -> None:
        self.restore()

    def restore(self) -> None:
        """Put the environment back as it was when this object was made."""
        for key in set(os.environ) - set(self.saved):
            del os.environ[key]
        for key, value in self.saved.items():
            if os.environ.get(key) != value:
                os.environ[key] = value


def make_cluster(kind: str, options: dict | None = None):
    """A dask cluster object (not yet scaled): ``"local"`` (LocalCluster; options
    ``n_workers``, ``threads_per_worker``, ``processes``, ``memory_limit``), ``"slurm"`` or
    ``"pbs"`` (dask-jobqueue ``SLURMCluster`` / ``PBSCluster``; options as dask-jobqueue
    takes them: ``cores``, ``memory``, ``walltime``, ``queue``, ``account``, ``processes``,
    ``job_extra`` (or ``job_extra_directives``), ``local_directory``, ``python`` ...; the
    option ``jobs`` is for :func:`get_client`). The job script it would submit is
    ``cluster.job_script()``."""
    from neuroalign._validation import check_option

    check_option(kind, CLUSTER_KINDS, name="cluster", func="make_cluster")
    opts = dict(options or {})
    opts.pop("jobs", None)
    if kind == "local":
        from dask.distributed import LocalCluster

        opts.setdefault("threads_per_worker", 1)
        opts.setdefault("dashboard_address", ":0")
        try:
            return LocalCluster(**opts)
        except RuntimeError as err:
            if not opts.get("processes", True):
                raise
            raise RuntimeError(
                "cluster='local': its worker processes failed to start. A script that starts "
                "a local cluster of processes must run its code under `if __name__ == "
                "\"__main__\":` (each worker process imports the script again; the errors "
                "above are theirs); or pass cluster options {'processes': False} for threads "
                f"in this process. ({err})"
            ) from err
    try:
        import dask_jobqueue
    except ImportError as err:
        raise ImportError(
            f"cluster={kind!r} needs dask-jobqueue: pip install 'neuroalign[cluster]'."
        ) from err
    for alias, real in _JOBQUEUE_ALIASES.items():
        if alias in opts and alias != real:
            opts[real] = opts.pop(alias)
    opts.setdefault("scheduler_options", {"dashboard_address": ":0"})
    cls = dask_jobqueue.SLURMCluster if kind == "slurm" else dask_jobqueue.PBSCluster
    try:
        return cls(**opts)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"Invalid value for 'cluster_options' with cluster={kind!r}: {options!r} ({err}). "
            f"Expected options of dask_jobqueue.{cls.__name__} (cores, memory, walltime, queue, "
            "account, job_extra, ...)."
        ) from err


def check_cluster(cluster, *, func: str = "fit") -> str:
    """The kind of ``cluster=`` (``"local"``, ``"slurm"``, ``"pbs"`` or the scheduler's
    address; ``"client"`` for a dask Client), checked without starting anything; a
    ``ValueError`` naming the value otherwise."""
    if hasattr(cluster, "submit") and hasattr(cluster, "scheduler_info"):
        return "client"
    kind = cluster.get("kind") if isinstance(cluster, dict) else cluster
    if isinstance(kind, str) and (kind in CLUSTER_KINDS or "://" in kind or ":" in kind):
        return kind
    raise ValueError(
        f"Invalid value for 'cluster' in {func}(): {cluster!r}. Expected None, 'local', "
        "'slurm', 'pbs', a scheduler address such as 'tcp://host:8786', a dask Client, "
        "or a table {kind = ..., options...}."
    )


def resolve_client(client):
    """``client`` as :func:`run_cells` takes it (a dask Client, a function returning one,
    e.g. :attr:`ScaleOut.lazy`, or None) -> the Client or None."""
    if client is None or hasattr(client, "submit"):
        return client
    return client()


def get_client(cluster, options: dict | None = None, *, func: str = "fit"):
    """``cluster=`` -> ``(client, close)``: ``close()`` shuts down what was started here
    (None for a Client passed in, which is used as is and not closed).

    ``cluster``: a ``dask.distributed.Client``; ``"local"``; a scheduler address
    (``"tcp://host:8786"``); ``"slurm"`` or ``"pbs"`` (with ``options["jobs"]`` jobs,
    default 1); or a dict ``{"kind": ..., **options}`` as a recipe's ``cluster`` table
    gives it (its ``result_path`` and ``batch_size`` are not cluster options and are left
    out here).
    """
    from dask.distributed import Client

    if isinstance(cluster, Client):
        return cluster, None
    kind = check_cluster(cluster, func=func)
    if isinstance(cluster, dict):
        options = {k: v for k, v in cluster.items() if k not in RUN_KEYS} | dict(options or {})
        cluster = kind
    if kind not in CLUSTER_KINDS:  # a scheduler address
        client = Client(cluster)
        return client, client.close
    env = kept_environ()  # dask's nanny would leave its variables behind
    try:
        obj = make_cluster(cluster, options)
        if cluster != "local":
            obj.scale(jobs=int((options or {}).get("jobs", 1)))
        client = Client(obj)
    finally:
        env.restore()

    def close():
        try:
            client.close()
            try:
                obj.close()
            except AssertionError as err:  # dask-jobqueue, closing a job never submitted
                log.warning("closing the %s cluster: %r", cluster, err)
        finally:  # a worker replaced meanwhile set them again
            env.restore()

    return client, close


class ScaleOut:
    """The scale-out arguments of one call (``cluster``, ``cluster_options``, ``client``,
    ``result_path``, ``batch_size``), resolved once: ``active`` says whether cells are
    asked for at all; as a context manager it checks them and shuts down on exit the
    cluster started here (if any); ``folder`` is ``result_path`` or a fresh temporary
    folder, removed on a successful exit (``result_path`` is then None; after a failure it
    stays, for a rerun). A Slurm/PBS cluster or a scheduler address needs ``result_path``:
    the workers write the cells that this process reads, so on a folder both see.

    The cluster is started lazily, by the first read of :attr:`client` (
    :func:`run_cells` given :attr:`lazy` reads it only when a cell is to be computed): a
    rerun whose cells are all on disk starts no cluster and submits no job.

    A ``cluster`` dict (a recipe's table) may carry ``result_path`` and ``batch_size``,
    used when the call's own are None.
    """

    def __init__(self, *, cluster=None, cluster_options=None, client=None, result_path=None,
                 batch_size=None, func: str = "fit", prefix: str = "neuroalign-") -> None:
        if isinstance(cluster, dict):
            result_path = cluster.get("result_path") if result_path is None else result_path
            batch_size = cluster.get("batch_size") if batch_size is None else batch_size
            if cluster.get("kind") in (None, "none"):
                cluster = None
        elif cluster == "none":
            cluster = None
        self.cluster, self.options, self._given = cluster, cluster_options, client
        self.result_path, self.batch_size, self.func = result_path, batch_size, func
        self.prefix = prefix
        self.fail: dict | None = None  # for the tests: {cell: "raise" | "kill:<marker>"}
        self._client = None
        self._close = None
        self._temporary = False

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.cluster, self._given, self.result_path))

    @property
    def distributed(self) -> bool:
        """Whether cells run on a dask client (one given, or a cluster to start)."""
        return self.cluster is not None or self._given is not None

    @property
    def client(self):
        """The dask Client the cells run on (None: in this process); the first read starts
        the cluster named (or calls the lazy client given)."""
        if self._client is None and self._given is not None:
            self._client = resolve_client(self._given)
        elif self._client is None and self.cluster is not None:
            self._client, self._close = get_client(self.cluster, self.options, func=self.func)
        return self._client

    @property
    def lazy(self):
        """What to pass as ``client`` to :func:`run_cells`: a function that starts the
        cluster and returns the client when first called (None: in this process)."""
        if not self.distributed:
            return None
        return lambda: self.client

    @property
    def folder(self) -> Path:
        if self.result_path is None:
            self.result_path = tempfile.mkdtemp(prefix=self.prefix)
            self._temporary = True
        return Path(self.result_path)

    def __enter__(self) -> ScaleOut:
        kind = None if self.cluster is None else check_cluster(self.cluster, func=self.func)
        remote = kind is not None and (kind in ("slurm", "pbs") or ":" in kind)
        if self.result_path is None and self._given is None and remote:
            raise ValueError(
                f"Invalid value for 'result_path' in {self.func}(): None with cluster={kind!r}. "
                "Expected a folder that the workers and this process share (the workers write "
                "the cells, this process reads them)."
            )
        return self

    def __exit__(self, exc_type=None, *exc) -> None:
        if self._close is not None:
            self._close()
        self._close, self._client = None, None
        if self._temporary and exc_type is None and self.result_path is not None:
            import shutil

            shutil.rmtree(self.result_path, ignore_errors=True)
            self.result_path = None
