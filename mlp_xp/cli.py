"""The ``mlp-xp`` command: train, evaluate, search, bench, doctor, info.

Every mlp_xp error is printed as one line, ``mlp-xp: error: ...``, with exit status 2; a diverged run
prints its message, keeps (and saves, with --save) the last good weights, and exits with status 1.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from .errors import ConfigError, DivergenceError, MLPXPError
from .validation import check_fraction


def _hidden(text: str) -> list[int]:
    """'512,256' -> [512, 256]; '' or 'none' -> [] (no hidden layer)."""
    if text.strip().lower() in ("", "none"):
        return []
    try:
        sizes = [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--hidden takes widths separated by commas, e.g. 512,256; got {text!r}"
        ) from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"--hidden widths must be positive, got {text!r}")
    return sizes


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"a seed is a non-negative integer, got {text!r}")
    return value


def _data_flags() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        default="digits",
        help="dataset name (digits, synthetic, synthetic:NxD[xC], mnist, fashion-mnist), a folder of "
        "MNIST-layout IDX files, or an .npz file with X_train, y_train[, X_test, y_test] "
        "(default: digits)",
    )
    g.add_argument(
        "--data-seed",
        type=_seed,
        default=0,
        help="seed of the dataset itself where it has one (the digits split, the synthetic set); "
        "evaluate with the same value a model was trained with (default 0)",
    )
    return p


def _model_and_training_flags() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False, parents=[_data_flags()])
    g = p.add_argument_group("validation")
    g.add_argument(
        "--validation",
        type=float,
        default=None,
        metavar="FRACTION",
        help="hold out this fraction of the training data for validation (train: default 0, or 0.1 "
        "with --early-stopping; search: default 0.2)",
    )
    g = p.add_argument_group("model")
    g.add_argument("--hidden", type=_hidden, default=[256, 128], help="hidden widths, e.g. 512,256 (default 256,128)")
    g.add_argument("--activation", default="relu", help="relu, leaky_relu, sigmoid, tanh or identity")
    g.add_argument("--loss", default="cross_entropy", help="cross_entropy, binary_cross_entropy or mse")
    g.add_argument("--init", default="glorot", help="glorot or he")
    g.add_argument("--dtype", default="float32", help="float32 or float64")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    g.add_argument(
        "--seed", type=_seed, default=0, help="seed of the weights, the validation split and the shuffles (default 0)"
    )
    g = p.add_argument_group("optimization")
    g.add_argument("--optimizer", default="momentum", help="sgd, momentum, nesterov or adam")
    g.add_argument("--lr", type=float, default=0.05, help="learning rate (default 0.05)")
    g.add_argument("--momentum", type=float, default=0.9)
    g.add_argument("--beta1", type=float, default=0.9)
    g.add_argument("--beta2", type=float, default=0.999)
    g.add_argument("--weight-decay", type=float, default=0.0, help="L2 penalty on the weights")
    g.add_argument("--l1", type=float, default=0.0, help="L1 penalty on the weights")
    g.add_argument("--schedule", default="constant", help="constant, inverse_time, power, step or cosine")
    g.add_argument("--decay", type=float, default=0.0, help="delta of inverse_time and power")
    g.add_argument("--step-size", type=float, default=10.0, help="epochs between steps of the step schedule")
    g.add_argument("--gamma", type=float, default=0.1, help="factor of the step schedule")
    g.add_argument("--min-lr", type=float, default=0.0, help="floor of the cosine schedule")
    g.add_argument("--warmup", type=float, default=0.0, help="epochs of linear warm-up")
    g.add_argument("--batch-size", type=int, default=128)
    g.add_argument("--epochs", type=int, default=20)
    g.add_argument("--drop-last", action="store_true", help="skip each epoch's last partial batch")
    g.add_argument("--early-stopping", action="store_true", help="stop when validation loss stops improving")
    g.add_argument("--patience", type=int, default=5)
    g.add_argument("--label-smoothing", type=float, default=0.0)
    return p


def build_parser() -> argparse.ArgumentParser:
    common = _model_and_training_flags()
    parser = argparse.ArgumentParser(prog="mlp-xp", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser(
        "train",
        parents=[common],
        help="train a model",
        description="Train an MLP; prints a progress bar per epoch and a summary line after each.",
    )
    t.add_argument("--save", metavar="PATH", help="save the trained model (.npz: arrays + JSON metadata)")
    t.add_argument("--metrics-json", metavar="PATH", help="write the per-epoch metrics as a JSON list")
    t.add_argument("--plot", metavar="PATH", help="write a PNG of the learning curves")
    t.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")

    e = sub.add_parser("evaluate", parents=[_data_flags()], help="score a saved model on a dataset")
    e.add_argument("model", help="model file written by mlp-xp train --save")
    e.add_argument("--split", choices=("test", "train"), default="test")
    e.add_argument("--device", default="auto")

    s = sub.add_parser(
        "search",
        parents=[common],
        help="grid or random search scored on a validation split",
        description="Grid or random search over --param specs, each candidate trained on the "
        "training split and scored on the validation split; prints a ranked table.",
    )
    s.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="SPEC",
        help="a searched setting, e.g. lr=0.01,0.1  hidden=64;128,64  lr=loguniform:1e-4:1e-1 (repeat for several)",
    )
    s.add_argument("--mode", choices=("grid", "random"), default="grid")
    s.add_argument("--n-iter", type=int, default=10, help="candidates drawn by random search")

    b = sub.add_parser("bench", help="time training steps on every usable backend")
    b.add_argument("--batch-sizes", default="32,128,512,2048")
    b.add_argument("--hidden", type=_hidden, default=[512, 256])
    b.add_argument("--steps", type=int, default=50)
    b.add_argument("--dtype", default="float32")
    b.add_argument("--plot", metavar="PATH", help="write a PNG of samples per second against batch size")
    b.add_argument("--json", metavar="PATH", help="write the table as JSON")

    sub.add_parser("doctor", help="check every CUDA kernel on this machine's GPU against its NumPy twin")
    sub.add_parser("info", help="versions, and which backends are usable here and why not")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {
            "train": cmd_train,
            "evaluate": cmd_evaluate,
            "search": cmd_search,
            "bench": cmd_bench,
            "doctor": cmd_doctor,
            "info": cmd_info,
        }[args.command](args)
    except MLPXPError as e:
        print(f"mlp-xp: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mlp-xp: interrupted", file=sys.stderr)
        return 130


def _output_width(dataset, loss: str) -> int:
    y = dataset.y_train
    if loss == "cross_entropy":
        if dataset.n_classes < 2:
            raise ConfigError(
                f"{dataset.name} has no class labels for cross_entropy: use --loss mse or binary_cross_entropy"
            )
        return dataset.n_classes
    return 1 if np.ndim(y) == 1 else y.shape[1]


def _train_settings(args, validation: float) -> dict:
    return dict(
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        momentum=args.momentum,
        beta1=args.beta1,
        beta2=args.beta2,
        weight_decay=args.weight_decay,
        l1=args.l1,
        schedule=args.schedule,
        decay=args.decay,
        step_size=args.step_size,
        gamma=args.gamma,
        min_lr=args.min_lr,
        warmup=args.warmup,
        drop_last=args.drop_last,
        validation_fraction=validation,
        early_stopping=args.early_stopping,
        patience=args.patience,
        label_smoothing=args.label_smoothing,
        seed=args.seed,
    )


def cmd_train(args) -> int:
    from .data import load_dataset
    from .model import MLP
    from .trainer import TrainConfig, fit

    validation = args.validation if args.validation is not None else (0.1 if args.early_stopping else 0.0)
    # Every setting is checked before the data are read or a model is built.
    config = TrainConfig(**_train_settings(args, validation), verbose=not args.quiet).validate()
    if args.plot:
        from .plotting import _pyplot

        _pyplot()
    ds = load_dataset(args.data, seed=args.data_seed)
    print(ds.describe(), file=sys.stderr)
    sizes = [ds.X_train.shape[1], *args.hidden, _output_width(ds, args.loss)]
    model = MLP(sizes, args.activation, args.loss, init=args.init, dtype=args.dtype, device=args.device, seed=args.seed)
    print(f"{model}", file=sys.stderr)
    status = 0
    try:
        history = fit(model, ds.X_train, ds.y_train, config, X_test=ds.X_test, y_test=ds.y_test)
    except DivergenceError as e:
        print(f"mlp-xp: {e}", file=sys.stderr)
        history, status = e.history, 1
    _report(history, model)
    if args.save:
        model.save(args.save)
        print(f"saved the model to {args.save}", file=sys.stderr)
    if args.metrics_json:
        history.to_json(args.metrics_json)
    if args.plot and len(history):
        from .plotting import plot_history

        plot_history(history.records, args.plot, title=f"{ds.name}: {model}")
    return status


def _report(history, model) -> None:
    if not len(history):
        return
    last = history.last
    total = sum(r["seconds"] for r in history.records)
    parts = [f"{len(history)} epochs in {total:.1f}s training time"]
    for key in ("test_accuracy", "val_accuracy"):
        if key in last:
            parts.append(f"{key} {100 * last[key]:.2f}%")
    for key in ("test_mse", "val_mse"):
        if key in last:
            parts.append(f"{key} {last[key]:.4g}")
    if history.stop_reason != "completed":
        parts.append(history.stop_reason)
    print("done: " + ", ".join(parts))


def cmd_evaluate(args) -> int:
    from .data import load_dataset
    from .model import MLP
    from .trainer import evaluate

    model = MLP.load(args.model, device=args.device)
    ds = load_dataset(args.data, seed=args.data_seed)
    X, y = (ds.X_test, ds.y_test) if args.split == "test" else (ds.X_train, ds.y_train)
    if X is None:
        raise ConfigError(f"{ds.name} has no test split: use --split train")
    scores = evaluate(model, X, y)
    line = "  ".join(f"{k} {v:.4f}" if k != "accuracy" else f"accuracy {100 * v:.2f}%" for k, v in scores.items())
    print(f"{ds.name} {args.split} ({len(X)} samples): {line}")
    return 0


def cmd_search(args) -> int:
    from .data import load_dataset
    from .search import estimator_param_names, format_table, parse_space, run_search
    from .trainer import split_validation

    if not args.param:
        raise ConfigError("search needs at least one --param, e.g. --param lr=0.01,0.1")
    space = parse_space(args.param)
    validation = check_fraction(args.validation if args.validation is not None else 0.2, "--validation", low_open=True)
    if args.loss not in ("cross_entropy", "mse"):
        raise ConfigError(
            f"search trains cross_entropy classifiers or mse regressors, not {args.loss}: use the "
            "Python API (mlp_xp.estimator with GridSearchCV) for other losses"
        )
    ds = load_dataset(args.data, seed=args.data_seed)
    print(ds.describe(), file=sys.stderr)
    if args.loss == "cross_entropy":
        _output_width(ds, args.loss)  # class labels, or one clear line
    Xtr, ytr, Xval, yval = split_validation(ds.X_train, ds.y_train, validation, args.seed)
    task = "regression" if args.loss == "mse" else "classification"
    # Every training flag the estimator takes is passed on; the ones it lacks (loss, data) are not settings.
    flags = {**vars(args), "hidden": tuple(args.hidden)}
    base = {k: v for k, v in flags.items() if k in estimator_param_names(task)}
    if args.early_stopping:
        base["validation_fraction"] = 0.1  # carved from the training split; the search split stays apart
    rows = run_search(
        Xtr,
        ytr,
        Xval,
        yval,
        space,
        mode=args.mode,
        n_iter=args.n_iter,
        seed=args.seed,
        base_params=base,
        task=task,
        verbose=True,
    )
    print(format_table(rows))
    return 0


def cmd_bench(args) -> int:
    from .bench import run_bench

    return run_bench(args)


def cmd_doctor(args) -> int:
    from .doctor import run_doctor

    return run_doctor()


def cmd_info(args) -> int:
    import platform

    from . import __version__
    from .backend import blas, cpu_kernels, cuda_status

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
        loops = cpu_kernels.status()
    except RuntimeError as e:  # MLP_XP_REQUIRE_CPU_KERNELS=1 and the build failed
        loops = f"FAILED: {e}"
    print(
        f"  cpu: usable; BLAS {'direct: ' + blas.find().path if blas.find() else 'through NumPy'}; "
        f"compiled loops {loops}"
    )
    ok, what = cuda_status(0)
    print(f"  cuda: {'usable: ' + what if ok else 'not usable: ' + what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
