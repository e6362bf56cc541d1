"""Where a search's candidates run: Dask or Ray, through joblib, so that ``mlp-xp search`` and the estimators in
scikit-learn's ``GridSearchCV`` scale out the same way (``with joblib.parallel_backend("dask"): ...``).

:func:`open_engine` starts or joins a cluster and makes its joblib backend the active one until it is closed:

* ``dask`` with ``local:N``: a local cluster of N worker processes (one candidate each), every worker's BLAS
  limited to ``blas_threads`` threads through its environment and, where this machine has GPUs and the search
  may use them, each worker pinned to one GPU by ``CUDA_VISIBLE_DEVICES`` (round robin, so that no two workers
  share a GPU while there are enough), which ``device="auto"`` and ``"cuda"`` then honour as the worker's
  ``cuda:0``. ``tcp://host:port`` joins a running scheduler; pinning its workers is the cluster's part (dask-cuda's
  ``LocalCUDACluster`` or ``dask-cuda-worker`` gives each worker one GPU; see the README).
* ``ray`` with ``local`` or ``local:N``: a Ray started here on N CPUs (all by default), its files in a temporary
  folder removed on closing; another address (``auto``, ``ray://host:port``) joins a running cluster. Each
  candidate asks Ray for ``blas_threads`` CPUs and, where the cluster has GPUs and the search may use them, one
  GPU, which Ray pins by ``CUDA_VISIBLE_DEVICES``.

A candidate limits its BLAS to ``blas_threads`` itself too (:func:`limited_blas`), so that a joined cluster whose
workers were started with other settings computes as the sequential search with that thread count.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .errors import ConfigError, install_hint

__all__ = ["ENGINES", "Engine", "limited_blas", "open_engine", "parse_address"]

ENGINES = ("dask", "ray")
_BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass
class Engine:
    """An open cluster whose joblib backend is active: ``workers`` candidates at once, ``describe`` for people,
    ``remote_args`` what each task asks of the cluster, ``close`` to leave it."""

    name: str
    workers: int
    describe: str
    remote_args: dict = field(default_factory=dict)
    close: Callable[[], None] = lambda: None


def parse_address(engine: str, address: str | None) -> tuple[str, int | None]:
    """("local", N or None) or ("remote", address), with a one-line error naming the forms."""
    text = (address or "local").strip()
    if text == "local" or text.startswith("local:"):
        if text == "local":
            return "local", None
        try:
            n = int(text.split(":", 1)[1])
        except ValueError:
            n = 0
        if n < 1:
            raise ConfigError(f"--{engine} {text}: give local:N with N >= 1 workers, e.g. local:2")
        return "local", n
    if engine == "dask" and not text.startswith(("tcp://", "tls://", "ucx://", "inproc://")):
        raise ConfigError(
            f"--dask {text}: give local:N (a local cluster of N workers) or a scheduler's address, e.g. tcp://host:8786"
        )
    return "remote", text


#: What each engine imports, by top-level name: checked before any data are read (:func:`check_installed`).
_PACKAGES = {"dask": ("dask", "distributed"), "ray": ("ray",)}


def check_installed(name: str) -> None:
    """Refuse ``--dask`` or ``--ray`` where its packages are missing, without importing them (a search would
    otherwise load its data first)."""
    for module in _PACKAGES[name]:
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"--{name} needs {module}: {install_hint(name)}")


def _need(module: str, extra: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise ConfigError(f"--{extra} needs {module.split('.')[0]}: {install_hint(extra)}") from None


@contextlib.contextmanager
def limited_blas(threads: int | None) -> Iterator[None]:
    """BLAS limited to ``threads`` threads inside the block (threadpoolctl, which scikit-learn brings); None: as
    it is."""
    if threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    from .backend import blas

    # threadpoolctl limits the libraries loaded when the block starts: MKL is loaded on first use, so now
    with contextlib.suppress(ConfigError):
        blas.find()
    with threadpool_limits(limits=threads, user_api="blas"):
        yield


def _visible_gpus() -> list[str]:
    """This machine's GPUs as CUDA_VISIBLE_DEVICES entries (honouring the variable where it is set)."""
    from .backend import cuda_devices

    n = len(cuda_devices())
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return [d.strip() for d in given.split(",") if d.strip()][:n]
    return [str(i) for i in range(n)]


def _dask(address: str | None, blas_threads: int, gpus: list[str]) -> Engine:
    distributed = _need("dask.distributed", "dask")
    kind, n = parse_address("dask", address)
    if kind == "remote":
        try:
            client = distributed.Client(address, timeout="10s")
        except OSError as e:
            raise ConfigError(f"--dask {address}: no scheduler answered ({e}): check the address") from None
        workers = sum(client.nthreads().values())
        return Engine("dask", workers, f"dask at {address}: {workers} worker threads", close=client.close)
    n = n or os.cpu_count() or 1
    dask = _need("dask", "dask")
    # Set before the worker processes start: OpenBLAS reads its thread count when it loads, and a worker's
    # logging is set up as it imports distributed (the cluster's INFO lines would bury the search's own).
    spawn_env = {
        **dask.config.get("distributed.nanny.pre-spawn-environ", {}),
        **{name: str(blas_threads) for name in _BLAS_ENV},
        "DASK_LOGGING__DISTRIBUTED": "error",
    }
    scratch = tempfile.mkdtemp(prefix="mlpxp-dask-")
    settings = dask.config.set(
        {
            "distributed.nanny.pre-spawn-environ": spawn_env,
            "logging.distributed": "error",
            "temporary-directory": scratch,
        }
    )
    for name in [k for k in logging.root.manager.loggerDict if k.startswith("distributed")] + ["distributed"]:
        logging.getLogger(name).setLevel(logging.ERROR)
    specs = {}
    for i in range(n):
        options = {"nthreads": 1, "dashboard": False, "local_directory": scratch}
        if gpus:  # read by CuPy when it first touches CUDA, after the worker has started
            options["env"] = {"CUDA_VISIBLE_DEVICES": gpus[i % len(gpus)]}
        specs[f"worker-{i}"] = {"cls": distributed.Nanny, "options": options}
    scheduler = {"cls": distributed.Scheduler, "options": {"dashboard": False, "dashboard_address": None}}
    try:
        cluster = distributed.SpecCluster(workers=specs, scheduler=scheduler, silence_logs=logging.ERROR)
        client = distributed.Client(cluster)
    except BaseException:
        settings.__exit__(None, None, None)
        shutil.rmtree(scratch, ignore_errors=True)
        raise

    def close() -> None:
        try:
            client.close()
            cluster.close()
        finally:
            settings.__exit__(None, None, None)
            shutil.rmtree(scratch, ignore_errors=True)

    pinned = f", one GPU each (CUDA_VISIBLE_DEVICES {','.join(gpus[i % len(gpus)] for i in range(n))})" if gpus else ""
    describe = f"dask: a local cluster of {n} worker process{'es' if n != 1 else ''}{pinned}"
    return Engine("dask", n, describe, close=close)


def _ray(address: str | None, blas_threads: int, gpus: list[str] | None) -> Engine:
    ray = _need("ray", "ray")
    joblib_ray = _need("ray.util.joblib", "ray")
    kind, n = parse_address("ray", address)
    temp = None
    options = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if kind == "local":
        # a short path: Ray's sockets live under it, and a Unix socket's path is limited to 107 bytes
        temp = tempfile.mkdtemp(prefix="mlpxp-ray-", dir="/tmp" if os.path.isdir("/tmp") else None)
        options.update(num_cpus=n or os.cpu_count() or 1, num_gpus=len(gpus or []), _temp_dir=temp)
    else:
        options["address"] = address
    # joblib hands Ray's pool a multiprocessing context it ignores, and Ray says so on every search
    logging.getLogger("ray.util.multiprocessing.pool").setLevel(logging.ERROR)
    try:
        ray.init(**options)
    except BaseException as e:  # an interrupt during the start too: no session folder or process left behind
        with contextlib.suppress(Exception):
            ray.shutdown()
        if temp:
            shutil.rmtree(temp, ignore_errors=True)
        if not isinstance(e, Exception):
            raise
        hint = " (pip install 'ray[client]' for ray:// addresses)" if "ray[client]" in str(e) else ""
        raise ConfigError(f"--ray {address or 'local'}: Ray did not start or connect ({e}){hint}") from None
    joblib_ray.register_ray()
    resources = ray.cluster_resources()
    cpus, n_gpus = int(resources.get("CPU", 1)), int(resources.get("GPU", 0))
    args = {"num_cpus": blas_threads}
    if gpus is not None and n_gpus:  # Ray pins each task to its GPU by CUDA_VISIBLE_DEVICES
        args["num_gpus"] = 1
        workers = n_gpus
    else:
        workers = max(1, cpus // blas_threads)

    def close() -> None:
        try:
            ray.shutdown()
        finally:  # also when a signal lands inside the shutdown
            if temp:
                shutil.rmtree(temp, ignore_errors=True)

    where = "a local Ray" if kind == "local" else f"Ray at {address}"
    gpu_text = ", one GPU per candidate" if "num_gpus" in args else ""
    describe = f"ray: {where} with {cpus} CPUs and {n_gpus} GPUs: {workers} candidates at once{gpu_text}"
    return Engine("ray", workers, describe, args, close)


@contextlib.contextmanager
def open_engine(name: str, address: str | None, *, blas_threads: int = 1, device: str = "auto") -> Iterator[Engine]:
    """Start or join the engine ``name`` ("dask" or "ray") at ``address`` and make its joblib backend the active
    one inside the block; the cluster it started is stopped, and its files removed, at the end.

    ``device``: the candidates' device setting; GPUs are assigned to workers only where it may use one (not
    ``cpu``). ``cuda:N`` with N > 0 is refused: each worker sees its own GPU as ``cuda:0``."""
    from joblib import parallel_backend

    if name not in ENGINES:
        raise ConfigError(f"unknown engine {name!r}: use dask or ray")
    if str(device).startswith("cuda:") and str(device) != "cuda:0":
        raise ConfigError(
            f"--device {device} with --{name}: each worker runs on the GPU it is given, which it sees as cuda:0; "
            "use --device cuda or auto"
        )
    may_use_gpus = str(device) != "cpu"
    if name == "dask":
        engine = _dask(address, blas_threads, _visible_gpus() if may_use_gpus else [])
    else:
        # a joined cluster counts its own GPUs; a local one is told this machine's (None: the search is CPU only)
        engine = _ray(address, blas_threads, _visible_gpus() if may_use_gpus else None)
    try:
        extra = {"ray_remote_args": engine.remote_args} if name == "ray" else {}
        with parallel_backend(name, n_jobs=engine.workers, **extra):
            yield engine
    finally:
        engine.close()
