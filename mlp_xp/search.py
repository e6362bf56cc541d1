"""Model selection as in the course notes: grid or random search, each candidate scored on a validation set.

Candidates come from scikit-learn's :class:`~sklearn.model_selection.ParameterGrid` (every combination)
or :class:`~sklearn.model_selection.ParameterSampler` (``n_iter`` draws); each one trains an
:class:`~mlp_xp.estimator.MLPClassifier` or :class:`~mlp_xp.estimator.MLPRegressor` on the training
split and is scored on the validation split (accuracy, or R^2 for regression). The test set takes no
part: pick the winner here, then measure it once on the test set.

Search-space syntax (one ``NAME=VALUES`` spec per parameter, as given to ``mlp-xp search --param``)::

    lr=0.01,0.05,0.1                 a list of values: ints, floats (1e-3), true/false, or words
    optimizer=sgd,momentum,adam
    device=cuda:0,cpu                words may hold ":"; only loguniform:, uniform:, randint: and choice:
                                     start a distribution
    hidden=64,128x64,256x128x64      hidden layers: widths joined by "x", choices separated by ","
    hidden=64;128,64                 the same choices written with ";" between them (quote it in a shell)
    hidden=none                      no hidden layer (a linear model)
    lr=loguniform:1e-4:1e-1          random search only: log-uniform on [1e-4, 1e-1]
    momentum=uniform:0.5:0.99        random search only: uniform on [0.5, 0.99]
    epochs=randint:10:50             random search only: an integer in [10, 50], both ends included
    batch_size=choice:32,64,128      a list, drawn uniformly (the same as batch_size=32,64,128)

A list is tried in full by grid search and drawn from by random search; distributions need random
search. Integer settings (epochs, batch_size, patience, seed) take lists or randint, not uniform or
loguniform; settings that are words or true/false (optimizer, early_stopping, ...) take lists only.
"""

from __future__ import annotations

import contextlib
import difflib
import math
import os
import re
import signal
import socket
import sys
import time
import warnings

import numpy as np

from . import settings
from .constraints import Number
from .data.preprocess import is_frame
from .engines import limited_blas
from .errors import (
    ConfigError,
    DataError,
    DivergenceError,
    SearchFailed,
    SearchInterrupted,
    flags_spelled,
    install_hint,
    settings_as_flags,
)
from .estimator import MLPClassifier, MLPRegressor
from .validation import check_features, check_targets, is_sparse

try:
    from scipy import stats
    from sklearn.model_selection import ParameterGrid, ParameterSampler
    from sklearn.utils.multiclass import type_of_target
except ImportError as e:  # pragma: no cover - exercised only where scikit-learn is absent
    raise ImportError(f"mlp_xp.search needs scikit-learn: {install_hint('sklearn')}") from e

__all__ = ["parse_space", "run_search", "format_table", "estimator_param_names"]

TASKS = {"classification": MLPClassifier, "regression": MLPRegressor}
_SETTINGS = {s.name: s for task in TASKS for s in settings.estimator_settings(task)}
PARAMS = (*_SETTINGS, *settings.RENAMED)
# Settings that take numbers: only these take distributions; the integer ones take lists or randint.
NUMERIC_PARAMS = tuple(k for k, s in _SETTINGS.items() if isinstance(s.rule, Number)) + tuple(settings.RENAMED)
INT_PARAMS = tuple(k for k, s in _SETTINGS.items() if isinstance(s.rule, Number) and s.rule.integer)
DISTRIBUTIONS = ("loguniform", "uniform", "randint", "choice")
_EXAMPLE = "e.g. lr=0.01,0.1 or lr=loguniform:1e-4:1e-1"
_DIST_HELP = "use loguniform:LO:HI, uniform:LO:HI, randint:LO:HI or choice:A,B"


def estimator_param_names(task: str = "classification") -> set[str]:
    """The parameter names of the estimator that ``task`` trains (MLPClassifier or MLPRegressor).

    Lets a caller keep only the settings the estimator takes, e.g.
    ``{k: v for k, v in values.items() if k in estimator_param_names(task)}``.

    Raises
    ------
    ConfigError
        For a task other than "classification" or "regression".
    """
    if task not in TASKS:
        raise ConfigError(f"unknown search task {task!r}: use one of {', '.join(TASKS)}")
    return set(TASKS[task]().get_params())


def parse_space(specs: list[str]) -> dict:
    """Turn ``NAME=VALUES`` specs into a parameter space for :func:`run_search`.

    Parameters
    ----------
    specs : list of str
        One spec per parameter; see the module docstring for the syntax.

    Returns
    -------
    dict
        Parameter name -> list of values, or a scipy.stats distribution (random search only).

    Raises
    ------
    ConfigError
        For a spec without ``=``, an unknown parameter, a parameter given twice, no values, or a
        malformed value or distribution; the message names the fix.

    Examples
    --------
    >>> parse_space(["lr=0.01,0.1", "hidden=64,128x64"])
    {'lr': [0.01, 0.1], 'hidden': [(64,), (128, 64)]}
    """
    if isinstance(specs, str):
        specs = [specs]
    space: dict = {}
    for spec in specs:
        name, sep, text = str(spec).partition("=")
        name, text = name.strip(), text.strip()
        if not sep or not name:
            raise ConfigError(f"bad search spec {spec!r}: write NAME=VALUES, {_EXAMPLE}")
        if name not in PARAMS:
            close = settings.OTHER_NAMES.get(name) or next(iter(difflib.get_close_matches(name, _SETTINGS, n=1)), None)
            hint = f"did you mean {close!r}? " if close else ""
            raise ConfigError(
                f"unknown parameter {name!r} in search spec {spec!r}: {hint}use one of {', '.join(_SETTINGS)}"
            )
        if name in space:
            raise ConfigError(f"parameter {name!r} is given twice: put all its values in one spec, e.g. {name}=A,B")
        if not text:
            raise ConfigError(f"no values for {name!r} in {spec!r}: write {name}=A,B, {_EXAMPLE}")
        space[name] = _parse_values(name, text, spec)
    return space


def _parse_values(name: str, text: str, spec: str):
    kind, colon, rest = text.partition(":")
    kind = kind.strip().lower()
    if not colon or kind not in DISTRIBUTIONS:
        # A value may hold ":" (device=cuda:0,cpu): only a known distribution's name starts a distribution.
        return _parse_list(name, text, spec)
    if kind == "choice":
        return _parse_list(name, rest, spec)
    if name == "hidden":
        raise ConfigError(
            f"hidden takes a list of layer sizes, not a distribution ({spec!r}): write e.g. hidden=64,128x64"
        )
    if name not in NUMERIC_PARAMS:
        raise ConfigError(f"{name} takes a list of values, not a distribution ({spec!r}): write e.g. {name}=A,B")
    bounds = rest.split(":")
    try:
        lo, hi = (float(b) for b in bounds)
    except ValueError:
        raise ConfigError(
            f"bad bounds in {spec!r}: write {name}={kind}:LO:HI with two numbers, e.g. {name}={kind}:1e-4:1e-1"
        ) from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or not lo < hi or (kind == "loguniform" and lo <= 0):
        need = "0 < LO < HI" if kind == "loguniform" else "LO < HI"
        raise ConfigError(
            f"bad bounds in {spec!r}: {kind} needs finite bounds with {need}, e.g. {name}={kind}:1e-4:1e-1"
        )
    if kind == "randint":
        if lo != int(lo) or hi != int(hi):
            raise ConfigError(f"randint bounds must be integers in {spec!r}: write e.g. {name}=randint:10:50")
        return stats.randint(int(lo), int(hi) + 1)  # scipy excludes HI; the spec includes it
    if name in INT_PARAMS:
        ilo, ihi = math.ceil(lo), math.floor(hi)
        example = f"{name}=randint:{ilo}:{ihi}" if ilo <= ihi else f"{name}=randint:10:50"
        raise ConfigError(
            f"{name} takes integers, which {kind} (continuous) does not draw, in {spec!r}: "
            f"write {example} (both ends included) or a list such as {name}=A,B"
        )
    return stats.loguniform(lo, hi) if kind == "loguniform" else stats.uniform(lo, hi - lo)


def _parse_list(name: str, text: str, spec: str) -> list:
    if name == "hidden":
        # With ";" the choices are split on it and widths may be joined by "," (hidden=64;128,64);
        # otherwise choices are split on "," and widths joined by "x" (hidden=64,128x64).
        choices, joiner = (text.split(";"), ",") if ";" in text else (text.split(","), "x")
        return [_parse_hidden(c.strip(), joiner, spec) for c in choices]
    values = []
    for token in text.split(","):
        token = token.strip()
        if not token:
            raise ConfigError(f"empty value in {spec!r}: separate values with single commas, e.g. {name}=A,B")
        values.append(_parse_scalar(name, token, spec))
    return values


def _parse_hidden(choice: str, joiner: str, spec: str) -> tuple:
    if choice.lower() in ("none", "()"):
        return ()
    parts = re.split("x|" + re.escape(joiner), choice.lower())
    try:
        sizes = tuple(int(w) for w in parts)  # an empty part ("64x") is an error, not a layer fewer
    except ValueError:
        sizes = ()
    if not sizes or any(w < 1 for w in sizes):
        raise ConfigError(
            f"bad hidden layers {choice!r} in {spec!r}: write widths joined by 'x' and choices "
            "separated by ',', e.g. hidden=64,128x64 (or hidden=none)"
        )
    return sizes


def _parse_scalar(name: str, token: str, spec: str):
    low = token.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    try:
        return int(token)
    except ValueError:
        pass
    try:
        value = float(token)
    except ValueError:
        if name not in NUMERIC_PARAMS:
            return token  # a word: optimizer, activation, schedule, device, ...; the estimator checks it
        kind, colon, _ = token.partition(":")
        if colon:
            raise ConfigError(f"unknown distribution {kind!r} in {spec!r}: {_DIST_HELP}") from None
        raise ConfigError(
            f"{name} takes numbers, got {token!r} in {spec!r}: write e.g. {name}=A,B "
            f"with numbers A and B, or a distribution ({_DIST_HELP})"
        ) from None
    if name in INT_PARAMS:
        if not math.isfinite(value):
            raise ConfigError(
                f"{name} takes finite integers, got {token!r} in {spec!r}: write whole numbers, e.g. {name}=10,20"
            )
        if value != int(value):
            raise ConfigError(
                f"{name} takes integers, got {token!r} in {spec!r}: write whole numbers, e.g. {name}=10,20"
            )
        return int(value)
    return value


def _candidates(space: dict, mode: str, n_iter: int, seed: int) -> list[dict]:
    if not space:
        return [{}]
    dists = [k for k, v in space.items() if hasattr(v, "rvs")]
    for k, v in space.items():
        if k not in dists and (isinstance(v, str) or not hasattr(v, "__len__") or len(v) == 0):
            raise ConfigError(f"the space of {k!r} must be a non-empty list of values or a distribution, got {v!r}")
    if mode == "grid":
        if dists:
            raise ConfigError(
                f"grid search needs lists of values, but {', '.join(map(repr, dists))} "
                "has a distribution: give a list (e.g. lr=0.01,0.1) or use random search"
            )
        return list(ParameterGrid(space))
    if not dists:
        # Lists only: ParameterSampler draws without replacement and warns (pointing at GridSearchCV)
        # when n_iter exceeds the grid; take the whole grid instead, quietly.
        n_iter = min(n_iter, len(ParameterGrid(space)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        drawn = list(ParameterSampler(space, n_iter, random_state=seed))
    # Draws come back as NumPy scalars; plain Python values print and serialize (JSON) cleanly.
    return [{k: v.item() if isinstance(v, np.generic) else v for k, v in c.items()} for c in drawn]


def prepare_search(
    space: dict,
    *,
    mode: str = "grid",
    n_iter: int = 10,
    seed: int = 0,
    base_params: dict | None = None,
    task: str = "classification",
) -> tuple[list[dict], list]:
    """The candidates of a search and their estimators, every setting of every one checked: what
    :func:`run_search` trains, ready before any data are read (``mlp-xp search`` calls it first).

    Raises
    ------
    ConfigError
        For a bad mode, task or n_iter, a parameter the task's estimator does not take, or any candidate's
        setting.
    """
    if mode not in ("grid", "random"):
        raise ConfigError(f"unknown search mode {mode!r}: use one of grid, random")
    valid = estimator_param_names(task)  # checks task
    if isinstance(n_iter, bool) or not isinstance(n_iter, (int, np.integer)) or n_iter < 1:
        raise ConfigError(
            f"n_iter must be a positive integer, got {n_iter!r}: pass e.g. n_iter=10 (--n-iter 10 on the command line)"
        )
    cls = TASKS[task]
    base = dict(base_params or {})
    unknown = sorted((set(base) | set(space)) - valid)
    if unknown:
        raise ConfigError(
            f"unknown {cls.__name__} parameter(s) {unknown}: drop them, or use names from {', '.join(sorted(valid))}"
        )

    candidates = _candidates(space, mode, int(n_iter), seed)
    estimators = [cls(**{**base, **c}) for c in candidates]
    for est in estimators:
        est._check_settings()
    return candidates, estimators


def run_search(
    X_train,
    y_train,
    X_val,
    y_val,
    space: dict,
    *,
    mode: str = "grid",
    n_iter: int = 10,
    seed: int = 0,
    base_params: dict | None = None,
    task: str = "classification",
    verbose: bool = False,
    n_jobs: int | None = None,
    blas_threads: int | None = None,
) -> list[dict]:
    """Train one model per candidate on the training split and rank them by their validation score.

    Parameters
    ----------
    X_train, y_train : array-like
        Training split.
    X_val, y_val : array-like
        Validation split; scored with accuracy (classification) or R^2 (regression).
    space : dict
        Parameter name -> list of values or scipy.stats distribution, as :func:`parse_space` returns.
        An empty space runs ``base_params`` alone.
    mode : {"grid", "random"}
        Every combination (ParameterGrid), or ``n_iter`` draws (ParameterSampler).
    n_iter : int
        Candidates drawn by random search (capped at the grid's size when the space is all lists).
    seed : int
        Seed of the random draws (the models' own seed is ``base_params["seed"]``, default 0).
    base_params : dict, optional
        Estimator parameters shared by all candidates; a candidate's values override them.
    task : {"classification", "regression"}
        Trains MLPClassifier or MLPRegressor.
    verbose : bool
        Print one line per finished candidate to stderr.
    n_jobs : int, optional
        Run the candidates through joblib, this many at once, on its active backend: inside
        ``joblib.parallel_backend("dask")`` (or ``"ray"``, or :func:`mlp_xp.engines.open_engine`) they run on
        that cluster's workers. None (default): one after another in this process.
    blas_threads : int, optional
        Limit each candidate's BLAS to this many threads (threadpoolctl); None leaves it as it is. A search
        gives the same table whether it runs here or on a cluster, with the same thread count.

    Returns
    -------
    list of dict
        One row per candidate, best first: ``rank`` (1 = best), ``candidate`` (its place in the search's
        order, from 1), ``params`` (the candidate's values), ``score`` (NaN unless status is "ok"),
        ``fit_seconds``, ``epochs`` (run), ``status`` ("ok", "diverged" or "failed"), ``reason`` (why it
        diverged or failed, else ""), ``worker`` (host, process and the GPUs it could see). Candidates that
        diverged or failed (and any with a NaN score) rank last; ties keep the search's order.

    Raises
    ------
    ConfigError
        For a bad mode, task, n_iter, a parameter the task's estimator does not take, or any
        candidate's setting, before any model is trained.
    DataError
        For unusable training or validation data (X_train or X_val not numeric, 2-D or finite, X_val of
        another width than X_train; y_train or y_val of another length, y_val of another shape;
        classification labels that y_train lacks), before any model is trained.

    A candidate whose fit diverges or fails (bad data for its settings, a device error, anything but an
    interrupt) is a row with its reason, not the end of the search. Ctrl-C or SIGTERM raises
    :class:`mlp_xp.errors.SearchInterrupted`, and a failure of the engine itself (a lost worker)
    :class:`mlp_xp.errors.SearchFailed`; both hold the ranked rows of the candidates that had finished.
    """
    candidates, estimators = prepare_search(
        space, mode=mode, n_iter=n_iter, seed=seed, base_params=base_params, task=task
    )
    _check_validation_data(X_train, y_train, X_val, y_val, task)
    total = len(candidates)
    jobs = [(i, est, params) for i, (params, est) in enumerate(zip(candidates, estimators), start=1)]
    data = (X_train, y_train, X_val, y_val)
    rows: list[dict] = []
    try:
        for row in _results(jobs, data, n_jobs, blas_threads):
            rows.append(row)
            if verbose:
                print(f"[{len(rows)}/{total}] {_row_line(row)}", file=sys.stderr)
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM, in a fit or between them: the finished rows are kept
        raise SearchInterrupted(getattr(e, "signum", signal.SIGINT), _ranked(rows), total) from None
    except Exception as e:  # the engine, not a candidate (whose errors are rows): keep what finished
        raise SearchFailed(
            f"the search stopped after {len(rows)} of {total} candidates: {type(e).__name__}: {e}", _ranked(rows), total
        ) from e
    return _ranked(rows)


def _results(jobs: list, data: tuple, n_jobs: int | None, blas_threads: int | None):
    """The rows of ``jobs`` as they finish: in this process, or through joblib's active backend."""
    if n_jobs is None:
        for i, est, params in jobs:
            yield run_candidate(i, est, params, *data, blas_threads=blas_threads)
        return
    from joblib import Parallel, delayed
    from joblib.parallel import get_active_backend

    backend, _ = get_active_backend()
    # (a worker process has its own context: how messages spell settings goes with each candidate)
    kw = {"blas_threads": blas_threads, "as_flags": flags_spelled()}
    tasks = [delayed(run_candidate)(i, est, params, *data, **kw) for i, est, params in jobs]
    if type(backend).__name__ == "DaskDistributedBackend":
        # the data go to the workers once, not with every candidate (joblib replaces them by their futures)
        from joblib import parallel_backend

        with parallel_backend("dask", n_jobs=n_jobs, scatter=[a for a in data if a is not None]):
            yield from Parallel(n_jobs=n_jobs, return_as="generator_unordered")(tasks)
        return
    if backend.supports_return_generator:  # loky: each row as soon as its candidate is done
        yield from Parallel(n_jobs=n_jobs, return_as="generator_unordered")(tasks)
        return
    # Ray's backend returns only whole lists: a wave of as many candidates as run at once, so that an interrupt
    # loses at most the wave in flight
    width = n_jobs if n_jobs > 0 else (backend.effective_n_jobs(n_jobs) or 1)
    with Parallel(n_jobs=n_jobs) as parallel:
        for start in range(0, len(tasks), width):
            yield from parallel(tasks[start : start + width])


def _worker() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "visible_gpus": os.environ.get("CUDA_VISIBLE_DEVICES")}


def run_candidate(
    index: int, est, params: dict, X_train, y_train, X_val, y_val, *, blas_threads=None, as_flags: bool = False
) -> dict:
    """Fit and score one candidate: its row. It runs wherever joblib sends it (a Dask or Ray worker), so it
    returns only the row, never the fitted estimator. ``as_flags``: its reasons name settings as the command
    line's flags (an ``mlp-xp search``)."""
    t0 = time.perf_counter()
    row = {"candidate": index, "params": params, "score": math.nan, "epochs": 0, "reason": "", "worker": _worker()}
    try:
        with limited_blas(blas_threads), settings_as_flags() if as_flags else contextlib.nullcontext():
            est.fit(X_train, y_train)
            score = float(est.score(X_val, y_val))
    except DivergenceError as e:
        epochs = len(e.history) if e.history is not None else 0
        return {
            **row,
            "fit_seconds": time.perf_counter() - t0,
            "epochs": epochs,
            "status": "diverged",
            "reason": e.reason,  # (each candidate is a fresh estimator: what it keeps says nothing here)
        }
    except Exception as e:  # this candidate's settings or device, not the search's: a row that says so
        return {
            **row,
            "fit_seconds": time.perf_counter() - t0,
            "status": "failed",
            "reason": f"{type(e).__name__}: {e}",
        }
    row["worker"]["device"] = est.model_.ops.name
    return {**row, "score": score, "fit_seconds": time.perf_counter() - t0, "epochs": est.n_iter_, "status": "ok"}


def _row_line(row: dict) -> str:
    shown = f"{row['score']:.4f}" if row["status"] == "ok" else row["status"]
    return f"{_format_params(row['params']) or '(base)'}: {shown} ({row['fit_seconds']:.1f} s)"


def _ranked(rows: list[dict]) -> list[dict]:
    # By score, best first; ties in the search's order; diverged and failed rows, and NaN scores, last.
    def key(r):
        ok = r["status"] == "ok" and not math.isnan(r["score"])
        return (-r["score"] if ok else math.inf, r.get("candidate", 0))

    return [{"rank": rank, **row} for rank, row in enumerate(sorted(rows, key=key), start=1)]


def _check_validation_data(X_train, y_train, X_val, y_val, task: str) -> None:
    """DataError for training or validation data that no candidate could be fitted or scored on, before any
    training (each candidate's fit would fail alike, one by one). A table (a DataFrame, for an estimator that
    encodes its columns) and sparse rows are left to the fits, which take them."""
    if not (is_frame(X_train) or is_sparse(X_train)):
        X_train = check_features(X_train, None, None, "X_train")
        n = np.shape(y_train)[0] if np.ndim(y_train) else 0
        if n != len(X_train):
            raise DataError(
                f"y_train has {n} entries but X_train has {len(X_train)} samples: pass one target per training row"
            )
    shape = np.shape(X_train)
    X_val = check_features(X_val, shape[1] if len(shape) == 2 else None, None, "X_val")
    y_train, y_val = np.asarray(y_train), np.asarray(y_val)
    if y_val.ndim == 0 or len(y_val) != len(X_val):
        raise DataError(
            f"y_val has {y_val.size if y_val.ndim == 0 else len(y_val)} entries but X_val has "
            f"{len(X_val)} samples: pass the targets of the same validation rows"
        )
    if task == "regression" or type_of_target(y_train) == "multilabel-indicator":
        # Numeric targets, or a 0/1 indicator matrix: number of columns, values.
        k = y_train.shape[1] if y_train.ndim == 2 else 1
        loss = "mse" if task == "regression" else "binary_cross_entropy"
        check_targets(y_val, len(X_val), loss, k, np.float64, "y_val")
        return
    if y_val.ndim != 1 and y_val.shape[1:] != (1,):
        raise DataError(
            f"y_val has shape {y_val.shape} but the training labels are one per sample: pass 1-D validation labels"
        )
    unseen = np.setdiff1d(y_val.ravel(), y_train.ravel())
    if len(unseen):
        shown = ", ".join(map(repr, unseen[:5].tolist())) + (", ..." if len(unseen) > 5 else "")
        raise DataError(
            f"y_val has {len(unseen)} class label(s) that y_train lacks ({shown}), which no "
            "candidate can predict: split the data so that the training split holds every "
            "class (e.g. a stratified split)"
        )


def _format_value(value) -> str:
    if isinstance(value, tuple):
        return "x".join(map(str, value)) if value else "none"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _cell(value) -> str:
    """A setting's value in a results file: exact (repr) for floats, the spec syntax for hidden layers."""
    return repr(value) if isinstance(value, float) else _format_value(value)


def _format_params(params: dict) -> str:
    return " ".join(f"{k}={_format_value(v)}" for k, v in params.items())


def format_table(rows: list[dict]) -> str:
    """A ranked plain-text table of :func:`run_search` rows: rank, score, epochs, seconds, params.

    Hidden layers print in the spec syntax (``128x64``); diverged candidates show ``diverged`` as score.
    """
    header = ("rank", "score", "epochs", "seconds", "params")
    body = []
    for r in rows:
        score = f"{r['score']:.4f}" if r.get("status", "ok") == "ok" else r["status"]
        body.append(
            (
                str(r["rank"]),
                score,
                str(r["epochs"]),
                f"{r['fit_seconds']:.2f}",
                _format_params(r["params"]) or "(base parameters)",
            )
        )
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = []
    for row in [header, *body]:
        # Numbers right-aligned, params (the last column) left-aligned and unpadded.
        cells = [row[i].rjust(widths[i]) for i in range(len(row) - 1)] + [row[-1]]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def write_results(rows: list[dict], path, *, base_params: dict | None = None, names: list[str] | None = None) -> None:
    """Every candidate's settings and scores, ranked, to ``path``: CSV (one column per searched setting ``names``,
    hidden layers in the spec syntax) or JSON (the rows as they are, with the base parameters), whole or not at
    all."""
    import csv
    import io
    import json

    from .files import atomic_writer, write_json_atomic

    path = os.fspath(path)
    if path.lower().endswith(".json"):
        plain = json.loads(json.dumps({"base_params": base_params or {}, "rows": rows}, default=_format_value))
        write_json_atomic(path, plain)
        return
    names = names if names is not None else sorted({k for r in rows for k in r["params"]})
    text = io.StringIO()
    out = csv.writer(text)
    out.writerow(
        [
            "rank",
            "candidate",
            "status",
            "score",
            "epochs",
            "fit_seconds",
            *names,
            "reason",
            "host",
            "pid",
            "visible_gpus",
            "device",
        ]
    )
    for r in rows:
        w = r.get("worker", {})
        score = "" if math.isnan(r["score"]) else repr(r["score"])
        out.writerow(
            [
                r["rank"],
                r.get("candidate", ""),
                r["status"],
                score,
                r["epochs"],
                f"{r['fit_seconds']:.3f}",
                *(_cell(r["params"][k]) if k in r["params"] else "" for k in names),
                r.get("reason", ""),
                w.get("host", ""),
                w.get("pid", ""),
                w.get("visible_gpus") or "",
                w.get("device", ""),
            ]
        )
    with atomic_writer(path) as f:
        f.write(text.getvalue().encode())
