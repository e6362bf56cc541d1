"""The mlp-xp command, run in-process: train, evaluate, search, bench, info, and its error handling."""

import json

import numpy as np
import pytest

from .cli_runner import run


def test_train_writes_model_metrics_and_plot(tmp_path, capsys):
    model, metrics, plot = tmp_path / "m.npz", tmp_path / "metrics.json", tmp_path / "curves.png"
    code, out, err = run(
        capsys,
        f"train --data digits --hidden 64 --epochs 3 --device cpu --save {model} --metrics-json {metrics} --plot "
        f"{plot}",
    )
    assert code == 0, err
    records = json.loads(metrics.read_text())
    assert [r["epoch"] for r in records] == [1, 2, 3]
    for r in records:
        assert {"epoch", "train_loss", "test_accuracy", "seconds"} <= set(r)
        assert r["seconds"] > 0
    assert records[-1]["test_accuracy"] > 0.85
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "epoch   3/3" in err and "train_loss" in err  # one summary line per epoch
    assert "done: 3 epochs" in out

    code, out, err = run(capsys, f"evaluate {model} --data digits --device cpu")
    assert code == 0, err
    acc = float(out.split("accuracy ")[1].split("%")[0]) / 100
    assert acc == pytest.approx(records[-1]["test_accuracy"], abs=1e-4)


def test_train_on_an_npz_regression_file(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (300, 3)).astype(np.float32)
    y = (X[:, 0] * 2 - X[:, 1]).astype(np.float32)
    path = tmp_path / "reg.npz"
    np.savez(path, X_train=X[:250], y_train=y[:250], X_test=X[250:], y_test=y[250:])
    metrics = tmp_path / "m.json"
    code, _, err = run(
        capsys,
        f"train --data {path} --loss mse --hidden 16 --epochs 40 --optimizer adam --lr 0.01 --batch-size 32 --device "
        f"cpu --quiet --metrics-json {metrics}",
    )
    assert code == 0, err
    assert json.loads(metrics.read_text())[-1]["test_mse"] < 0.05


def test_early_stopping_from_the_command_line(tmp_path, capsys):
    metrics = tmp_path / "m.json"
    code, out, err = run(
        capsys,
        f"train --data digits --hidden 32 --epochs 200 --device cpu --early-stopping --patience 2 --lr 0.2 --quiet "
        f"--metrics-json {metrics}",
    )
    assert code == 0, err
    assert len(json.loads(metrics.read_text())) < 200
    assert "early stopping" in out


@pytest.mark.parametrize("on_divergence", ["raise", "stop"])
@pytest.mark.parametrize("quiet", ["--quiet", ""])
def test_divergence_exits_1_and_saves_the_last_good_weights(tmp_path, capsys, on_divergence, quiet):
    model, metrics = tmp_path / "m.npz", tmp_path / "m.json"
    code, out, err = run(
        capsys,
        f"train --data digits --activation tanh --optimizer sgd --lr 0.01 --schedule step --step-size 1 --gamma "
        f"100000 --epochs 10 --device cpu {quiet} --save {model} --metrics-json {metrics} --on-divergence "
        f"{on_divergence}",
    )
    assert code == 1
    assert err.count("diverged in epoch") == 1  # said once, whoever says it
    from mlp_xp import MLP

    assert np.isfinite(MLP.load(model, device="cpu").get_flat()).all()
    assert 1 <= len(json.loads(metrics.read_text())) < 10


def test_search_prints_a_ranked_table(capsys):
    code, out, err = run(capsys, "search --data digits --hidden 32 --epochs 5 --device cpu --param lr=0.000001,0.05")
    assert code == 0, err
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert rows[0][0] == "1" and "lr=0.05" in " ".join(rows[0])
    assert "lr=1e-06" in " ".join(rows[1]) or "lr=0.000001" in " ".join(rows[1])


def test_bench_reports_the_cpu(tmp_path, capsys):
    plot = tmp_path / "bench.png"
    code, out, err = run(capsys, f"bench --batch-sizes 16,64 --hidden 32 --steps 3 --plot {plot}")
    assert code == 0, err
    assert "| cpu" in out and out.count("| cpu") == 2
    assert plot.exists()


def test_info_lists_backends(capsys):
    code, out, _ = run(capsys, "info")
    assert code == 0
    assert "cpu: usable" in out and "cuda:" in out


def test_search_passes_every_training_flag_on(capsys):
    code, out, err = run(
        capsys,
        "search --data digits --hidden 16 --epochs 60 --device cpu --param lr=0.3 --early-stopping --patience 1 "
        "--schedule step --step-size 1 --gamma 0.5",
    )
    assert code == 0, err
    epochs = int(out.splitlines()[-1].split()[2])
    assert epochs < 60  # early stopping reached the estimator


def test_the_data_seed_is_separate_from_the_model_seed(tmp_path, capsys):
    model = tmp_path / "m.npz"
    code, out, err = run(
        capsys, f"train --data digits --data-seed 3 --seed 7 --hidden 32 --epochs 5 --device cpu --quiet --save {model}"
    )
    assert code == 0, err
    trained = float(out.split("test_accuracy ")[1].split("%")[0])
    code, out, err = run(capsys, f"evaluate {model} --data digits --data-seed 3 --device cpu")
    assert float(out.split("accuracy ")[1].split("%")[0]) == pytest.approx(trained, abs=0.01)
    code, out2, err = run(capsys, f"evaluate {model} --data digits --device cpu")  # the model's own data seed
    assert code == 0 and out2 == out and "warning" not in err
    code, out, err = run(capsys, f"evaluate {model} --data digits --data-seed 4 --device cpu")  # another split
    assert code == 0 and "with data seed 3, and is evaluated on digits with data seed 4: the scores are not" in err


def test_another_data_seed_on_files_that_fix_the_split_is_no_warning(tmp_path, capsys):
    """A .npz with its own test rows (or an MNIST-layout folder) gives the same rows at any data seed."""
    rng = np.random.default_rng(0)
    data, model = tmp_path / "d.npz", tmp_path / "m.npz"
    X, y = rng.normal(size=(60, 5)).astype(np.float32), rng.integers(0, 3, 60)
    np.savez(data, X_train=X[:40], y_train=y[:40], X_test=X[40:], y_test=y[40:])
    assert run(capsys, f"train --data {data} --hidden 8 --epochs 2 --device cpu --quiet --save {model}")[0] == 0
    code, out, err = run(capsys, f"evaluate {model} --data {data} --device cpu")
    code5, out5, err5 = run(capsys, f"evaluate {model} --data {data} --data-seed 5 --device cpu")
    assert code == code5 == 0 and out5 == out and "warning" not in err5, err5


# ---- the exit-status contract of ARCHITECTURE.md ----


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--hidden", "0"], "hidden widths must be positive"),
        (["train", "--hidden", "abc"], "hidden takes widths separated by commas"),
        (["train", "--epochs", "1.5"], "epochs must be an integer, got '1.5'"),
        (["train", "--seed", "-1"], "seed must be >= 0, got -1"),
        (["train", "--data-seed", "x"], "--data-seed must be an integer"),
        (["train", "--no-such-flag"], "unrecognized arguments: --no-such-flag: see mlp-xp train --help"),
        (["train", "--learning-rate", "0.1"], "unrecognized arguments: --learning-rate 0.1: did you mean --lr?"),
        # (argparse's prefix matching took --epoch for --epochs: flags in full only)
        (["train", "--epoch", "3"], "unrecognized arguments: --epoch 3: did you mean --epochs?"),
        (
            ["predict", "m.npz", "--output", "p.csv", "--inp", "x.csv"],
            "required: --input; --inp is not a flag: did you mean --input?",
        ),
        (["train", "--activation", "relu,tanh", "--hidden", "64"], "2 activations given for 1 hidden layer"),
        (["train", "--save", "/no/such/folder/m.npz"], "the folder /no/such/folder does not exist"),
        (["train", "--save", "/"], "--save / is a folder"),
        (["train", "--plot", "curves.jpg"], "--plot writes a PNG image"),
        (["search", "--param", "lr=0.1", "--cuda-graph", "--device", "cpu"], "cuda_graph needs the CUDA backend"),
        (["search", "--param", "lr=-1"], "learning rate must be > 0, got -1"),
        (["search", "--param", "hidden=64x,32"], "bad hidden layers '64x'"),
        (["search", "--param", "learning_rate=0.1"], "unknown parameter 'learning_rate'"),
        ([], "the following arguments are required: command"),
        (["train", "--data", "mnist", "--activation", "foo"], "unknown activation 'foo'"),
        (["train", "--class-weight", "1:x"], "class_weight takes 'balanced'"),
        (["train", "--monitor", "val_mse"], "monitor 'val_mse' does not fit loss cross_entropy"),
        (["train", "--cuda-graph", "--device", "cpu"], "cuda_graph needs the CUDA backend"),
        (["train", "--l2", "1", "--weight-decay", "1"], "--weight-decay and --l2 are the same setting"),
        (["bench", "--batch-sizes", "32,abc"], "--batch-sizes must be an integer, got 'abc'"),
        (["bench", "--batch-sizes", "0"], "--batch-sizes must be > 0, got 0"),
        (["bench", "--steps", "0"], "--steps must be >= 1, got 0"),
        (["bench", "--dtype", "float16"], "dtype must be 'float32' or 'float64'"),
        (["search", "--param", "lr=0.1", "--n-iter", "0"], "--n-iter must be >= 1, got 0"),
        (["search", "--param", "lr=0.1", "--holdout", "1"], "--holdout must be in (0, 1), got 1.0"),
        (["doctor", "--device", "tpu"], "unknown device 'tpu'"),
        (["train", "--optimizer", "rmsprop"], "unknown optimizer 'rmsprop'"),
        (["train", "--lr", "-1"], "learning rate must be > 0"),
        (["train", "--batch-size", "0"], "batch_size must be > 0"),
        (["train", "--activation", "swish", "--epochs", "1"], "unknown activation 'swish'"),
        (["train", "--schedule", "exp"], "unknown schedule 'exp'"),
        (
            ["train", "--data", "no-such-dataset"],
            "unknown dataset 'no-such-dataset': use one of mnist, fashion-mnist, digits, synthetic, synthetic:NxD[xC], "
            "a .npz file, a folder of MNIST-layout files or a CSV or Parquet table (with --target COLUMN)",
        ),
        (
            ["search", "--data", "no-such-dataset", "--param", "lr=0.1"],
            "or a CSV or Parquet table (with --target COLUMN)",
        ),
        (["train", "--device", "tpu"], "unknown device 'tpu'"),
        (["evaluate", "missing.npz"], "does not exist"),
        (["search", "--data", "digits"], "needs at least one --param"),
        (["search", "--param", "lr=0.1", "--validation", "0"], "--validation must be in (0, 1)"),
        (["search", "--param", "lr=0.1", "--validation", "1.5"], "--validation must be in (0, 1)"),
        (["search", "--param", "lr=0.1", "--loss", "binary_cross_entropy"], "search trains cross_entropy"),
    ],
)
def test_every_bad_input_is_one_line_and_status_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    errors = [line for line in err.splitlines() if line.startswith("mlp-xp: error: ")]
    assert len(errors) == 1 and message in errors[0], err
    # besides it, at most a deprecation warning and the line saying which backend "auto" chose
    assert all(
        line.startswith(("mlp-xp: warning: ", "mlp_xp: using ")) for line in err.splitlines() if line not in errors
    )


def test_mnist_is_not_looked_up_when_a_setting_is_bad(capsys, monkeypatch):
    from mlp_xp.data import download

    looked = []
    monkeypatch.setattr(download, "load_named_images", lambda *a, **k: looked.append(a))
    code, _, err = run(capsys, "train --data mnist --activation foo")
    assert code == 2 and not looked


def test_a_required_gpu_that_is_not_there_is_status_3(capsys):
    from mlp_xp.backend import cuda_status

    if cuda_status()[0]:
        pytest.skip("a GPU is usable here")
    code, out, err = run(capsys, "train --device cuda --epochs 1")
    assert code == 3 and err.count("\n") == 1 and "CUDA backend unavailable" in err


@pytest.mark.parametrize("signal_exception, status", [("KeyboardInterrupt", 130), ("terminated", 143)])
def test_an_interrupted_run_exits_130_and_a_terminated_one_143(capsys, monkeypatch, signal_exception, status):
    import os
    import signal

    from mlp_xp import trainer

    def stop(*args, **kwargs):
        if signal_exception == "KeyboardInterrupt":
            raise KeyboardInterrupt
        os.kill(os.getpid(), signal.SIGTERM)  # the CLI's handler turns it into an exception here

    monkeypatch.setattr(trainer, "fit", stop)
    code, _, err = run(capsys, "train --epochs 1 --device cpu")
    assert code == status and err.splitlines()[-1] in ("mlp-xp: interrupted", "mlp-xp: terminated")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(signal.getsignal(signal.SIGTERM))


def test_the_table_flags_reach_the_run(tmp_path, capsys):
    metrics = tmp_path / "m.json"
    code, out, err = run(
        capsys,
        f"train --data digits --hidden 16 --epochs 30 --device cpu --quiet --early-stopping --monitor val_accuracy "
        f"--min-delta 0.5 --patience 2 --class-weight balanced --eps 1e-7 --optimizer adam --lr 0.01 --on-divergence "
        f"stop --metrics-json {metrics}",
    )
    assert code == 0, err
    # min_delta 0.5 on an accuracy: no epoch counts as improving after the first, so patience 2 stops at 3
    assert len(json.loads(metrics.read_text())) == 3 and "early stopping: val_accuracy" in out


def test_a_renamed_flag_still_works_with_a_warning(capsys):
    code, out, err = run(capsys, "train --data digits --hidden 8 --epochs 1 --device cpu --quiet --weight-decay 0.001")
    assert code == 0 and "mlp-xp: warning: --weight-decay is now --l2" in err


def test_a_reader_that_goes_away_ends_the_command_quietly_with_141():
    """``mlp-xp info | head -1``: the pipe closes before the output is written; no traceback, status 141."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from mlp_xp.cli import main; sys.exit(main(['info']))"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # the reader is gone before the command has printed anything
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and "Traceback" not in err and "BrokenPipe" not in err, err


class _Unwritable:
    """A standard output whose every write fails as ``error`` does: a closed pipe, a full disk."""

    def __init__(self, error: OSError) -> None:
        self.error = error

    def write(self, text):
        raise self.error

    def flush(self):
        raise self.error


@pytest.mark.parametrize(
    "command", ["info", "doctor --device cpu", "train --data digits --hidden 8 --epochs 1", "--version", "train --help"]
)
def test_output_that_cannot_be_written_is_said_once_and_is_not_the_commands_failure(command, capsys, monkeypatch):
    """``> /dev/full``: one line naming the full disk, status 1; ``| head``: status 141 and nothing more. The doctor
    is the case that matters: its checks print, and the loss of their output is not a failing check. argparse's
    --help and --version drop a failed write and exit 0: the loss is still said."""
    import errno
    import sys

    from mlp_xp.cli import main

    for error, status in (
        (OSError(errno.ENOSPC, "No space left on device"), 1),
        (OSError(errno.EBADF, "Bad file descriptor"), 1),  # (`1</dev/null`: no disk to free space on)
        (BrokenPipeError(), 141),
    ):
        monkeypatch.setattr(sys, "stdout", _Unwritable(error))
        code = main([*command.split(), "--device", "cpu"] if command.startswith("train") else command.split())
        monkeypatch.undo()
        err = capsys.readouterr().err
        assert code == status and "FAILED" not in err and "Traceback" not in err, (command, err)
        lost = f"mlp-xp: error: the output could not be written to standard output ({error.strerror})"
        full = error.errno == errno.ENOSPC
        fix = "free space on its disk, or send the output elsewhere" if full else "send the output elsewhere"
        assert err.count(lost) == (status == 1) and (status == 141 or f"{lost}: {fix}" in err), (command, err)
        assert ("free space" in err) == full, (command, err)


@pytest.mark.parametrize(
    "line",
    [
        "bench --device cpu --batch-sizes 32 --steps 2 --plot {tmp}/b.png",
        "train --epochs 1 --plot {tmp}/c.png",
        "search --param lr=0.1 --plot {tmp}/s.png",
    ],
    ids=["bench", "train", "search"],
)
def test_plot_without_matplotlib_is_refused_before_any_work(line, tmp_path, capsys, monkeypatch):
    import sys

    from mlp_xp import backend, bench, data

    def work(*a, **kw):
        raise AssertionError("the work started before --plot was refused")

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    monkeypatch.setattr(data, "load_dataset", work)
    monkeypatch.setattr(backend, "get_backend", work)  # (train probed the device first: a GPU's start is seconds)
    monkeypatch.setattr(bench, "run_bench", work)
    code, _, err = run(capsys, line.format(tmp=tmp_path))
    assert code == 2 and "plotting needs matplotlib: pip install 'matplotlib>=3.5'" in err


@pytest.mark.parametrize("engine, missing", [("dask", "distributed"), ("ray", "ray")])
def test_a_search_engine_that_is_not_installed_is_refused_before_the_data(engine, missing, capsys, monkeypatch):
    import sys

    from mlp_xp import data

    def work(*a, **kw):
        raise AssertionError("the data were loaded before the engine was refused")

    monkeypatch.setitem(sys.modules, missing, None)  # (find_spec then says it is not there)
    monkeypatch.setattr(data, "load_dataset", work)
    code, _, err = run(capsys, f"search --param lr=0.1 --{engine} local:1")
    assert code == 2 and f"--{engine} needs {missing}: pip install" in err


def test_running_out_of_memory_is_one_line_and_status_1(capsys, monkeypatch):
    from mlp_xp import data

    def too_big(*a, **kw):
        raise MemoryError("Unable to allocate 292. GiB for an array with shape (100000000, 784)")

    monkeypatch.setattr(data, "load_dataset", too_big)
    code, _, err = run(capsys, "train --epochs 1")
    assert code == 1 and err.count("\n") == 1 and "out of memory (Unable to allocate 292. GiB" in err
    monkeypatch.setattr(data, "load_dataset", lambda *a, **kw: (_ for _ in ()).throw(MemoryError()))
    code, _, err = run(capsys, "train --epochs 1")
    assert code == 1 and "out of memory (MemoryError): use less data" in err  # (a bare one: its name)


@pytest.mark.parametrize(
    "y, message",
    [
        (
            np.arange(60) % 3 * 1.0,
            "its targets are floats with whole values (0.0, 1.0, 2.0, ...): store class labels as integers",
        ),
        (
            (np.arange(60) % 3).reshape(-1, 1),
            "shape (60, 1), where class labels are one whole number a row, shape (60,)",
        ),
        (np.linspace(0, 1, 60), "its targets are quantities (floats): use --loss mse to predict them"),
        (np.zeros((60, 2)), "its targets have 2 columns: use --loss binary_cross_entropy"),
        (np.zeros(60, np.int64), "its labels hold 1 class: a classifier needs two or more"),
        (np.linspace(0, 1, 60).reshape(-1, 1), "its targets are one column of quantities: use --loss mse"),
    ],
    ids=["whole-floats", "one-column", "quantities", "columns", "one-class", "one-column-of-quantities"],
)
def test_targets_that_are_not_class_labels_say_what_they_are(y, message, tmp_path, capsys):
    path = tmp_path / "d.npz"
    np.savez(path, X_train=np.random.default_rng(0).random((60, 3)), y_train=y)
    code, _, err = run(capsys, f"train --data {path} --epochs 1 --device cpu")
    assert code == 2 and "d has no class labels for cross_entropy: " in err and message in err


def test_a_search_or_evaluation_whose_outputs_cannot_be_written_exits_1(tmp_path, capsys, monkeypatch):
    from mlp_xp import files, search

    def full_disk(*a, **kw):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(search, "write_results", full_disk)
    code, out, err = run(capsys, f"search --data synthetic:300x8 --param lr=0.1 --epochs 1 --results {tmp_path}/r.csv")
    assert code == 1 and "rank" in out and "the results could not be written to" in err
    model = tmp_path / "m.npz"
    assert run(capsys, f"train --data synthetic:300x8 --epochs 1 --quiet --device cpu --save {model}")[0] == 0
    monkeypatch.setattr(files, "atomic_writer", full_disk)
    code, out, err = run(capsys, f"evaluate {model} --data synthetic:300x8 --json {tmp_path}/e.json")
    assert code == 1 and "accuracy" in out and "the report could not be written to" in err and err.count("\n") == 1


def test_a_search_where_no_candidate_trained_exits_1(capsys, monkeypatch):
    from mlp_xp import data

    def work(*a, **kw):
        raise AssertionError("the data were loaded before the candidates were checked")

    with monkeypatch.context() as m:  # a candidate whose monitor does not fit the loss: refused before the data
        m.setattr(data, "load_dataset", work)
        code, _, err = run(capsys, "search --data synthetic:300x8 --loss mse --param monitor=val_accuracy --epochs 1")
        assert code == 2 and "monitor 'val_accuracy' does not fit loss mse: use 'val_loss' or 'val_mse'" in err
    code, out, err = run(capsys, "search --data synthetic:300x8 --param lr=1e6 --epochs 3")  # every one diverges
    assert code == 1 and "diverged" in out and "no candidate trained (each failed or diverged" in err
    code, _, err = run(capsys, "search --data synthetic:300x8 --param lr=0.1 --epochs 1")
    assert code == 0 and "no candidate" not in err


def test_a_huge_loss_is_printed_in_four_digits(capsys):
    from mlp_xp.trainer import _summary_line

    line = _summary_line({"epoch": 1, "train_loss": 4.9768142e19, "lr": 0.1, "seconds": 0.5}, 3)
    assert "train_loss 4.977e+19" in line
    assert "train_loss 0.2500" in _summary_line({"epoch": 1, "train_loss": 0.25, "lr": 0.1, "seconds": 0.5}, 3)


def test_an_output_named_as_another_kind_of_file_is_written_with_a_warning(tmp_path, capsys):
    model, metrics = tmp_path / "m.txt", tmp_path / "m.csv"
    code, _, err = run(
        capsys, f"train --data synthetic:200x8 --epochs 1 --quiet --device cpu --save {model} --metrics-json {metrics}"
    )
    assert code == 0 and model.is_file() and metrics.is_file()
    assert f"warning: --save {model} writes an .npz archive, whatever its name: name it .npz (or .safetensors" in err
    assert f"warning: --metrics-json {metrics} writes JSON, whatever its name: name it .json" in err
    code, _, err = run(capsys, f"train --data synthetic:200x8 --epochs 1 --quiet --device cpu --save {tmp_path}/plain")
    assert code == 0 and "warning" not in err  # (no suffix at all: the user's choice)


def test_outputs_onto_a_pipe_are_refused_before_any_work(tmp_path, capsys):
    """`--save /dev/full` replaced the device by a file, and a FIFO blocked the run at its end."""
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for flag in ("--save", "--metrics-json"):
        code, out, err = run(capsys, f"train --epochs 1 --device cpu {flag} {fifo}")
        assert code == 2 and out == ""
        assert (
            err
            == f"mlp-xp: error: {flag} {fifo} is a named pipe (FIFO), not a file: give the name of a file to write\n"
        )
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")
