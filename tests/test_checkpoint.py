"""Nothing lost: checkpoints and exact resume (also after kill -9), interrupts that keep the work, and outputs that
never make what is on disk worse. Interrupts are driven at chosen steps through the trainer's step hook, not
with sleeps."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import mlp_xp
from mlp_xp import trainer
from mlp_xp.cli import main
from mlp_xp.errors import TrainingInterrupted

ROOT = Path(__file__).resolve().parent.parent

#: Each optimizer with a cosine schedule and early stopping on (patience large enough to run every epoch).
RUNS = {
    "momentum": dict(optimizer="momentum", schedule="cosine", early_stopping=True, patience=10),
    "nesterov": dict(optimizer="nesterov", schedule="cosine", early_stopping=True, patience=10, l2=1e-3),
    "adam": dict(optimizer="adam", lr=0.01, schedule="cosine", early_stopping=True, patience=10),
}


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.random((300, 12)).astype(np.float32)
    return X, (X[:, 0] + X[:, 1] > 1).astype(int) + (X[:, 2] > 0.7)


#: Whether the tests run as root (to whom os.access says yes everywhere).
ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0


def _fit(data, checkpoint=None, resume=False, hook=None, epochs=4, **kw):
    X, y = data
    m = mlp_xp.MLP([12, 16, 3], device="cpu", seed=0)
    settings = {"epochs": epochs, "batch_size": 32, "lr": 0.05, "validation_fraction": 0.2, **kw}
    trainer._step_hook = hook
    try:
        h = mlp_xp.fit(m, X, y, checkpoint=checkpoint, resume=resume, **settings)
    finally:
        trainer._step_hook = None
    return m, h


class _Crash(Exception):
    pass


def _crash_at(step):
    def hook(k):
        if k == step:
            raise _Crash

    return hook


@pytest.mark.parametrize("name", RUNS)
@pytest.mark.parametrize("crash_at", [5, 17, 24])  # inside epoch 1, inside epoch 3, the last step of epoch 3
def test_a_crashed_run_resumes_to_the_same_model_bit_for_bit(data, tmp_path, name, crash_at):
    ref, ref_h = _fit(data, **RUNS[name])
    with pytest.raises(_Crash):
        _fit(data, tmp_path / "ck", hook=_crash_at(crash_at), **RUNS[name])
    if crash_at < 8:  # no epoch had ended: nothing to resume from
        assert not (tmp_path / "ck" / "checkpoint.npz").exists()
        return
    m, h = _fit(data, tmp_path / "ck", resume=True, **RUNS[name])
    np.testing.assert_array_equal(m.get_flat(), ref.get_flat())
    assert [r["train_loss"] for r in h.records] == [r["train_loss"] for r in ref_h.records]
    assert h.best_epoch == ref_h.best_epoch


@pytest.mark.parametrize("name", RUNS)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_stops_at_a_step_boundary_checkpoints_and_resumes_exactly(data, tmp_path, name, sig):
    ref, _ = _fit(data, **RUNS[name])
    with pytest.raises(TrainingInterrupted) as info:
        _fit(data, tmp_path / "ck", hook=lambda k: signal.raise_signal(sig) if k == 11 else None, **RUNS[name])
    e = info.value
    assert e.signum == sig and e.where == "in epoch 2" and len(e.history) == 1
    assert e.checkpoint == tmp_path / "ck" / "checkpoint.npz" and e.checkpoint.is_file()
    m, _ = _fit(data, tmp_path / "ck", resume=True, **RUNS[name])  # from step 4 of epoch 2
    np.testing.assert_array_equal(m.get_flat(), ref.get_flat())


def test_an_interrupted_model_holds_the_last_finished_epochs_weights(data):
    X, y = data
    one, _ = _fit(data, epochs=1)
    m = mlp_xp.MLP([12, 16, 3], device="cpu", seed=0)
    trainer._step_hook = lambda k: signal.raise_signal(signal.SIGINT) if k == 10 else None
    try:
        with pytest.raises(TrainingInterrupted):
            mlp_xp.fit(m, X, y, epochs=3, batch_size=32, lr=0.05, validation_fraction=0.2)
    finally:
        trainer._step_hook = None
    np.testing.assert_array_equal(m.get_flat(), one.get_flat())


def test_a_second_signal_stops_at_once(data):
    def twice(k):
        if k == 3:
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt) as info:
        _fit(data, hook=twice)
    assert not isinstance(info.value, TrainingInterrupted)  # not the orderly stop: at once
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # and the handler is put back


def test_a_resume_with_other_data_or_math_is_refused_and_epochs_may_change(data, tmp_path, capsys):
    X, y = data
    _fit(data, tmp_path / "ck", epochs=2)
    with pytest.raises(mlp_xp.ConfigError, match="the training features, validation features differ from those"):
        _fit((X + 1, y), tmp_path / "ck", resume=True, epochs=2)
    with pytest.raises(mlp_xp.ConfigError, match=r"settings that change the math differ .*lr: 0.05 -> 0.1"):
        _fit(data, tmp_path / "ck", resume=True, epochs=2, lr=0.1)
    with pytest.raises(mlp_xp.ConfigError, match="resume needs the checkpoint folder"):
        _fit(data, None, resume=True)
    longer, h = _fit(data, tmp_path / "ck", resume=True, epochs=3)
    assert len(h) == 3 and "epochs: 2 -> 3" in capsys.readouterr().err
    ref, _ = _fit(data, epochs=3)  # a constant schedule: extending is the same as having asked for 3
    np.testing.assert_array_equal(longer.get_flat(), ref.get_flat())


def test_a_resume_with_another_architecture_is_refused(data, tmp_path):
    X, y = data
    _fit(data, tmp_path / "ck", epochs=1)
    other = mlp_xp.MLP([12, 8, 3], device="cpu", seed=0)
    with pytest.raises(mlp_xp.ConfigError, match=r"the model differs .*sizes"):
        mlp_xp.fit(
            other,
            X,
            y,
            epochs=1,
            batch_size=32,
            lr=0.05,
            validation_fraction=0.2,
            checkpoint=tmp_path / "ck",
            resume=True,
        )


def test_checkpoints_are_plain_arrays_and_json(data, tmp_path):
    _fit(data, tmp_path / "ck", epochs=2, **RUNS["adam"])
    with np.load(tmp_path / "ck" / "checkpoint.npz", allow_pickle=False) as z:  # no pickles anywhere
        names = set(z.files)
    assert {"params", "m", "v", "guard", "sums", "best", "metadata"} <= names


# ---- the command line ----
def _cli(capsys, line, hook=None):
    trainer._step_hook = hook
    try:
        code = main(line.split())
    finally:
        trainer._step_hook = None
    out, err = capsys.readouterr()
    return code, out, err


def test_ctrl_c_and_sigterm_in_train_write_the_work_and_say_where(tmp_path, capsys):
    model, metrics = tmp_path / "m.npz", tmp_path / "m.json"
    for sig, status, word in ((signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")):
        ck = tmp_path / f"ck{sig}"
        line = f"train --epochs 4 --hidden 16 --device cpu --save {model} --checkpoint {ck} --metrics-json {metrics}"
        code, _, err = _cli(capsys, line, lambda k, sig=sig: signal.raise_signal(sig) if k == 15 else None)
        last = err.strip().splitlines()[-1]
        assert code == status, err
        assert last == (
            f"mlp-xp: {word} in epoch 2: wrote the model of epoch 1 to {model}; a checkpoint to {ck}/checkpoint.npz "
            "(go on with --resume)"
        )
        assert model.is_file() and metrics.is_file()
    code, out, err = _cli(capsys, line + " --resume")
    assert code == 0 and "resuming from" in err and out.startswith("done: 4 epochs")
    code, _, _ = _cli(capsys, line.replace(str(model), str(tmp_path / "ref.npz")).replace(f"--checkpoint {ck}", ""))
    assert model.read_bytes() == (tmp_path / "ref.npz").read_bytes()


def test_an_interrupt_before_any_epoch_leaves_an_existing_model_alone(tmp_path, capsys):
    model = tmp_path / "good.npz"
    _cli(capsys, f"train --epochs 1 --hidden 16 --device cpu --save {model}")
    good = model.read_bytes()
    code, _, err = _cli(
        capsys,
        f"train --epochs 3 --hidden 16 --device cpu --save {model}",
        lambda k: signal.raise_signal(signal.SIGINT) if k == 2 else None,
    )
    assert code == 130 and model.read_bytes() == good
    assert (
        err.strip().splitlines()[-1]
        == f"mlp-xp: interrupted in epoch 1; kept {model} as it was (no epoch had finished)"
    )


def test_a_diverged_run_never_replaces_a_model_with_untrained_weights(tmp_path, capsys):
    model = tmp_path / "good.npz"
    _cli(capsys, f"train --epochs 2 --hidden 16 --device cpu --save {model}")
    good = model.read_bytes()
    code, _, err = _cli(capsys, f"train --epochs 2 --device cpu --lr 1e6 --save {model}")
    assert code == 1 and model.read_bytes() == good
    assert f"no epoch finished before the divergence: {model} was left as it was" in err


def test_metrics_and_plot_are_written_when_the_model_cannot_be(tmp_path, capsys, monkeypatch):
    def full_disk(self, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mlp_xp.MLP, "save", full_disk)
    model, metrics, plot = tmp_path / "m.npz", tmp_path / "m.json", tmp_path / "p.png"
    code, _, err = _cli(
        capsys, f"train --epochs 1 --hidden 16 --device cpu --save {model} --metrics-json {metrics} --plot {plot}"
    )
    assert code == 1 and metrics.is_file() and plot.is_file() and not model.exists()
    assert f"the model could not be written to {model} (No space left on device)" in err


def test_a_run_whose_metrics_or_plot_cannot_be_written_fails(tmp_path, capsys, monkeypatch):
    """The model is written, the metrics are not: exit 1, as when the model cannot be (a run that exits 0 has
    written everything it was asked to)."""
    from mlp_xp.trainer import History

    def full_disk(self, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(History, "to_json", full_disk)
    model, metrics, plot = tmp_path / "m.npz", tmp_path / "m.json", tmp_path / "p.png"
    code, _, err = _cli(
        capsys, f"train --epochs 1 --hidden 16 --device cpu --save {model} --metrics-json {metrics} --plot {plot}"
    )
    assert code == 1 and model.is_file() and plot.is_file() and not metrics.exists()
    assert f"the metrics could not be written to {metrics} (No space left on device)" in err


def test_checkpoint_and_resume_flags_are_checked_before_the_data(tmp_path, capsys, monkeypatch):
    from mlp_xp import data as data_module

    def no_loading(*a, **kw):
        raise AssertionError("the data were loaded before a bad setting was refused")

    monkeypatch.setattr(data_module, "load_dataset", no_loading)
    (tmp_path / "file").write_text("x")
    for line, message in (
        (f"train --checkpoint {tmp_path / 'file'}", "is a file, not a folder"),
        (f"train --checkpoint {tmp_path / 'new'} --resume", "there is no checkpoint in"),
        ("train --resume", "--resume needs --checkpoint DIR"),
        ("train --checkpoint-every 0", "checkpoint_every must be"),
    ):
        code, _, err = _cli(capsys, line)
        assert code == 2 and message in err, (line, err)


def test_the_done_line_reports_the_restored_best_epoch(capsys):
    code, out, err = _cli(
        capsys,
        "train --epochs 30 --hidden 8 --device cpu --lr 0.5 --early-stopping --patience 2 --validation-fraction 0.2",
    )
    assert code == 0 and "early stopping" in out
    best = int(re.search(r"restored epoch (\d+)", out).group(1))
    epochs = {int(m.group(1)): m.group(2) for m in re.finditer(r"epoch +(\d+)/30 .*test_accuracy (\S+)%", err)}
    assert max(epochs) > best  # it stopped after the best epoch
    assert f"test_accuracy {epochs[best]}%" in out  # the done line reports the weights the model holds


# ---- kill -9 at a chosen step, in a subprocess ----
_KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from mlp_xp import trainer
    from mlp_xp.cli import main
    kill_at = int(sys.argv[1])
    if kill_at:
        trainer._step_hook = lambda k: os.kill(os.getpid(), signal.SIGKILL) if k == kill_at else None
    sys.exit(main(sys.argv[2:]))
    """
)


@pytest.mark.parametrize("optimizer", ["momentum", "nesterov", "adam"])
@pytest.mark.parametrize("kill_at", [17, 40])
def test_kill_9_at_any_step_then_resume_gives_the_same_model_file(tmp_path, optimizer, kill_at):
    script = tmp_path / "run.py"
    script.write_text(_KILL_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    common = (
        f"train --data synthetic:600x20x3 --epochs 5 --hidden 16 --device cpu --optimizer {optimizer} "
        "--schedule cosine --early-stopping --patience 10 --validation-fraction 0.2 --batch-size 32 --quiet"
    ).split()

    def run(kill, *extra):
        return subprocess.run(
            [sys.executable, str(script), str(kill), *common, *extra],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    ref = run(0, "--save", str(tmp_path / "ref.npz"))
    assert ref.returncode == 0, ref.stderr
    # at every step boundary: 0.6 ns, less than any step (a replayed step of this model takes some 15 us)
    ck = ["--checkpoint", str(tmp_path / "ck"), "--checkpoint-minutes", "1e-11"]
    killed = run(kill_at, "--save", str(tmp_path / "m.npz"), *ck)
    assert killed.returncode == -signal.SIGKILL
    resumed = run(0, "--save", str(tmp_path / "m.npz"), *ck, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"at epoch {1 + (kill_at - 1) // 15}, step" in resumed.stderr  # 15 steps an epoch: a step boundary
    assert (tmp_path / "m.npz").read_bytes() == (tmp_path / "ref.npz").read_bytes()


def test_an_interrupted_search_prints_the_table_of_the_finished_candidates(capsys):
    # digits, 10 epochs of 12 steps: the signal during the third candidate's first epoch
    code, out, err = _cli(
        capsys,
        "search --data digits --hidden 16 --epochs 10 --device cpu --param lr=0.01,0.05,0.1,0.2",
        lambda k: signal.raise_signal(signal.SIGINT) if k == 3 else None,
    )
    assert code == 130
    assert err.strip().splitlines()[-1] == "mlp-xp: interrupted after 0 of 4 candidates (the table holds those)"
    state = {"steps": 0}

    def third(k):
        state["steps"] += 1
        if state["steps"] == 2 * 10 * 9 + 5:  # 9 steps an epoch on the 80% split: inside the third candidate
            signal.raise_signal(signal.SIGTERM)

    code, out, err = _cli(
        capsys, "search --data digits --hidden 16 --epochs 10 --device cpu --param lr=0.01,0.05,0.1,0.2", third
    )
    assert code == 143, err
    assert err.strip().splitlines()[-1] == "mlp-xp: terminated after 2 of 4 candidates (the table holds those)"
    table = [line for line in out.splitlines() if "lr=" in line]
    assert len(table) == 2 and {"lr=0.01", "lr=0.05"} == {
        c for line in table for c in line.split() if c.startswith("lr=")
    }


def test_estimator_fits_checkpoint_to_folders_of_their_own_and_resume_from_them(tmp_path, data):
    from sklearn.model_selection import GridSearchCV

    from mlp_xp.estimator import MLPClassifier

    X, y = data
    grid = GridSearchCV(
        MLPClassifier(hidden=(8,), epochs=3, batch_size=32, checkpoint=str(tmp_path / "ck")),
        {"lr": [0.01, 0.1]},
        cv=2,
    ).fit(X, y)
    folders = sorted(p.name for p in (tmp_path / "ck").iterdir())
    assert len(folders) == 2 * 2 + 1  # 2 candidates x 2 folds, and the refit on all the data: none shared
    assert all((tmp_path / "ck" / f / "checkpoint.npz").is_file() for f in folders)
    # a crashed fit resumes from its own folder and ends where an uninterrupted one does
    ref = MLPClassifier(hidden=(8,), epochs=4, batch_size=32).fit(X, y)
    clf = MLPClassifier(hidden=(8,), epochs=4, batch_size=32, checkpoint=str(tmp_path / "ck2"), resume=True)
    with pytest.raises(_Crash):
        trainer._step_hook = _crash_at(25)
        try:
            clf.fit(X, y)
        finally:
            trainer._step_hook = None
    clf.fit(X, y)
    np.testing.assert_array_equal(clf.model_.get_flat(), ref.model_.get_flat())
    assert grid.best_params_["lr"] in (0.01, 0.1)


def test_model_files_record_what_they_were_trained_on_and_evaluate_warns_on_other_data(tmp_path, capsys):
    model, ck = tmp_path / "m.npz", tmp_path / "ck"
    code, _, _ = _cli(
        capsys, f"train --epochs 1 --hidden 8 --device cpu --data-seed 3 --save {model} --checkpoint {ck}"
    )
    assert code == 0
    loaded = mlp_xp.MLP.load(model, device="cpu")
    assert loaded.trained_on["dataset"] == "digits" and loaded.trained_on["data_seed"] == 3
    assert loaded.trained_on["settings"]["lr"] == 0.05 and loaded.trained_on["mlp_xp"] == mlp_xp.__version__
    assert str(tmp_path) not in model.read_bytes().decode("latin-1")  # no path (the checkpoint folder's) in it
    code, _, err = _cli(capsys, f"evaluate {model} --device cpu --data-seed 0")
    assert code == 0
    assert (
        "warning: the model was trained on digits with data seed 3, and is evaluated on digits with data seed 0" in err
    )
    code, _, err = _cli(capsys, f"evaluate {model} --device cpu")  # the model's own data and data seed
    assert code == 0 and "warning" not in err


def test_a_signal_at_an_epochs_end_keeps_that_epochs_weights(data):
    two, _ = _fit(data, epochs=2)

    def at_the_end_of_epoch_2(k):  # 8 steps an epoch (240 rows of 32): the last step of epoch 2
        if k == 16:
            signal.raise_signal(signal.SIGINT)

    X, y = data
    m = mlp_xp.MLP([12, 16, 3], device="cpu", seed=0)
    trainer._step_hook = at_the_end_of_epoch_2
    try:
        with pytest.raises(TrainingInterrupted) as info:
            mlp_xp.fit(m, X, y, epochs=4, batch_size=32, lr=0.05, validation_fraction=0.2)
    finally:
        trainer._step_hook = None
    assert info.value.where == "after epoch 2" and len(info.value.history) == 2
    np.testing.assert_array_equal(m.get_flat(), two.get_flat())


# ---- what a new user tried ----
def test_output_paths_that_cannot_work_are_refused_before_the_data(tmp_path, capsys, monkeypatch):
    from mlp_xp import data as data_module

    def no_loading(*a, **kw):
        raise AssertionError("the data were loaded before a bad path was refused")

    monkeypatch.setattr(data_module, "load_dataset", no_loading)
    afile = tmp_path / "afile"
    afile.write_text("x")
    (tmp_path / "ckx").mkdir()
    (tmp_path / "ck").mkdir()
    (tmp_path / "ckx" / "checkpoint.npz").write_bytes(b"PK")
    for line, message in (
        (f"train --checkpoint {afile}/ck", f"{afile} is a file, not a folder"),
        (f"train --save {afile}/m.npz", f"{afile} is a file, not a folder"),
        (f"train --save {tmp_path}/m.npz/", "ends in a slash, as a folder does: give a file name, without it"),
        (f"train --save {tmp_path}/x.npz --metrics-json {tmp_path}/x.npz", "is the file --save writes too"),
        (
            f"train --save {tmp_path}/ck/checkpoint.npz --checkpoint {tmp_path}/ck",
            "is the file --checkpoint writes too",
        ),
        # (two bytes are no checkpoint: what a real one gets is in the test of files no run can go on from)
        (f"train --checkpoint {tmp_path}/ckx", "holds checkpoint.npz, which cannot be resumed (not a readable"),
        # /proc: writable to os.access for root, whom the probe stops; for anyone else, os.access says no first
        ("train --checkpoint /proc/ck", "cannot make a folder in /proc" if ROOT_USER else "/proc is not writable"),
        ("train --metrics-json /proc/m.json", "no file can be written in /proc" if ROOT_USER else "is not writable"),
        ("train --save /proc/m.npz", "no file can be written in /proc" if ROOT_USER else "is not writable"),
    ):
        code, _, err = _cli(capsys, line)
        assert code == 2 and err.count("mlp-xp: error") == 1 and message in err, (line, err)
    assert main(["train", "--save", ""]) == 2 and "--save is empty" in capsys.readouterr().err


def test_a_resume_that_would_change_the_math_is_refused_before_the_data(tmp_path, capsys, monkeypatch):
    ck = tmp_path / "ck"
    assert _cli(capsys, f"train --epochs 2 --hidden 8 --device cpu --checkpoint {ck}")[0] == 0
    code, _, err = _cli(capsys, f"train --epochs 2 --hidden 8 --device cpu --checkpoint {ck} --resume --data-seed 5")
    assert code == 2 and "(data_seed: 0 -> 5)" in err
    from mlp_xp import data as data_module

    monkeypatch.setattr(data_module, "load_dataset", lambda *a, **kw: pytest.fail("the data were loaded"))
    for extra, message in (
        ("--epochs 2 --hidden 8 --lr 0.1", "lr: 0.05 -> 0.1"),
        ("--epochs 2 --hidden 16", "the model differs from the checkpoint's (hidden: [8] -> [16])"),
        ("--epochs 1 --hidden 8", "has done 2 epochs, more than --epochs 1: give --epochs 2 or more"),
    ):
        code, _, err = _cli(capsys, f"train --device cpu --checkpoint {ck} --resume {extra}")
        assert code == 2 and message in err, (extra, err)


def test_a_file_no_run_can_go_on_from_is_said_so_with_and_without_resume(tmp_path, capsys):
    """A damaged checkpoint (or another file under its name) must not send the user from --resume ("start again
    without it") to "another run's checkpoint, go on with --resume" and back: both say what the file is and the way
    out, and neither touches it. A run's own checkpoint is still sent to --resume."""
    good = tmp_path / "good"
    assert _cli(capsys, f"train --device cpu --epochs 1 --hidden 8 --quiet --checkpoint {good}")[0] == 0
    code, _, err = _cli(capsys, f"train --device cpu --epochs 2 --hidden 8 --checkpoint {good}")
    said = "holds the checkpoint of another run, which a new run would replace: go on from it with --resume"
    assert code == 2 and said in err, err
    cut = (good / "checkpoint.npz").read_bytes()[:3000]
    files = {
        "damaged": (cut, "not a readable checkpoint: it cannot be read (BadZipFile"),
        "empty": (b"", "not a readable checkpoint: it is empty (0 bytes)"),
        "text": (b"hi\n", "not a readable checkpoint: it is a text file (it begins 'hi')"),
        "array": (None, "not an mlp_xp checkpoint: it holds one array, not an archive"),
        "listed": (None, "not an mlp_xp checkpoint"),  # (its metadata JSON, but a list)
        "model": (None, "not an mlp_xp checkpoint"),
    }
    for name, (content, what) in files.items():
        folder = tmp_path / name
        folder.mkdir()
        path = folder / "checkpoint.npz"
        if name == "array":
            np.save(folder / "a.npy", np.zeros(3))
            (folder / "a.npy").rename(path)
        elif name == "listed":
            with open(path, "wb") as f:
                np.savez(f, metadata=np.frombuffer(b"[1]", np.uint8))
        elif name == "model":
            assert _cli(capsys, f"train --device cpu --epochs 1 --hidden 8 --quiet --save {path}")[0] == 0
        else:
            path.write_bytes(content)
        before = path.read_bytes()
        code, _, err = _cli(capsys, f"train --device cpu --epochs 2 --hidden 8 --checkpoint {folder}")
        assert code == 2 and f"holds checkpoint.npz, which cannot be resumed ({what}" in err, (name, err)
        assert "delete it, or give another folder" in err and "--resume" not in err, (name, err)
        code, _, err = _cli(capsys, f"train --device cpu --epochs 2 --hidden 8 --checkpoint {folder} --resume")
        assert code == 2 and f"checkpoint.npz is {what}" in err, (name, err)
        assert "so no run can go on from it: delete it, or give another --checkpoint folder" in err, (name, err)
        assert path.read_bytes() == before


def test_a_checkpoint_of_another_format_version_is_not_called_damaged(tmp_path, capsys):
    from mlp_xp.serialization import save_arrays

    folder = tmp_path / "v2"
    folder.mkdir()
    save_arrays(folder / "checkpoint.npz", {}, {"x": np.zeros(2)}, fmt="mlp_xp.checkpoint", version=2, durable=False)
    code, _, err = _cli(capsys, f"train --device cpu --epochs 2 --hidden 8 --checkpoint {folder}")
    said = "holds checkpoint.npz, a checkpoint of format version 2, which this mlp_xp cannot resume and a new run "
    assert code == 2 and said + "would replace: resume it with the mlp_xp that wrote it, or give another folder" in err
    assert "delete" not in err, err


def test_a_reader_that_goes_away_does_not_cost_the_files(tmp_path, capsys, monkeypatch):
    class GoneReader:
        def write(self, text):
            raise BrokenPipeError

        def flush(self):
            raise BrokenPipeError

    model, metrics = tmp_path / "m.npz", tmp_path / "m.json"
    monkeypatch.setattr(sys, "stdout", GoneReader())
    code = main(f"train --epochs 1 --hidden 8 --device cpu --quiet --save {model} --metrics-json {metrics}".split())
    assert code == 141 and model.is_file() and metrics.is_file()


def test_evaluate_scores_on_the_data_the_model_was_trained_on_by_default(tmp_path, capsys):
    model = tmp_path / "s.npz"
    assert (
        _cli(
            capsys, f"train --data synthetic:600x10x3 --data-seed 4 --epochs 1 --hidden 8 --device cpu --save {model}"
        )[0]
        == 0
    )
    code, out, err = _cli(capsys, f"evaluate {model} --device cpu")
    assert code == 0 and out.startswith("synthetic:600x10x3 test") and "warning" not in err
    npz = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    np.savez(npz, X_train=rng.random((40, 5)).astype(np.float32), y_train=np.arange(40) % 2)
    other = tmp_path / "o.npz"
    assert _cli(capsys, f"train --data {npz} --epochs 1 --hidden 8 --device cpu --save {other}")[0] == 0
    code, _, err = _cli(capsys, f"evaluate {other} --device cpu")
    assert code == 2 and "a folder or file and not a named dataset: give it with --data" in err


def test_a_checkpoint_made_on_the_cpu_resumes_on_the_cuda_backend(data, tmp_path, host_kernels):
    """Checkpoints are host arrays: a run goes on on another device (bit-identity is not promised there, but
    this one agrees to rounding, and the step's state arrived whole)."""
    from .conftest import cuda_host_backend

    X, y = data
    settings = {"epochs": 3, "batch_size": 32, "lr": 0.05, "validation_fraction": 0.2, "optimizer": "adam"}
    ref = mlp_xp.MLP([12, 16, 3], device="cpu", seed=0)
    mlp_xp.fit(ref, X, y, **settings)
    with pytest.raises(_Crash):
        _fit(
            data, tmp_path / "ck", hook=_crash_at(20), **{k: v for k, v in settings.items() if k != "epochs"}, epochs=3
        )
    m = mlp_xp.MLP([12, 16, 3], device=cuda_host_backend(host_kernels), seed=0)
    h = mlp_xp.fit(m, X, y, checkpoint=tmp_path / "ck", resume=True, **settings)
    assert len(h) == 3
    np.testing.assert_allclose(m.get_flat(), ref.get_flat(), rtol=1e-4, atol=1e-5)


# ---- what a second reading found ----
def test_a_resume_inside_an_epoch_needs_that_epoch(data, tmp_path):
    with pytest.raises(TrainingInterrupted):
        _fit(data, tmp_path / "ck", epochs=4, hook=lambda k: signal.raise_signal(signal.SIGINT) if k == 27 else None)
    with pytest.raises(
        mlp_xp.ConfigError, match="done 3 epochs and part of epoch 4, more than epochs=3: give epochs=4"
    ):
        _fit(data, tmp_path / "ck", resume=True, epochs=3)


def test_a_signal_during_the_final_checkpoint_does_not_cost_the_run(data, tmp_path, monkeypatch):
    from mlp_xp import checkpoint

    real = checkpoint.write

    def signalled(folder, meta, arrays, *, durable):
        if durable:
            signal.raise_signal(signal.SIGINT)  # the handlers are still there: it only sets the flag
        return real(folder, meta, arrays, durable=durable)

    monkeypatch.setattr(checkpoint, "write", signalled)
    m, h = _fit(data, tmp_path / "ck", epochs=3, early_stopping=True, patience=10)
    meta, _ = checkpoint.read(tmp_path / "ck")
    assert len(h) == 3 and meta["next_epoch"] == 4 and len(meta["history"]["records"]) == 3


def test_a_search_interrupted_between_fits_keeps_its_table(capsys, monkeypatch):
    from mlp_xp.estimator import MLPClassifier

    real, calls = MLPClassifier.score, []

    def score(self, X, y):
        calls.append(1)
        if len(calls) == 2:
            signal.raise_signal(signal.SIGTERM)  # the CLI turns it into its own exception, between fits
        return real(self, X, y)

    monkeypatch.setattr(MLPClassifier, "score", score)
    code, out, err = _cli(capsys, "search --data digits --hidden 8 --epochs 2 --device cpu --param lr=0.01,0.05,0.1")
    assert code == 143 and err.strip().splitlines()[-1].startswith("mlp-xp: terminated after 1 of 3 candidates")
    assert sum("lr=" in line for line in out.splitlines()) == 1


def test_divergence_with_early_stopping_leaves_the_best_epochs_weights(data):
    X, y = data
    kw = dict(
        epochs=8,
        batch_size=32,
        validation_fraction=0.2,
        optimizer="sgd",
        schedule="step",
        step_size=1,
        gamma=1e6,
        lr=0.05,
        early_stopping=True,
        patience=8,
    )
    m = mlp_xp.MLP([12, 16, 3], device="cpu", seed=0)
    with pytest.raises(mlp_xp.DivergenceError) as info:
        mlp_xp.fit(m, X, y, **kw)
    best = info.value.history.best
    kept = mlp_xp.MLP([12, 16, 3], device="cpu", seed=0)
    mlp_xp.fit(kept, X, y, **{**kw, "epochs": best["epoch"], "early_stopping": False, "validation_fraction": 0.2})
    np.testing.assert_array_equal(m.get_flat(), kept.get_flat())


def test_resuming_a_diverged_run_says_so(data, tmp_path, capsys):
    kw = dict(lr=1e20, optimizer="sgd")
    _, h = _fit(data, tmp_path / "ck", epochs=3, on_divergence="stop", **kw)
    assert h.stop_reason.startswith("diverged")
    with pytest.raises(mlp_xp.DivergenceError):
        _fit(data, tmp_path / "ck", resume=True, epochs=3, **kw)
    assert "the checkpoint's run had already ended: diverged" in capsys.readouterr().err


def test_an_estimator_refit_with_a_checkpoint_and_numpy_class_weight_keys(data, tmp_path):
    from mlp_xp.estimator import MLPClassifier

    X, y = data
    clf = MLPClassifier(hidden=(8,), epochs=2, checkpoint=str(tmp_path / "ck"), class_weight={np.int64(0): 2.0})
    first = clf.fit(X, y).model_.get_flat()
    np.testing.assert_array_equal(clf.fit(X, y).model_.get_flat(), first)  # a refit starts over, as asked


def test_an_ignored_sigint_stays_ignored(data):
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _, h = _fit(data, epochs=2, hook=lambda k: signal.raise_signal(signal.SIGINT) if k == 3 else None)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert len(h) == 2 and h.stop_reason == "completed"


def test_fits_refusals_name_pythons_keywords_and_the_clis_its_flags(data, tmp_path, capsys):
    """Found by a new user: mlp_xp.fit's checkpoint refusals told a Python caller to give --epochs or --resume."""
    ck = tmp_path / "ck"
    _fit(data, ck, epochs=2)
    refusals = [
        ({"epochs": 1, "resume": True}, "resume=True: the checkpoint's run has done 2 epochs, more than epochs=1: give "
         "epochs=2 or more"),
        ({}, f"checkpoint={str(ck)!r} holds the checkpoint of another run, which a new run would replace: go on from "
         "it with resume=True, or give another folder (or delete it)"),
        ({"lr": 0.1, "resume": True}, "resume with the same settings (only epochs, checkpoint_every, "
         "checkpoint_minutes, on_divergence, cuda_graph, verbose, the output paths and the device may change)"),
    ]  # fmt: skip
    for kw, message in refusals:
        with pytest.raises(mlp_xp.ConfigError) as e:
            _fit(data, ck, **{"epochs": 2, **kw})
        assert message in str(e.value), str(e.value)
    with pytest.raises(mlp_xp.ConfigError) as e:
        _fit(data, tmp_path / "none", resume=True)
    assert str(e.value) == (
        f"resume=True: there is no checkpoint in {tmp_path / 'none'} (checkpoint.npz): start the run with "
        f"resume=False and checkpoint={str(tmp_path / 'none')!r}"
    )
    (tmp_path / "afile").write_text("")
    with pytest.raises(mlp_xp.ConfigError) as e:  # (the setting spelled as everywhere else in Python)
        _fit(data, tmp_path / "afile")
    assert str(e.value) == (
        f"checkpoint={str(tmp_path / 'afile')!r} is a file, not a folder: give a folder for the checkpoint"
    )
    from mlp_xp.cli import main

    assert main(f"train --epochs 1 --hidden 8 --device cpu --checkpoint {tmp_path / 'none'} --resume".split()) == 2
    assert capsys.readouterr().err == (
        f"mlp-xp: error: --resume: there is no checkpoint in {tmp_path / 'none'} (checkpoint.npz): start the run "
        f"without --resume, with --checkpoint {tmp_path / 'none'}\n"
    )
    assert main(f"train --epochs 1 --hidden 8 --device cpu --checkpoint {tmp_path / 'cli'}".split()) == 0
    assert main(f"train --epochs 2 --hidden 8 --device cpu --checkpoint {tmp_path / 'cli'}".split()) == 2
    assert "holds the checkpoint of another run, which a new run would replace: go on from it with --resume" in (
        capsys.readouterr().err
    )
