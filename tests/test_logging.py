"""Optional logging backends: TensorBoard event files and offline W&B runs, read back."""

from __future__ import annotations

import json
import struct
import sys
import time
from pathlib import Path

import pytest

from powmarl.io.logging import (
    MissingBackendError,
    TensorBoardLogger,
    WandbLogger,
    make_loggers,
    member_name,
    scalars,
)


def eval_rows(t_env: int, seeds=(0, 1)) -> list[dict]:
    """One evaluation's rows as the training loop writes them."""
    return [
        {
            "seed": s,
            "t_env": t_env + s,
            "eval/return_mean": 10.0 * s + t_env / 100,
            "train/loss": float("nan") if t_env == 0 else 0.5,
            "episodes": 3,
            "variant": "",
        }
        for s in seeds
    ]


def test_scalars_and_member_names():
    row = {"seed": 2, "t_env": 5, "variant": "", "a": 1, "b": 0.5, "flag": True, "c": None}
    assert scalars(row) == {"a": 1.0, "b": 0.5}
    assert member_name(row) == "seed2"
    assert member_name({**row, "variant": "lr=0.1 C=1"}) == "lr=0.1_C=1/seed2"


# --- TensorBoard ----------------------------------------------------------------------------


def read_tfrecords(path: Path) -> list[bytes]:
    """The payloads of a TFRecord file (length, crc, data, crc per record)."""
    data, out, pos = path.read_bytes(), [], 0
    while pos < len(data):
        (length,) = struct.unpack("<Q", data[pos : pos + 8])
        out.append(data[pos + 12 : pos + 12 + length])
        pos += 12 + length + 4
    return out


def read_scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] from every event file in ``logdir``."""
    from tensorboardX.proto.event_pb2 import Event

    found: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        for payload in read_tfrecords(path):
            event = Event.FromString(payload)
            for value in event.summary.value:
                found.setdefault(value.tag, []).append((event.step, value.simple_value))
    return found


def test_tensorboard_one_run_per_seed(tmp_path):
    pytest.importorskip("tensorboardX", reason="needs the 'tensorboard' extra")
    with TensorBoardLogger(tmp_path) as logger:
        logger.write(eval_rows(0))
        logger.write(eval_rows(100))
    assert sorted(p.name for p in (tmp_path / "tensorboard").iterdir()) == ["seed0", "seed1"]
    seed1 = read_scalars(tmp_path / "tensorboard" / "seed1")
    assert seed1["eval/return_mean"] == [(1, 10.0), (101, 11.0)]
    assert seed1["episodes"] == [(1, 3.0), (101, 3.0)]
    assert "seed" not in seed1 and "t_env" not in seed1 and "variant" not in seed1
    assert read_scalars(tmp_path / "tensorboard" / "seed0")["eval/return_mean"][1] == (100, 1.0)


def test_tensorboard_resume_purges_relogged_steps(tmp_path):
    """On resume each seed's new event file starts with a purge marker at the first step
    logged again, so TensorBoard hides the old events from there (no doubled curves)."""
    pytest.importorskip("tensorboardX", reason="needs the 'tensorboard' extra")
    from tensorboardX.proto.event_pb2 import Event

    from powmarl.api import _purge_steps
    from powmarl.runners.members import Member

    kept = [{"seed": 0, "t_env": 10}, {"seed": 0, "t_env": 20}, {"seed": 1, "t_env": 10}]
    members = [Member(0), Member(1), Member(2, {"lr": 0.1})]
    assert _purge_steps(members, kept) == {"seed0": 21, "seed1": 11, "lr=0.1/seed2": 0}
    with TensorBoardLogger(tmp_path) as logger:
        logger.write(eval_rows(0))
    time.sleep(1.1)  # event files are named by the second they were opened in
    with TensorBoardLogger(tmp_path, purge_steps={"seed0": 1, "seed1": 0}) as logger:
        logger.write(eval_rows(0))
    for seed, step in ((0, 1), (1, 0)):
        files = sorted((tmp_path / "tensorboard" / f"seed{seed}").glob("events.out.tfevents.*"))
        assert len(files) == 2
        first = [Event.FromString(x) for x in read_tfrecords(files[0])]
        second = [Event.FromString(x) for x in read_tfrecords(files[1])]
        assert not [e for e in first if e.HasField("session_log")]
        marker = [e for e in second if e.HasField("session_log")]
        assert [(e.step, e.session_log.status) for e in marker] == [(step, 1)]  # 1 = START


# --- W&B ------------------------------------------------------------------------------------


def read_wandb_records(path: Path) -> list:
    """Records of a ``run-*.wandb`` transaction log (7-byte header, then LevelDB-style
    32 KiB blocks of chunks: crc32, length uint16, type 1 full / 2 first / 3 middle / 4 last)."""
    from wandb.proto import wandb_internal_pb2

    data, records, pending = path.read_bytes(), [], b""
    assert data[:4] == b":W&B"
    pos, block = 7, 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer too short for a header: padding
            pos += block - pos % block
            continue
        length, kind = struct.unpack("<HB", data[pos + 4 : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 0 and length == 0:
            continue
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            records.append(wandb_internal_pb2.Record.FromString(pending))
    return records


def wandb_history(run_dir: Path) -> dict[str, list[tuple[int, object]]]:
    """Per offline run (by run name): [(step, {key: value})] of its history records."""
    out = {}
    for path in sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb")):
        name, config, history = None, {}, []
        for record in read_wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                name = record.run.display_name
                config = {i.key: json.loads(i.value_json) for i in record.run.config.update}
            elif kind == "history":
                items = {
                    i.key or "/".join(i.nested_key): json.loads(i.value_json)
                    for i in record.history.item
                }
                history.append((record.history.step.num, items))
        out[name] = (config, history)
    return out


def test_wandb_offline_one_run_per_seed(tmp_path):
    pytest.importorskip("wandb", reason="needs the 'wandb' extra")
    config = {"algo": "qmix", "hparams": {"lr": 0.001}}
    (logger,) = make_loggers(["wandb"], tmp_path / "myrun", config)
    logger.write(eval_rows(0))
    logger.write(eval_rows(100))
    logger.close()
    runs = wandb_history(tmp_path / "myrun")
    assert sorted(runs) == ["myrun-seed0", "myrun-seed1"]
    config1, history1 = runs["myrun-seed1"]
    assert config1["seed"] == 1 and config1["hparams"] == {"lr": 0.001}
    steps = {step: items for step, items in history1}
    assert steps[101]["eval/return_mean"] == 11.0 and steps[101]["train/loss"] == 0.5
    assert steps[1]["eval/return_mean"] == 10.0
    assert all("seed" not in items and "variant" not in items for items in steps.values())


def test_wandb_bad_mode(tmp_path):
    with pytest.raises(ValueError, match=r"--wandb-mode: must be one of offline, online"):
        WandbLogger(tmp_path, mode="cloud")
    with pytest.raises(ValueError, match=r"--wandb-mode"):
        make_loggers(["wandb"], tmp_path, mode="cloud")


# --- make_loggers ---------------------------------------------------------------------------


def test_unknown_backend_and_missing_run_dir(tmp_path):
    with pytest.raises(ValueError, match=r"unknown backend 'mlflow'; allowed: tensorboard, wandb"):
        make_loggers(["tensorboard", "mlflow"], tmp_path)
    with pytest.raises(ValueError, match="need a run directory"):
        make_loggers(["tensorboard"], None)
    assert make_loggers([], None) == []
    assert not (tmp_path / "tensorboard").exists()  # nothing created before the check


def test_make_loggers_builds_in_order(tmp_path):
    pytest.importorskip("tensorboardX", reason="needs the 'tensorboard' extra")
    loggers = make_loggers("tensorboard", tmp_path)  # a single name is accepted too
    assert [type(x) for x in loggers] == [TensorBoardLogger]
    for logger in loggers:
        logger.close()


@pytest.mark.parametrize(
    "backend, module, extra",
    [("tensorboard", "tensorboardX", "tensorboard"), ("wandb", "wandb", "wandb")],
)
def test_missing_package_message(tmp_path, monkeypatch, backend, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    message = f"logging: --{backend} needs {module}; install with pip install 'powmarl[{extra}]'"
    with pytest.raises(MissingBackendError) as err:
        make_loggers([backend], tmp_path)
    assert str(err.value) == message and isinstance(err.value, ImportError)
