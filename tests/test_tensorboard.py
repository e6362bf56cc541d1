"""Run logging to TensorBoard (issue 14, item 3): ``mlp-xp train --tensorboard DIR`` and the fit callback."""

import json
import struct

import numpy as np
import pytest

import mlp_xp

from .test_cli import run

pytest.importorskip("tensorboardX")


def _events(folder):
    """(tag, step, value or text) of every summary in the event files of ``folder`` (the TFRecord framing:
    length, its CRC, the Event proto, its CRC)."""
    from tensorboardX.proto import event_pb2

    out = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        i = 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i : i + 8])
            event = event_pb2.Event.FromString(data[i + 12 : i + 12 + n])
            i += 12 + n + 4
            for v in event.summary.value:
                value = v.simple_value if v.HasField("simple_value") else v.tensor.string_val[0].decode()
                out.append((v.tag, event.step, value))
    return out


def test_train_logs_every_epochs_metrics_and_the_settings(tmp_path, capsys):
    code, _, err = run(capsys, f"train --epochs 3 --hidden 8 --device cpu --quiet --tensorboard {tmp_path / 'tb'}")
    assert code == 0, err
    events = _events(tmp_path / "tb")
    losses = [(step, value) for tag, step, value in events if tag == "train_loss"]
    assert [s for s, _ in losses] == [1, 2, 3] and all(np.isfinite(v) for _, v in losses)
    assert {"train_accuracy", "test_loss", "test_accuracy", "lr", "seconds"} <= {t for t, _, _ in events}
    settings = next(v for t, _, v in events if t.startswith("settings"))
    assert json.loads(settings)["epochs"] == 3


def test_the_logger_is_a_fit_callback_with_the_records_values(tmp_path):
    from mlp_xp.tensorboard import TensorBoardLogger

    rng = np.random.default_rng(0)
    X, y = rng.random((100, 5)), rng.integers(0, 2, 100)
    m = mlp_xp.MLP([5, 4, 2], device="cpu", seed=0)
    with TensorBoardLogger(tmp_path / "tb") as log:
        h = mlp_xp.fit(m, X, y, epochs=2, callbacks=[log])
    logged = {(t, s): v for t, s, v in _events(tmp_path / "tb")}
    for r in h.records:
        assert logged["train_loss", r["epoch"]] == pytest.approx(r["train_loss"], rel=1e-6)


def test_a_bad_log_folder_is_refused_before_the_data(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    code, _, err = run(capsys, f"train --device cpu --tensorboard {afile}")
    assert code == 2 and "is a file, not a folder" in err and err.count("\n") == 1
