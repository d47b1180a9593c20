"""training/metrics.py: TensorBoard scalars through tensorboardX, without TensorFlow."""

import pathlib
import struct
import subprocess
import sys

import numpy as np
from tensorboardX.proto import event_pb2

from training import metrics

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _scalars(workdir: pathlib.Path) -> list[tuple[int, str, float]]:
    """(step, tag, value) of every scalar in the one events file, read from its TFRecord framing
    (uint64 length, uint32 CRC, the Event proto, uint32 CRC)."""
    (events,) = (workdir / metrics.TENSORBOARD_DIR).glob("events.out.tfevents.*")
    data, position, found = events.read_bytes(), 0, []
    while position < len(data):
        (length,) = struct.unpack_from("<Q", data, position)
        event = event_pb2.Event.FromString(data[position + 12 : position + 12 + length])
        position += 12 + length + 4
        found += [(event.step, value.tag, value.simple_value) for value in event.summary.value]
    return found


def test_tensorboard_events_hold_every_numeric_metric_at_its_step(tmp_path):
    writers = metrics.writers(tmp_path, True)
    assert [type(w) for w in writers] == [metrics.JsonlWriter, metrics.TensorBoardWriter]
    for writer in writers:
        writer.write(2, {"loss": 1.5, "alpha": 4.0, "tokens": 12, "note": "x", "snapped": True})
        writer.write(4, {"loss": 0.25, "dev_wer": float("nan")})
    writers[1].write(6, {"alpha": np.float32(8.0), "steps": np.int64(3), "flag": np.bool_(True)})
    got = _scalars(tmp_path)
    assert got[:3] == [(2, "loss", 1.5), (2, "alpha", 4.0), (2, "tokens", 12.0)]
    assert got[3] == (4, "loss", 0.25) and got[4][:2] == (4, "dev_wer") and np.isnan(got[4][2])
    assert got[5:] == [(6, "alpha", 8.0), (6, "steps", 3.0)]
    assert metrics.read(tmp_path) == [
        {"step": 2, "loss": 1.5, "alpha": 4.0, "tokens": 12, "note": "x", "snapped": True},
        {"step": 4, "loss": 0.25, "dev_wer": None}]


def test_without_tensorboard_only_the_jsonl_writer_is_made(tmp_path):
    assert [type(w) for w in metrics.writers(tmp_path, False)] == [metrics.JsonlWriter]
    assert not (tmp_path / metrics.TENSORBOARD_DIR).exists()


def test_writing_tensorboard_scalars_never_imports_tensorflow(tmp_path):
    code = ("import sys; from training import metrics; "
            f"[w.write(1, {{'loss': 1.0}}) for w in metrics.writers({str(tmp_path)!r}, True)]; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    assert _scalars(tmp_path) == [(1, "loss", 1.0)]


def test_run_clock_is_the_last_record_s_wall_time_and_resumes(tmp_path):
    assert metrics.run_clock(tmp_path) == (0.0, 0)
    writer = metrics.JsonlWriter(tmp_path)
    writer.write(2, {"loss": 1.0, "wall_s": 10.5, "resumes": 0})
    writer.write(4, {"loss": 0.5, "wall_s": 30.0, "resumes": 1})
    writer.write(5, {"note": "a record without a clock"})
    assert metrics.run_clock(tmp_path) == (30.0, 1)


def test_the_progress_command_prints_each_evaluation_with_its_clock(tmp_path):
    writer = metrics.JsonlWriter(tmp_path)
    writer.write(50, {"loss": 40.0, "wall_s": 360.0, "resumes": 0})
    writer.write(100, {"loss": 20.5, "wall_s": 7200.0, "resumes": 1, "dev_wer": 0.5781})
    root = pathlib.Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "scripts" / "progress.py"), str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[2].split() == ["100", "2.00", "1", "20.50", "57.81"] and len(out.splitlines()) == 3
