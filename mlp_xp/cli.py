"""The mlp-xp command: train, evaluate, predict, search, bench, doctor, info, export.

Every model and training flag comes from the settings table (:mod:`mlp_xp.settings`): ``--name-with-dashes``,
its help, and its check. Exit statuses (ARCHITECTURE.md): 0 success; 1 training diverged or a check failed;
2 bad input, reported as one line ``mlp-xp: error: ...`` on stderr before any work starts; 3 no usable GPU
where one was required; 130 interrupted (Ctrl-C); 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import errno
import os
import signal
import sys

import numpy as np

from . import __version__, settings
from .constraints import Flag, Folder, Number
from .errors import (
    EXIT_BAD_INPUT,
    EXIT_BROKEN_PIPE,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NO_GPU,
    EXIT_OK,
    EXIT_TERMINATED,
    BackendUnavailable,
    ConfigError,
    DivergenceError,
    MLPXPError,
    OutputLost,
    SearchFailed,
    SearchInterrupted,
    TrainingInterrupted,
    install_hint,
    settings_as_flags,
)
from .files import check_folder_to_write, special_file, write_refused, write_target

#: Old flags still accepted, with a warning: old flag -> the setting that replaced it. ``train --validation`` was
#: the flag of validation_fraction; ``search --validation`` is now ``--holdout`` (see cmd_search).
RENAMED_FLAGS = {"--" + old.replace("_", "-"): new for old, new in settings.RENAMED.items()}
TRAIN_RENAMED_FLAGS = {**RENAMED_FLAGS, "--validation": "validation_fraction"}
MODEL = [s.name for s in settings.SETTINGS if s.uses in ("model", "both") and s.cli]
TRAINING = [s.name for s in settings.TRAIN_SETTINGS if s.cli and s.uses == "train"]


class _Parser(argparse.ArgumentParser):
    """argparse with its own errors (unknown flags, a missing command) as one line and status 2, like every
    other bad input, instead of a usage block; flags in full only (argparse's prefix matching would let a script's
    ``--epoch`` mean another flag, or nothing, once a flag of that prefix is added)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self._given: list[str] = []

    def parse_known_args(self, args=None, namespace=None):
        self._given = list(sys.argv[1:] if args is None else args)  # (a subcommand's parser: its own part)
        return super().parse_known_args(args, namespace)

    def error(self, message: str):
        raise ConfigError(f"{message}{self._misspelled(message)} (see {self.prog} --help)")

    def _misspelled(self, message: str) -> str:
        """For a missing required flag: "; --inp is not a flag: did you mean --input?" where the command line holds
        a misspelling of one (argparse reports the missing flag before the unknown ones)."""
        if not message.startswith("the following arguments are required"):
            return ""
        unknown = [a.split("=")[0] for a in self._given if a.startswith("--")]
        unknown = [a for a in unknown if a not in self._option_string_actions]
        if not unknown:
            return ""
        close = difflib.get_close_matches(unknown[0], list(self._option_string_actions), n=1)
        return f"; {unknown[0]} is not a flag" + (f": did you mean {close[0]}?" if close else "")


class _Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that the run unwinds as it does on Ctrl-C (and whatever keeps its
    work on Ctrl-C does so on SIGTERM too: ``signum`` tells them apart)."""

    signum = signal.SIGTERM


def _setting_flags(parser: argparse.ArgumentParser, names: list[str], renamed: dict[str, str]) -> None:
    """One flag per setting, in groups, and the ``renamed`` old flags; values stay text here and are parsed by
    :func:`command_line_settings`."""
    parser.set_defaults(renamed_flags=renamed)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for name in names:
        s = settings.BY_NAME[name]
        group = groups.get(s.group) or groups.setdefault(s.group, parser.add_argument_group(s.group))
        text = _help(s)
        if isinstance(s.rule, Flag):
            group.add_argument(s.flag, dest=s.name, action="store_const", const="true", default=None, help=text)
        else:
            group.add_argument(s.flag, dest=s.name, default=None, metavar=_metavar(s), help=text)
        for old, new in renamed.items():
            if new == name:
                group.add_argument(old, dest=f"renamed:{old}", default=None, help=argparse.SUPPRESS)


#: What a flag means on the command line beyond its setting's help.
CLI_NOTES = {
    "validation_fraction": "0.1 when --early-stopping is given without it; in search, each candidate's own "
    "early-stopping split, apart from --holdout",
    "on_divergence": "raise: exit status 1; stop: keep the last good weights and exit with status 1 too",
}


def _help(s: settings.Setting) -> str:
    """A flag's help: the setting's help, its rule where the rule says more than the metavar, its default."""
    if isinstance(s.rule, Flag):
        return f"{s.help} (default off)"
    default = s.default
    if isinstance(default, tuple):
        default = ",".join(map(str, default)) or "none"
    rule = s.rule.describe()
    note = f"; {CLI_NOTES[s.name]}" if s.name in CLI_NOTES else ""
    return f"{s.help}: {rule}{note} (default {'none' if default is None else default})"


def _metavar(s: settings.Setting) -> str:
    if isinstance(s.rule, Number):
        return "N" if s.rule.integer else "X"
    if isinstance(s.rule, Folder):
        return "DIR"
    return "NAME" if isinstance(s.rule, settings.Options) else "VALUE"


def command_line_settings(args: argparse.Namespace) -> dict:
    """Every model and training setting of a command: the flags given, parsed and checked by their rules
    (renamed flags too, with a warning), and the table's defaults for the rest. With --early-stopping and no
    --validation-fraction, a tenth of the training data is held out for it."""
    for old, new in args.renamed_flags.items():
        text = getattr(args, f"renamed:{old}", None)
        if text is not None:
            flag = "--" + new.replace("_", "-")
            if getattr(args, new, None) is not None:
                raise ConfigError(f"{old} and {flag} are the same setting: give only {flag}")
            print(f"mlp-xp: warning: {old} is now {flag}; {old} will be removed", file=sys.stderr)
            setattr(args, new, text)
    values = {}
    for name in MODEL + TRAINING:
        text = getattr(args, name, None)
        values[name] = settings.BY_NAME[name].default if text is None else settings.BY_NAME[name].parse(text)
    if values["early_stopping"] and args.validation_fraction is None:
        values["validation_fraction"] = 0.1
    return values


def _seed(text: str) -> int:
    try:
        return settings.BY_NAME["seed"].rule.parse(text, "--data-seed")
    except ConfigError as e:
        raise ConfigError(f"{e}: give a whole number >= 0, e.g. --data-seed 0") from None


def _data_flags(parser: argparse.ArgumentParser, from_model: bool = False) -> None:
    """--data, --data-seed, --classes and the table flags; with ``from_model`` (evaluate) their defaults are the
    model's own."""
    g = parser.add_argument_group("data")
    g.add_argument(
        "--data",
        default=None if from_model else "digits",
        metavar="NAME_OR_PATH",
        help="dataset name (digits, synthetic, synthetic:NxD[xC], mnist, fashion-mnist), a folder of MNIST-layout "
        "IDX files, an .npz file with X_train, y_train[, X_test, y_test], or a CSV or Parquet table (with --target) "
        + ("(default: the named dataset the model was trained on, else digits)" if from_model else "(default digits)"),
    )
    g.add_argument(
        "--target",
        metavar="COLUMN",
        help="a table's column to predict" + (" (default: the model's)" if from_model else ""),
    )
    g.add_argument(
        "--features",
        metavar="COLUMNS",
        help="a table's feature columns, comma-separated (default: every column but the target"
        + ("; a model trained on a table uses its own)" if from_model else ")"),
    )
    if not from_model:
        g.add_argument(
            "--categorical",
            metavar="COLUMNS",
            help="a table's columns to one-hot encode whatever their type (default: the columns that are not numbers)",
        )
    g.add_argument("--test", metavar="FILE", help="a table of test rows, with the training table's columns")
    g.add_argument(
        "--test-fraction",
        metavar="F",
        help="hold out this fraction of a table's rows as its test split (stratified by class, drawn with "
        "--data-seed)" + ("; give the training run's value to score its test rows" if from_model else ""),
    )
    g.add_argument(
        "--data-seed",
        default=None if from_model else "0",
        metavar="N",
        help="seed of the dataset itself where it has one (the digits split, the synthetic set); evaluate with the "
        "same value a model was trained with " + ("(default: the model's, else 0)" if from_model else "(default 0)"),
    )
    g.add_argument(
        "--classes",
        default=None,
        metavar="N",
        help="the number of classes, for data whose training labels miss some (default: the training labels' "
        "0..C-1, which must have no gaps)",
    )


def _classes(text: str | None) -> int | None:
    try:
        return None if text is None else Number(integer=True, low=2).parse(text, "--classes")
    except ConfigError as e:
        raise ConfigError(f"{e}: give the number of classes, at least 2 (e.g. --classes 10)") from None


_TABLE_FLAGS = ("target", "features", "categorical", "test", "test_fraction")


def _is_table(args) -> bool:
    """Whether --data is a CSV or Parquet table; the table flags are refused for any other data."""
    from .data.tables import is_table

    if args.data is not None and is_table(args.data):
        if getattr(args, "classes", None) is not None:
            raise ConfigError("--classes applies to class labels 0..C-1; a table's classes are its target's values")
        return True
    given = [f"--{n.replace('_', '-')}" for n in _TABLE_FLAGS if getattr(args, n, None) is not None]
    if given:
        raise ConfigError(
            f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to tables: give --data FILE.csv or "
            "FILE.parquet"
        )
    return False


def _column_list(text: str | None, flag: str) -> list[str] | None:
    """Column names separated by commas; a name that holds a comma is quoted, as in a CSV header."""
    import csv

    if text is None:
        return None
    names = [c.strip() for c in next(csv.reader([text], skipinitialspace=True), None) or [""]]
    if not all(names):
        raise ConfigError(f"{flag} {text!r} has an empty column name: give names separated by commas")
    return names


def _test_fraction(args) -> float | None:
    text = getattr(args, "test_fraction", None)
    return None if text is None else Number(low=0, high=1, low_open=True, high_open=True).parse(text, "--test-fraction")


def _load_table(args, values: dict, validation_fraction: float, seed: int):
    """--data FILE.csv or .parquet: the :class:`mlp_xp.tabular.TableRun` of the table flags; the preprocessing's
    warnings (a column of mostly unique text) as ``mlp-xp: warning:`` lines."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        run = _prepare_table(args, values, validation_fraction, seed)
    for w in caught:
        print(f"mlp-xp: warning: {w.message}", file=sys.stderr)
    return run


def _prepare_table(args, values: dict, validation_fraction: float, seed: int):
    from .tabular import prepare_training

    return prepare_training(
        args.data,
        target=args.target,
        features=_column_list(args.features, "--features"),
        categorical=_column_list(args.categorical, "--categorical"),
        loss=values["loss"],
        test=args.test,
        test_fraction=_test_fraction(args),
        data_seed=_seed(args.data_seed),
        validation_fraction=validation_fraction,
        seed=seed,
    )


def _load(args, data_seed: int):
    """The dataset of --data, with --data-seed and --classes."""
    from .data import UnknownDataset, load_dataset

    try:
        return load_dataset(args.data, seed=data_seed, classes=_classes(getattr(args, "classes", None)))
    except UnknownDataset as e:
        raise UnknownDataset(e.text, ("a CSV or Parquet table (with --target COLUMN)",)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mlp-xp", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"mlp-xp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser(
        "train",
        help="train a model",
        description="Train an MLP; a progress bar per epoch and a summary line after each.",
    )
    _data_flags(t)
    _setting_flags(t, MODEL + TRAINING, TRAIN_RENAMED_FLAGS)
    t.add_argument(
        "--save", metavar="PATH", help="save the trained model (.npz: arrays + JSON metadata; or .safetensors)"
    )
    t.add_argument("--metrics-json", metavar="PATH", help="write the per-epoch metrics as a JSON list")
    t.add_argument("--plot", metavar="PATH.png", help="write a PNG of the learning curves")
    t.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    t.add_argument(
        "--tensorboard", metavar="DIR", help="log each epoch's metrics and the settings there, for TensorBoard"
    )

    e = sub.add_parser(
        "evaluate",
        help="score a saved model on a dataset",
        description="Score a saved model: loss and accuracy, per-class precision, recall and F1 and the confusion "
        "matrix (a classifier), or MSE, MAE and R^2 (a regressor). A table given with --data is scored whole, "
        "unless --test or --test-fraction choose its rows.",
    )
    e.add_argument("model", help="model file written by mlp-xp train --save")
    _data_flags(e, from_model=True)
    e.add_argument("--split", choices=("test", "train"), default="test", help="the split to score (default test)")
    e.add_argument("--device", default="auto", metavar="VALUE", help="auto, cpu, cuda or cuda:N (default auto)")
    e.add_argument("--json", metavar="PATH", help="write the scores and the report as JSON")
    e.add_argument("--plot", metavar="PATH.png", help="draw a classifier's confusion matrix as a PNG")

    pr = sub.add_parser(
        "predict",
        help="a saved model's predictions for a file of rows",
        description="Predict for every row of --input and write one prediction per row (the model's class labels, "
        "or values for a regressor) or, with --proba, one column of probabilities per class. Reads and writes in "
        "batches: memory beyond the input is bounded by the batch.",
    )
    pr.add_argument("model", help="model file written by mlp-xp train --save")
    pr.add_argument(
        "--input",
        required=True,
        metavar="FILE",
        help="rows to predict: .npy, .npz (X or X_test), .csv, .parquet or an IDX images file",
    )
    pr.add_argument("--output", required=True, metavar="FILE", help="the predictions: .csv or .npy")
    pr.add_argument("--proba", action="store_true", help="write class probabilities, one column per class")
    pr.add_argument("--batch-size", default="4096", metavar="N", help="rows per batch (default 4096)")
    pr.add_argument("--device", default="auto", metavar="VALUE", help="auto, cpu, cuda or cuda:N (default auto)")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")

    s = sub.add_parser(
        "search",
        help="grid or random search scored on a held-out split",
        description="Grid or random search over --param specs: each candidate trains on the "
        "training split and is scored on the held-out split; prints a ranked table. Every other "
        "flag is passed on to each candidate.",
    )
    _data_flags(s)
    _setting_flags(s, MODEL + TRAINING, RENAMED_FLAGS)
    s.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="SPEC",
        help="a searched setting, e.g. lr=0.01,0.1  hidden=64,128x64  lr=loguniform:1e-4:1e-1 (repeat for several)",
    )
    s.add_argument(
        "--mode",
        choices=("grid", "random"),
        default="grid",
        help="grid: every combination; random: --n-iter draws (default grid)",
    )
    s.add_argument("--n-iter", default="10", metavar="N", help="candidates drawn by random search (default 10)")
    s.add_argument(
        "--holdout",
        default=None,
        metavar="FRACTION",
        help="part of the training data held out to score the candidates (in (0, 1); default 0.2)",
    )
    s.add_argument("--validation", dest="renamed:--validation", default=None, help=argparse.SUPPRESS)
    where = s.add_argument_group("where the candidates run")
    where.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="on Dask: local:N starts a local cluster of N workers (one GPU each where there are GPUs), "
        "tcp://host:port joins a running scheduler",
    )
    where.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="on Ray: alone or local[:N] starts a local Ray (N CPUs), auto or ray://host:port joins a cluster; "
        "a candidate asks for one GPU where the cluster has them",
    )
    where.add_argument(
        "--blas-threads",
        metavar="N",
        help="BLAS threads per candidate (default 1 on Dask or Ray; in this process, as the BLAS is set)",
    )
    out = s.add_argument_group("outputs")
    out.add_argument("--results", metavar="FILE", help="write every candidate's settings and scores (.csv or .json)")
    out.add_argument("--plot", metavar="PATH.png", help="draw the validation score against each searched setting")

    b = sub.add_parser(
        "bench",
        help="time training steps on the CPU and the GPUs",
        description="Time the trainer's step (784-hidden-10 ReLU, momentum SGD) at each batch size on the CPU and "
        "the GPUs of --device, each GPU also with a captured CUDA graph; prints ms per step, samples per second "
        "and the speedup over the CPU. Exit status 3 if a GPU asked for by --device cuda:N is not usable.",
    )
    b.add_argument(
        "--device",
        default="all",
        metavar="VALUE",
        help="all: the CPU and every visible GPU in one table (the CPU alone where there is none); cpu: the CPU "
        "alone; cuda or cuda:N: that GPU, and the CPU too, as the baseline of the speedup column (default all)",
    )
    b.add_argument(
        "--batch-sizes", default="32,128,512,2048", metavar="N,N,...", help="batch sizes (default 32,128,512,2048)"
    )
    b.add_argument("--hidden", default="512,256", metavar="VALUE", help="hidden widths (default 512,256)")
    b.add_argument("--steps", default="50", metavar="N", help="timed steps per configuration (default 50)")
    b.add_argument("--dtype", default="float32", metavar="NAME", help="float32 or float64 (default float32)")
    b.add_argument("--plot", metavar="PATH.png", help="write a PNG of samples per second against batch size")
    b.add_argument("--json", metavar="PATH", help="write the table as JSON")

    d = sub.add_parser(
        "doctor",
        help="check every op of this machine's backends against its reference",
        description="Check every op of the backends of --device against its reference: one line per op and dtype, "
        "under each backend's name. Exit status 1 if a check failed; 3 if a GPU was asked for (all, cuda:N) and "
        "it, or one of them, could not be checked.",
    )
    d.add_argument(
        "--device",
        default="all",
        metavar="VALUE",
        help="all: the CPU, then every visible GPU (cuda:0, cuda:1, ...; exit status 3 where there is none); "
        "cpu: the CPU alone; cuda or cuda:N: that GPU alone (default all)",
    )
    sub.add_parser("info", help="versions, and which backends are usable here and why not")
    x = sub.add_parser(
        "export",
        help="write a saved model in another format (ONNX)",
        description="Write a model saved by mlp-xp train --save as ONNX: the same forward pass, class probabilities "
        "and labels (or predictions), for onnxruntime and every runtime that reads ONNX.",
    )
    x.add_argument("model", help="model file written by mlp-xp train --save (.npz or .safetensors)")
    x.add_argument("--onnx", required=True, metavar="PATH.onnx", help="the ONNX file to write")
    return parser


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass  # stdout is not a file descriptor (captured in a test): nothing will flush to a pipe


def _output_lost(e: OSError) -> tuple[int, str | None]:
    """The exit status for standard output that cannot be written, and what to say of it: nothing to a reader that
    has gone (`mlp-xp info | head`), one line naming the reason and the fix otherwise (a full disk)."""
    if isinstance(e, BrokenPipeError) or e.errno == errno.EPIPE:
        return EXIT_BROKEN_PIPE, None
    full = e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
    fix = "free space on its disk, or send the output elsewhere" if full else "send the output elsewhere"
    return EXIT_FAILED, f"the output could not be written to standard output ({e.strerror}): {fix}"


class _Stdout:
    """``sys.stdout`` while a command runs: a write or flush that fails raises :class:`OutputLost`, so that a
    closed pipe or a full disk reads as the output's loss wherever it happens, never as the command's own error."""

    def __init__(self, stream) -> None:
        self._stream = stream
        #: The first loss, kept for where it is swallowed: argparse's --help and --version drop a failed write.
        self.lost: OutputLost | None = None

    def _lost(self, e: OSError) -> OutputLost:
        closed = isinstance(e, BrokenPipeError) or e.errno == errno.EPIPE
        lost = OutputLost(errno.EPIPE if closed else e.errno, e.strerror or type(e).__name__)
        self.lost = self.lost or lost
        return lost

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as e:
            raise self._lost(e) from e

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as e:
            raise self._lost(e) from e

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def main(argv: list[str] | None = None) -> int:
    previous = _catch_sigterm()
    stdout = sys.stdout
    wrapped = None if stdout is None else _Stdout(stdout)
    if wrapped is not None:
        sys.stdout = wrapped
    try:
        parser = build_parser()
        try:
            args, unknown = parser.parse_known_args(argv)
        except SystemExit:  # (--help, --version, a usage error: argparse has printed and exits)
            if wrapped is not None:
                wrapped.flush()  # (what is still buffered fails here, not at the interpreter's exit)
                if wrapped.lost is not None:
                    raise wrapped.lost from None
            raise
        if unknown:
            raise ConfigError(
                f"unrecognized arguments: {' '.join(unknown)}: {_nearest_flag(parser, args, unknown)}"
                f"see mlp-xp {args.command} --help"
            )
        with settings_as_flags():  # (messages name settings as this command's flags)
            status = COMMANDS[args.command](args)
        sys.stdout.flush()  # inside the try: a closed pipe is reported here, not at the interpreter's exit
        return status
    except BackendUnavailable as e:
        print(f"mlp-xp: error: {e}", file=sys.stderr)
        return EXIT_NO_GPU
    except MLPXPError as e:
        print(f"mlp-xp: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except _Terminated:
        print("mlp-xp: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("mlp-xp: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (BrokenPipeError, OutputLost) as e:
        # Standard output cannot be written. Point it at /dev/null, so that the interpreter's own flush at exit does
        # not raise a second time (Python's signal docs); a reader that has gone (`mlp-xp info | head`) is told
        # nothing more, any other loss (a full disk) one line.
        sys.stdout = stdout
        _silence_stdout()
        status, why = _output_lost(e)
        if why:
            print(f"mlp-xp: error: {why}", file=sys.stderr)
        return status
    except Exception as e:
        from .backend import is_cuda_failure

        if isinstance(e, MemoryError) and not is_cuda_failure(e):  # (NumPy's names the size it could not have)
            print(
                f"mlp-xp: error: out of memory ({str(e) or 'MemoryError'}): use less data (fewer rows or "
                "features), a smaller model or batch, or a machine with more memory",
                file=sys.stderr,
            )
            return EXIT_FAILED
        if not is_cuda_failure(e):
            raise
        # Fallback to the CPU happens only when the backend is chosen: mid-run, the device's state is lost.
        print(
            f"mlp-xp: error: the GPU failed during the run ({type(e).__name__}: {e}); the run stopped, since the "
            "CUDA context cannot be trusted after such an error: run the command again, or use --device cpu",
            file=sys.stderr,
        )
        return EXIT_FAILED
    finally:
        sys.stdout = stdout
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _nearest_flag(parser: argparse.ArgumentParser, args, unknown: list[str]) -> str:
    """ "did you mean --lr? " for an unknown flag near a real one (or another library's name for it), else ""."""
    flag = next((u for u in unknown if u.startswith("--")), None)
    if flag is None:
        return ""
    sub = next(a for a in parser._actions if a.dest == "command").choices[args.command]
    flags = [o for a in sub._actions for o in a.option_strings if o.startswith("--") and a.help != argparse.SUPPRESS]
    name = flag.split("=")[0][2:].replace("-", "_")
    if name in settings.OTHER_NAMES:
        return f"did you mean {settings.BY_NAME[settings.OTHER_NAMES[name]].flag}? "
    close = difflib.get_close_matches(flag.split("=")[0], flags, n=1)
    return f"did you mean {close[0]}? " if close else ""


def _catch_sigterm():
    def handler(signum, frame):
        raise _Terminated

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (an embedding application): leave its handling alone
        return None


def _output_width(dataset, loss: str) -> int:
    if loss == "cross_entropy":
        if dataset.n_classes < 2:
            raise ConfigError(f"{dataset.name} has no class labels for cross_entropy: {_not_labels(dataset.y_train)}")
        return dataset.n_classes
    y = dataset.y_train
    return 1 if np.ndim(y) == 1 else y.shape[1]


def _not_labels(y) -> str:
    """Why targets that are not class labels are not, and what to do: as the targets look."""
    y = np.asarray(y)
    if y.dtype.kind in "iub" and y.ndim == 1:
        found = len(np.unique(y))
        return f"its labels hold {found} class{'es' if found != 1 else ''}: a classifier needs two or more"
    whole = y.size > 0 and y.dtype.kind in "fiu" and bool(np.all(np.isfinite(y) & (y == np.round(y))))
    if y.ndim == 2 and y.shape[1] == 1:
        if not whole:
            return "its targets are one column of quantities: use --loss mse to predict them"
        return (
            f"its targets are one column, shape {y.shape}, where class labels are one whole number a row, shape "
            f"({len(y)},): save them as y.ravel().astype(int), or use --loss mse to predict a quantity"
        )
    if y.ndim == 2:
        return (
            f"its targets have {y.shape[1]} columns: use --loss binary_cross_entropy for several 0/1 labels a row, "
            "or --loss mse for quantities"
        )
    if whole:
        examples = ", ".join(repr(v) for v in np.unique(y)[:3].tolist())
        return (
            f"its targets are floats with whole values ({examples}, ...): store class labels as integers "
            "(y.astype(int)), or use --loss mse to predict a quantity"
        )
    return "its targets are quantities (floats): use --loss mse to predict them, or store class labels as integers"


def _model_and_config(args, values: dict | None = None, comm=None):
    """(model settings, TrainConfig, backend) from the command line, every setting checked against its rule and
    against the model's loss and backend, before any data are read. Under several MPI ranks (``comm``), "cuda" and
    "auto" mean this rank's GPU, cuda:<local rank>."""
    from .backend import get_backend
    from .backend.base import require_memory
    from .model import hidden_activations
    from .trainer import TrainConfig, check_against_model, training_memory_floor

    values = command_line_settings(args) if values is None else values
    model = {name: values[name] for name in MODEL}
    if comm is not None and comm.size > 1:
        from .distributed import rank_device

        model["device"] = rank_device(model["device"], comm)
    hidden_activations(model["activation"], len(model["hidden"]))
    train = {name: values[name] for name in TRAINING + ["seed"]}
    config = TrainConfig(**train, verbose=not getattr(args, "quiet", True)).validate()
    ops = get_backend(model["device"])  # an unusable GPU is exit status 3, now rather than after loading data
    check_against_model(config, model["loss"], ops, has_validation=config.validation_fraction > 0)
    # hidden layers that could never fit are refused before any data are read (the full check follows them)
    require_memory(
        ops,
        training_memory_floor(model["hidden"], config, model["dtype"]),
        f"hidden layers of {','.join(map(str, model['hidden']))} with {config.optimizer}",
        "use smaller hidden layers",
    )
    return model, config, ops


#: What an output flag writes, and the names that say so (a file named otherwise is written, with a warning).
_WRITES = {
    "save": ("an .npz archive", (".npz", ".safetensors")),
    "metrics_json": ("JSON", (".json",)),
    "json": ("JSON", (".json",)),
}


#: A file name each output flag takes, for the example in the refusal of a folder (one that would pass the checks).
_EXAMPLE_NAMES = {
    "save": "model.npz",
    "metrics_json": "metrics.json",
    "plot": "plot.png",
    "output": "predictions.csv",
    "results": "results.csv",
    "json": "scores.json",
    "onnx": "model.onnx",
}


def _check_outputs(args, flags=("save", "metrics_json", "plot")) -> None:
    """Each output path given can be written, before any work: its folder exists and is writable, the path is
    not a folder, and no two outputs (the checkpoint file included) are the same file. (A run's results must not
    be lost to a typo in --save.)"""
    seen = {}
    checkpoint = getattr(args, "checkpoint", None)
    if checkpoint:
        seen[os.path.realpath(os.path.join(checkpoint, "checkpoint.npz"))] = "--checkpoint"
    for name in flags:
        path = getattr(args, name, None)
        flag = "--" + name.replace("_", "-")
        if path is None:
            continue
        if not str(path).strip():
            raise ConfigError(f"{flag} is empty: give a file name, or leave {flag} out")
        try:
            folder = os.path.dirname(os.path.abspath(write_target(path)))  # (a link's target is what is replaced)
        except OSError as e:  # (a loop of links)
            raise ConfigError(f"{flag} {path} {e.strerror}") from None
        if os.path.isdir(path):
            example = os.path.join(path, _EXAMPLE_NAMES.get(name, "out"))
            raise ConfigError(f"{flag} {path} is a folder: give a file name, e.g. {example}")
        special = special_file(path)
        if special:  # (/dev/null, a FIFO: the finished file would be renamed onto it, in its place)
            raise ConfigError(f"{flag} {path} is {special}, not a file: give the name of a file to write")
        if str(path).endswith(("/", os.sep)):
            raise ConfigError(f"{flag} {path} ends in a slash, as a folder does: give a file name, without it")
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise ConfigError(f"{flag} {path}: {folder} is a file, not a folder: write elsewhere")
        if not os.path.isdir(folder):
            raise ConfigError(f"{flag} {path}: the folder {folder} does not exist: create it, or write elsewhere")
        if not os.access(folder, os.W_OK):
            raise ConfigError(f"{flag} {path}: the folder {folder} is not writable: write elsewhere")
        refused = write_refused(folder)
        if refused:
            raise ConfigError(f"{flag} {path}: no file can be written in {folder} ({refused}): write elsewhere")
        if name == "plot" and not str(path).lower().endswith(".png"):
            raise ConfigError(f"--plot writes a PNG image: give a path ending in .png, not {path}")
        kinds = _WRITES.get(name)
        suffix = os.path.splitext(str(path))[1].lower()
        if kinds and suffix and suffix not in kinds[1]:  # (no suffix at all is the user's choice)
            other = " (or .safetensors, for that format)" if name == "save" else ""
            print(
                f"mlp-xp: warning: {flag} {path} writes {kinds[0]}, whatever its name: name it {kinds[1][0]}{other}",
                file=sys.stderr,
            )
        if name == "plot":  # matplotlib there before the work (bench and evaluate drew after it)
            from .plotting import _pyplot

            _pyplot()
        if name == "save" and str(path).lower().endswith(".safetensors"):
            try:
                import safetensors  # noqa: F401
            except ImportError:
                raise ConfigError(
                    f"--save {path} writes safetensors, which needs the safetensors package: "
                    f"{install_hint('safetensors')}; or save as .npz"
                ) from None
        real = os.path.realpath(path)
        if real in seen:
            raise ConfigError(f"{flag} {path} is the file {seen[real]} writes too: give each output its own file")
        seen[real] = flag


def _check_log_folder(folder: str) -> None:
    """--tensorboard: a folder that can be made or written, and tensorboardX there, before any data are read."""
    check_folder_to_write(folder, "tensorboard", "the logs")
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        raise ConfigError(f"--tensorboard needs tensorboardX: {install_hint('tensorboard')}") from None


def _build_model(dataset, model_settings: dict, ops):
    from .model import MLP

    m = model_settings
    sizes = [dataset.X_train.shape[1], *m["hidden"], _output_width(dataset, m["loss"])]
    return MLP(
        sizes,
        m["activation"],
        m["loss"],
        init=m["init"],
        dtype=m["dtype"],
        device="cpu" if ops.kind == "cpu" else ops,  # (the CPU's BLAS depends on the model's size)
        seed=m["seed"],
        leaky_slope=m["leaky_slope"],
    )


def cmd_train(args) -> int:
    """train, in one process or as one rank of ``mpiexec -n N mlp-xp train ...`` (rank 0 reports and writes)."""
    from .distributed import from_environment

    comm = from_environment()
    if comm.size == 1:
        return _train(args, comm)
    if comm.rank > 0:
        _silence_stdout()
        args.save = args.metrics_json = args.plot = args.tensorboard = None
        args.quiet = True
    try:
        return _train(args, comm)
    except BaseException as e:
        # one rank's failure ends the job on every rank now: the others would wait for it in the next collective
        status, why = (EXIT_INTERRUPTED if isinstance(e, KeyboardInterrupt) else EXIT_FAILED), str(e)
        if isinstance(e, MLPXPError):
            status = EXIT_NO_GPU if isinstance(e, BackendUnavailable) else EXIT_BAD_INPUT
        elif isinstance(e, (BrokenPipeError, OutputLost)):  # (rank 0's, where its output is a file of its own)
            status, why = _output_lost(e)
            why = why or "its standard output was closed"
        print(f"mlp-xp: error on MPI rank {comm.rank} of {comm.size}: {why}", file=sys.stderr)
        sys.stderr.flush()
        comm.abort(status)
        raise


def _train(args, comm) -> int:
    from .checkpoint import check_folder
    from .distributed import for_backend
    from .trainer import fit

    _check_outputs(args)  # (before the device is probed: a GPU's start takes seconds, a typo none)
    model_settings, config, ops = _model_and_config(args, comm=comm)
    comm = for_backend(comm, ops)  # GPU ranks: NCCL on the backend's stream, bootstrapped over MPI
    if args.tensorboard:
        _check_log_folder(args.tensorboard)
    if comm.rank > 0:  # rank 0 alone reads and writes the checkpoint (and sends it to the others)
        pass
    elif config.checkpoint is not None:
        check_folder(config.checkpoint, config.resume)
        if config.resume:  # what the checkpoint says of the model and the math, before the data are read
            _check_resume_settings(config, model_settings)
    elif config.resume:
        raise ConfigError("--resume needs --checkpoint DIR: the folder the run's checkpoint is in")
    table = None
    if _is_table(args):
        table = _load_table(args, model_settings, config.validation_fraction, config.seed)
        ds = table.dataset
    else:
        ds = _load(args, _seed(args.data_seed))
    print(ds.describe(), file=sys.stderr)
    model = _build_model(ds, model_settings, ops)
    model.trained_on = {"dataset": ds.name, "data_seed": _seed(args.data_seed)}
    validation = {}
    if table is not None:
        model.preprocessing, model.labels, model.target = table.preprocessing, table.labels, table.target
        model.target_scaler = table.target_scaler
        if table.X_val is not None:
            validation = {"X_val": table.X_val, "y_val": table.y_val}
    print(f"{model}", file=sys.stderr)
    if comm.size > 1 and comm.rank == 0:
        batch = min(config.batch_size, len(ds.X_train) if not hasattr(ds.X_train, "tocsr") else ds.X_train.shape[0])
        print(
            f"mpi: {comm.size} ranks; global batch {batch} rows, {-(-batch // comm.size)} or fewer a rank"
            + (f"; one GPU a rank, reduced with {comm.transport}" if comm.reduces_device_buffers else ""),
            file=sys.stderr,
        )
    existed = bool(args.save) and os.path.exists(args.save)
    try:
        with contextlib.ExitStack() as stack:
            callbacks = []
            if args.tensorboard:
                from .tensorboard import TensorBoardLogger
                from .trainer import settings_of

                callbacks.append(stack.enter_context(TensorBoardLogger(args.tensorboard, settings_of(config))))
            history = fit(
                model,
                ds.X_train,
                ds.y_train,
                config,
                X_test=ds.X_test,
                y_test=ds.y_test,
                callbacks=callbacks,
                comm=comm,
                **validation,
            )
    except DivergenceError as e:
        print(f"mlp-xp: {e}", file=sys.stderr)
        history = e.history
    except TrainingInterrupted as e:
        return _train_interrupted(args, e, model, ds, existed)
    # diverged, whether it raised or stopped (--on-divergence stop): status 1, the last good weights kept
    status = EXIT_FAILED if history.stop_reason.startswith("diverged") else EXIT_OK
    if status == EXIT_FAILED and config.on_divergence == "stop" and not config.verbose:  # (verbose: fit said it)
        print(f"mlp-xp: {history.stop_reason.removeprefix('diverged: ')}", file=sys.stderr)
    if status == EXIT_FAILED and not len(history) and existed:
        # no epoch finished well: the weights are the untrained ones, which must not replace a model on disk
        print(f"mlp-xp: no epoch finished before the divergence: {args.save} was left as it was", file=sys.stderr)
        saved = True
    else:
        saved = _save_model(model, args.save)
    recorded = _write_records(args, history, ds, model)
    _report(history)  # last, on stdout: a reader that has gone (| head) cannot cost the files above
    return status if saved and recorded else EXIT_FAILED


def _check_resume_settings(config, model_settings: dict) -> None:
    """--resume: refuse, before any data are read, a model or settings the checkpoint's run did not have."""
    from .checkpoint import check_settings, read
    from .model import hidden_activations
    from .trainer import settings_of

    meta, _ = read(config.checkpoint)
    m = model_settings
    hidden = list(m["hidden"])
    model = {
        "sizes": [None, *hidden, None],  # the input and output widths come with the data
        "activation": hidden_activations(m["activation"], len(hidden)),
        "loss": m["loss"],
        "init": m["init"],
        "dtype": settings.check("dtype", m["dtype"]).name,
        "seed": m["seed"],
        "leaky_slope": m["leaky_slope"],
    }
    check_settings(meta, settings_of(config), model)


def _save_model(model, path, say: bool = True) -> bool:
    """Save the model to ``path`` (if given); a failure is one line, and the other outputs are still written."""
    if not path:
        return True
    try:
        model.save(path)
    except OSError as e:
        print(
            f"mlp-xp: error: the model could not be written to {path} ({e.strerror or e}): nothing was saved there",
            file=sys.stderr,
        )
        return False
    if say:
        print(f"saved the model to {path}", file=sys.stderr)
    return True


def _write_records(args, history, ds, model) -> bool:
    """--metrics-json and --plot, each on its own: one that fails does not stop the other. Whether every one asked
    for was written (a run whose outputs could not all be written exits 1, as one whose model could not)."""
    written = True
    if args.metrics_json:
        written &= _write_output("metrics", args.metrics_json, lambda: history.to_json(args.metrics_json), say=False)
    if args.plot and not len(history):
        print(f"mlp-xp: no epoch finished, so no plot was written to {args.plot}", file=sys.stderr)
    if args.plot and len(history):
        from .plotting import plot_history

        title = f"{ds.name}: {model}"
        written &= _write_output(
            "plot", args.plot, lambda: plot_history(history.records, args.plot, title=title), say=False
        )
    return written


def _write_output(what: str, path, write, *, say: bool = True) -> bool:
    """``write()``, which writes the output ``what`` to ``path``: a failure is one line, and the command goes on to
    its other outputs; ``say``: a line saying it was written. Whether it was."""
    try:
        write()
    except OSError as e:
        print(f"mlp-xp: error: the {what} could not be written to {path} ({e.strerror or e})", file=sys.stderr)
        return False
    if say:
        print(f"wrote {path}", file=sys.stderr)
    return True


def _train_interrupted(args, e, model, ds, existed: bool) -> int:
    """Ctrl-C or SIGTERM during training: write what the run had (never an untrained model over a file), say in
    one line what was written where, and exit 130 or 143."""
    history = e.history
    written, kept = [], ""
    if args.save:
        if not len(history) and existed:
            kept = f"; kept {args.save} as it was (no epoch had finished)"
        elif _save_model(model, args.save, say=False):
            what = f"epoch {history.best['epoch']}" if len(history) else "the initial weights"
            written.append(f"the model of {what} to {args.save}")
    _write_records(args, history, ds, model)
    if e.checkpoint is not None:
        written.append(f"a checkpoint to {e.checkpoint} (go on with --resume)")
    said = (f": wrote {'; '.join(written)}" if written else "") + kept
    word, status = _stopped_by(e.signum)
    print(f"mlp-xp: {word} {e.where}{said}", file=sys.stderr)
    return status


def _stopped_by(signum: int) -> tuple[str, int]:
    """How a run that a signal stopped is said, and its exit status: SIGTERM 143, Ctrl-C 130."""
    return ("terminated", EXIT_TERMINATED) if signum == signal.SIGTERM else ("interrupted", EXIT_INTERRUPTED)


def _report(history) -> None:
    if not len(history):
        return
    last = history.best  # the epoch whose weights the model holds (early stopping restores the best)
    total = sum(r["seconds"] for r in history.records)
    parts = [f"{len(history)} epoch{'s' if len(history) != 1 else ''} in {total:.1f}s training time"]
    for key in ("test_accuracy", "val_accuracy"):
        if key in last:
            parts.append(f"{key} {100 * last[key]:.2f}%")
    for key in ("test_mse", "val_mse"):
        if key in last:
            parts.append(f"{key} {last[key]:.4g}")
    if history.stop_reason != "completed" and not history.stop_reason.startswith("diverged"):  # (said above)
        parts.append(history.stop_reason)
    print("done: " + ", ".join(parts))


def cmd_evaluate(args) -> int:
    from .model import MLP

    device = settings.check("device", args.device)
    _seed(args.data_seed or "0")  # a bad value is refused before the model is read
    _check_outputs(args, ("json", "plot"))
    model = MLP.load(args.model, device=device)
    if args.plot and model.loss == "mse":
        raise ConfigError("--plot draws a classifier's confusion matrix, and this model is a regressor: leave it out")
    if args.data is not None and _is_table(args):
        X, y, name = _table_rows(args, model)
        return _scored(args, model, X, y, name)
    if model.target is not None and args.data is None:
        raise ConfigError(f"{args.model} was trained on a table: give the rows to score with --data FILE.csv")
    trained = model.trained_on or {}
    if args.data is None:  # the dataset the model was trained on, where it is a named one (a path is never stored)
        name = trained.get("dataset", "digits")
        if name.split(":")[0] not in ("digits", "synthetic", "mnist", "fashion-mnist"):
            raise ConfigError(
                f"{args.model} was trained on {name}, a folder or file and not a named dataset: give it with --data"
            )
        args.data = name
    if args.data_seed is None and args.data == trained.get("dataset") and "data_seed" in trained:
        args.data_seed = str(trained["data_seed"])  # the model's own, for its own dataset
    data_seed = _seed(args.data_seed or "0")
    ds = _load(args, data_seed)
    X, y = (ds.X_test, ds.y_test) if args.split == "test" else (ds.X_train, ds.y_train)
    if X is None:
        raise ConfigError(f"{ds.name} has no test split: use --split train")
    other_seed = ds.seeded and trained.get("data_seed") != data_seed  # (files that fix the split: any seed's rows)
    if "dataset" in trained and (trained["dataset"] != ds.name or other_seed):
        print(
            f"mlp-xp: warning: the model was trained on {trained['dataset']} with data seed "
            f"{trained.get('data_seed')}, and is evaluated on {ds.name} with data seed {data_seed}: the scores "
            "are not those of its test split (pass the same --data and --data-seed)",
            file=sys.stderr,
        )
    return _scored(args, model, X, y, f"{ds.name} {args.split}")


def _table_rows(args, model):
    """evaluate on a table: (X, y, name) of the rows --test or --test-fraction choose, else the whole table."""
    from .tabular import scoring_rows, split_test_rows

    target, features = args.target, _column_list(args.features, "--features")
    fraction = _test_fraction(args)
    if args.test is not None and fraction is not None:
        raise ConfigError("--test and --test-fraction both choose the rows to score: give one of them")
    path = args.test or args.data
    X, y, raw = scoring_rows(model, path, target=target, features=features)
    name = f"{os.path.basename(path)}"
    if fraction is not None:  # the training run's split of this table: the same rows, by the same seed
        strata = np.asarray(raw).astype(str) if model.loss != "mse" else None
        train, test = split_test_rows(len(X), fraction, _seed(args.data_seed or "0"), strata)
        rows = test if args.split == "test" else train
        return X[rows], y[rows], f"{name} {args.split}"
    return X, y, f"{name} (all rows)"


def _scored(args, model, X, y, name: str) -> int:
    """Print the scores and the report of ``model`` on (X, y); --json and --plot."""
    from .files import write_json_atomic
    from .trainer import evaluate

    scores = evaluate(model, X, y)
    if model.target_scaler is not None:  # y was standardized as in training: the scores back in the target's units
        y = model.target_scaler.inverse(np.asarray(y, np.float64).reshape(len(y), -1))
        factor = float(model.target_scaler.scale[0] ** 2)
        scores = {k: v * factor for k, v in scores.items()}
    line = "  ".join(f"{k} {v:.4f}" if k != "accuracy" else f"accuracy {100 * v:.2f}%" for k, v in scores.items())
    print(f"{name} ({len(X)} samples): {line}")
    report = _report_of(model, X, y, required=bool(args.json or args.plot))
    if report is not None:
        from .reports import format_report

        print(format_report(report))
    written = True
    if args.json:
        doc = {"data": name, "scores": scores, "report": report}
        written &= _write_output("report", args.json, lambda: write_json_atomic(args.json, doc))
    if args.plot and report is not None and report["task"] == "classification":
        from .plotting import plot_confusion

        labels = [str(c) for c in report["labels"]]
        written &= _write_output(
            "plot", args.plot, lambda: plot_confusion(report["confusion_matrix"], labels, args.plot, title=name)
        )
    elif args.plot:
        print("mlp-xp: a multi-label model has no single confusion matrix: no plot was written", file=sys.stderr)
    return EXIT_OK if written else EXIT_FAILED


def _report_of(model, X, y, required: bool):
    """The evaluation report (:mod:`mlp_xp.reports`), or None, with a note, without scikit-learn (an error when
    --json or --plot asked for it) or for a multi-label model."""
    from .reports import classification_report, regression_report

    try:
        p = model.predict_proba(X)
        if model.loss == "mse":
            return regression_report(y, p)
        if model.loss == "binary_cross_entropy" and model.n_outputs > 1:
            return None  # multi-label: per-label reports are not one confusion matrix
        labels = model.labels.to_json() if model.labels is not None else list(range(max(2, model.n_outputs)))
        pred = p.argmax(axis=1) if model.loss == "cross_entropy" else (p[:, 0] > 0.5).astype(np.int64)
        truth = np.asarray(y).reshape(len(pred)).astype(np.int64)
        return classification_report(truth, pred, labels)
    except ConfigError:
        if required:
            raise
        print(f"(per-class report: {install_hint('sklearn')})", file=sys.stderr)
        return None


def cmd_predict(args) -> int:
    from .model import MLP
    from .predict import check_paths, predict_file

    device = settings.check("device", args.device)
    batch = Number(integer=True, low=1).parse(args.batch_size, "--batch-size")
    _check_outputs(args, ("output",))
    check_paths(None, args.input, args.output, args.proba)  # (before the model, and the device, are loaded)
    model = MLP.load(args.model, device=device)
    n = predict_file(  # (which checks the paths against the model before it reads a row)
        model, args.input, args.output, proba=args.proba, batch=batch, progress=None if not args.quiet else False
    )
    what = "class probabilities" if args.proba else "predictions"
    print(f"wrote {what} for {n} rows to {args.output}", file=sys.stderr)
    return EXIT_OK


def cmd_search(args) -> int:
    from .search import estimator_param_names, parse_space, prepare_search, run_search
    from .trainer import split_validation

    if not args.param:
        raise ConfigError("search needs at least one --param, e.g. --param lr=0.01,0.1")
    space = parse_space(args.param)
    renamed = getattr(args, "renamed:--validation")
    if renamed is not None:
        if args.holdout is not None:
            raise ConfigError("--validation and --holdout are the same setting: give only --holdout")
        print("mlp-xp: warning: search's --validation is now --holdout; --validation will be removed", file=sys.stderr)
    flag = "--validation" if renamed is not None else "--holdout"  # errors name the flag the user gave
    holdout = Number(low=0, high=1, low_open=True, high_open=True).parse(args.holdout or renamed or "0.2", flag)
    n_iter = Number(integer=True, low=1).parse(args.n_iter, "--n-iter")
    values = command_line_settings(args)
    engine = _engine_choice(args)
    blas = None if args.blas_threads is None else Number(integer=True, low=1).parse(args.blas_threads, "--blas-threads")
    if blas is None and engine is not None:
        blas = 1  # one per candidate: workers share the cores, and a stated count makes the table reproducible
    _check_outputs(args, ("results", "plot"))
    if args.results and not str(args.results).lower().endswith((".csv", ".json")):
        raise ConfigError(f"--results writes CSV or JSON: give a path ending in .csv or .json, not {args.results}")
    loss = values["loss"]
    if loss not in ("cross_entropy", "mse"):
        raise ConfigError(
            f"search trains cross_entropy classifiers or mse regressors, not {loss}: use the "
            "Python API (mlp_xp.estimator with GridSearchCV) for other losses"
        )
    task = "regression" if loss == "mse" else "classification"
    base = {k: v for k, v in values.items() if k in estimator_param_names(task)}
    _model_and_config(args, values)  # the base settings against the loss and the backend
    seed = values["seed"]
    prepare_search(space, mode=args.mode, n_iter=n_iter, seed=seed, base_params=base, task=task)
    data_seed = _seed(args.data_seed)
    if _is_table(args):  # the preprocessing is fitted on the candidates' training rows only
        table = _load_table(args, values, holdout, seed)
        ds = table.dataset
        Xtr, ytr, Xval, yval = ds.X_train, ds.y_train, table.X_val, table.y_val
        print(ds.describe(), file=sys.stderr)
    else:
        ds = _load(args, data_seed)
        print(ds.describe(), file=sys.stderr)
        if loss == "cross_entropy":
            _output_width(ds, loss)  # class labels, or one clear line
        Xtr, ytr, Xval, yval = split_validation(ds.X_train, ds.y_train, holdout, seed)
    search = {"mode": args.mode, "n_iter": n_iter, "seed": seed, "base_params": base, "task": task, "verbose": True}
    rows = None
    try:
        with contextlib.ExitStack() as stack:
            n_jobs = None
            if engine is not None:
                from .engines import open_engine

                opened = stack.enter_context(open_engine(*engine, blas_threads=blas, device=values["device"]))
                n_jobs = opened.workers
                print(f"{opened.describe}; {blas} BLAS thread{'s' if blas != 1 else ''} per candidate", file=sys.stderr)
            rows = run_search(Xtr, ytr, Xval, yval, space, n_jobs=n_jobs, blas_threads=blas, **search)
    except SearchInterrupted as e:  # the candidates that finished are a result too
        _search_outputs(args, e.rows, space, base, task)
        word, status = _stopped_by(e.signum)
        print(f"mlp-xp: {word} after {len(e.rows)} of {e.total} candidates (the table holds those)", file=sys.stderr)
        return status
    except SearchFailed as e:
        _search_outputs(args, e.rows, space, base, task)
        print(f"mlp-xp: error: {e} (the table holds the candidates that finished)", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt as e:
        if rows is None:
            raise
        # a signal while the engine shut down: every candidate had finished, so the results are whole
        _search_outputs(args, rows, space, base, task)
        word, status = _stopped_by(getattr(e, "signum", signal.SIGINT))
        print(f"mlp-xp: {word} while the engine shut down, after every candidate had finished", file=sys.stderr)
        return status
    written = _search_outputs(args, rows, space, base, task)
    if rows and not any(row["status"] == "ok" for row in rows):  # (a table of failures is no result)
        print("mlp-xp: error: no candidate trained (each failed or diverged, as the table says)", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK if written else EXIT_FAILED


def _engine_choice(args) -> tuple[str, str] | None:
    """("dask" or "ray", address) of --dask / --ray, or None; the address's form is checked here."""
    from .engines import check_installed, parse_address

    if args.dask is not None and args.ray is not None:
        raise ConfigError("--dask and --ray both choose where the candidates run: give one of them")
    for name, address in (("dask", args.dask), ("ray", args.ray)):
        if address is not None:
            parse_address(name, address)
            check_installed(name)
            return name, address
    return None


def _search_outputs(args, rows: list, space: dict, base: dict, task: str) -> bool:
    """The ranked table (and why each candidate that did not finish well did not), --results and --plot; whether
    each file asked for was written."""
    from .search import format_table, write_results

    written = True
    if rows:
        print(f"score: each candidate's {'R^2' if task == 'regression' else 'accuracy'} on the held-out rows")
        print(format_table(rows))
    for r in rows:
        if r["status"] != "ok":
            print(f"mlp-xp: candidate {r['candidate']} {r['status']}: {r['reason']}", file=sys.stderr)
    if args.results and rows:
        written &= _write_output(
            "results", args.results, lambda: write_results(rows, args.results, base_params=base, names=list(space))
        )
    if args.plot and rows:
        from .plotting import plot_search

        title = f"{args.mode} search"
        written &= _write_output("plot", args.plot, lambda: plot_search(rows, list(space), args.plot, title=title))
    return written


def cmd_bench(args) -> int:
    from .bench import run_bench
    from .constraints import device_choice

    batch = settings.BY_NAME["batch_size"]
    sizes = [batch.rule.parse(t, "--batch-sizes") for t in str(args.batch_sizes).split(",")]
    hidden = settings.BY_NAME["hidden"].rule.parse(args.hidden, "--hidden")
    steps = Number(integer=True, low=1).parse(args.steps, "--steps")
    dtype = settings.check("dtype", args.dtype)
    device_choice(args.device)  # a bad --device is status 2 before any timing
    _check_outputs(args, ("json", "plot"))
    return run_bench(
        sizes, list(hidden), steps, dtype.name, json_path=args.json, plot_path=args.plot, device=args.device
    )


def cmd_doctor(args) -> int:
    from .constraints import device_choice
    from .doctor import run_doctor

    device_choice(args.device)  # a bad --device is status 2 before any check
    return run_doctor(args.device)


def cmd_info(args) -> int:
    import platform

    from . import __version__
    from .backend import blas, cpu_loops, cuda_status

    print(f"mlp_xp {__version__}  Python {platform.python_version()}  NumPy {np.__version__}")
    for mod in ("tqdm", "sklearn", "matplotlib", "cupy"):
        try:
            m = __import__(mod)
            print(f"  {mod} {getattr(m, '__version__', '?')}")
        except ImportError:
            print(f"  {mod} not installed")
        except Exception as e:  # a broken CuPy install
            print(f"  {mod} failed to import: {e}")
    print("backends:")
    try:
        loops = cpu_loops.status()
    except RuntimeError as e:  # MLP_XP_REQUIRE_CPU_LOOPS=1 and the build failed
        loops = f"FAILED: {e}"
    try:
        direct = blas.describe(paths=True)
        what = f"direct: {direct}" if direct else "through NumPy"
    except ConfigError as e:  # MLP_XP_BLAS names a BLAS that cannot be used
        what = f"FAILED: {e}"
    print(f"  cpu: usable; BLAS {what}; compiled loops {loops}")
    ok, what = cuda_status(0)
    print(f"  cuda: {'usable: ' + what if ok else 'not usable: ' + what}")
    return EXIT_OK


def cmd_export(args) -> int:
    from .export import OPSET
    from .model import MLP

    _check_outputs(args, ("onnx",))
    if not str(args.onnx).lower().endswith(".onnx"):
        raise ConfigError(f"--onnx writes an ONNX file: give a path ending in .onnx, not {args.onnx}")
    model = MLP.load(args.model, device="cpu")
    model.to_onnx(args.onnx)
    print(f"wrote {args.onnx} (ONNX opset {OPSET})", file=sys.stderr)
    if model.preprocessing is not None:
        print(
            f"mlp-xp: note: the model was trained on a table: the ONNX graph takes its {model.n_inputs} encoded "
            "features (named in its metadata, mlp_xp.features), not the raw columns; mlp-xp predict takes raw rows",
            file=sys.stderr,
        )
    return EXIT_OK


COMMANDS = {
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "predict": cmd_predict,
    "search": cmd_search,
    "bench": cmd_bench,
    "doctor": cmd_doctor,
    "info": cmd_info,
    "export": cmd_export,
}


if __name__ == "__main__":
    sys.exit(main())
