"""docs/extending.md runs as written (issue 11).

Each ```python block of the page that follows a ``<!-- test: NAME -->`` comment is executed
here, in a fresh namespace named ``__main__`` with the working directory in ``tmp_path``;
a block marked ``<!-- test: NAME file=MODULE.py -->`` is written to ``tmp_path/MODULE.py``
first (on ``sys.path``, which spawned host-env workers inherit) and imported by the
example's script. What the script prints must equal the page's ``<!-- output: NAME -->``
block, and the outcomes and error messages the text claims are checked against the
objects the example built. The registries the examples add to are restored afterwards.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest

import powmarl
from powmarl import algos, settings
from powmarl.envs import contract, registry
from powmarl.io import logging as _builtin_sinks  # noqa: F401 - registered before a snapshot
from powmarl.io import sinks
from powmarl.io.run_dir import read_metrics

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
TEXT = DOC.read_text()
#: ``<!-- test: NAME [file=F] -->`` or ``<!-- output: NAME -->``, then one fenced block.
BLOCK = re.compile(
    r"<!-- (test|output): ([\w-]+)(?: file=([\w.]+))? -->\n```(\w+)\n(.*?)\n```", re.DOTALL
)


@dataclasses.dataclass
class Example:
    """One example of the page: modules to write, the script to run, what it prints."""

    files: dict[str, str] = dataclasses.field(default_factory=dict)
    script: str | None = None
    output: list[str] | None = None


def examples() -> dict[str, Example]:
    out: dict[str, Example] = {}
    for kind, name, file, _lang, code in BLOCK.findall(TEXT):
        example = out.setdefault(name, Example())
        if kind == "output":
            example.output = code.splitlines()
        elif file:
            example.files[file] = code + "\n"
        else:
            example.script = code + "\n"
    return out


def doc_says(message: str) -> str:
    """``message`` as a regex, after checking that the page quotes it word for word
    (the text may wrap it over lines)."""
    assert message in " ".join(TEXT.split()), f"docs/extending.md does not say {message!r}"
    return re.escape(message)


@pytest.fixture
def run_example(tmp_path, monkeypatch, capsys):
    """``run(name) -> namespace``: the example executed as the page shows it, its printed
    lines compared with the page's output block."""
    saved = (dict(algos._REGISTRY), dict(registry._REGISTRY), dict(registry._DESCRIPTIONS),
             dict(sinks.SINKS))  # fmt: skip
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))

    def run(name: str) -> dict:
        example = examples()[name]
        for file, code in example.files.items():
            (tmp_path / file).write_text(code)
        namespace = {"__name__": "__main__"}
        exec(compile(example.script, f"{DOC}:{name}", "exec"), namespace)  # noqa: S102
        printed = capsys.readouterr()
        assert printed.out.splitlines() == example.output, printed.err[-2000:]
        namespace["stderr"] = printed.err
        return namespace

    yield run
    for example in examples().values():
        for file in example.files:
            sys.modules.pop(Path(file).stem, None)
    for live, old in zip((algos._REGISTRY, registry._REGISTRY, registry._DESCRIPTIONS,
                          sinks.SINKS), saved):  # fmt: skip
        live.clear()
        live.update(old)


def test_every_python_block_is_run_and_every_example_prints_what_the_page_shows():
    found = examples()
    assert sorted(found) == ["algorithm", "host-env", "jax-env", "sink"]
    assert TEXT.count("```python") == sum(len(e.files) + 1 for e in found.values())
    for name, example in found.items():
        assert example.script is not None and example.output, name
    assert set(examples()["host-env"].files) == {"signal_game.py"}
    assert set(examples()["sink"].files) == {"csv_sink.py"}


def test_algorithm_with_its_own_hyperparameter(run_example, tmp_path, capsys):
    from powmarl.cli import main

    ns = run_example("algorithm")
    result = ns["result"]
    assert "hysteretic_qmix" in algos.registered()
    assert [m.hparams for m in result.members] == [{"beta": 0.1}, {"beta": 1.0}]
    record = json.loads((tmp_path / "runs/hysteretic/config.json").read_text())
    assert record["algo"] == "hysteretic_qmix" and record["hparam_grid"] == {"beta": [0.1, 1.0]}
    rows = read_metrics(tmp_path / "runs/hysteretic")
    assert {(r["variant"], r["hp/beta"]) for r in rows} == {("beta=0.1", 0.1), ("beta=1", 1.0)}
    assert all(r["t_env"] <= 400 for r in rows) and max(r["t_env"] for r in rows) == 400
    learned = [r for r in rows if r["train/learner_calls"] > 0]
    assert learned and all(r["train/weight_mean"] == 1.0 for r in learned if r["hp/beta"] == 1)
    assert main(["list"]) == 0  # the page: `powmarl list` shows beta under [hysteretic_qmix]
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.strip().startswith("beta "))
    assert "[hysteretic_qmix]" in line and "in [0.0, 1.0]" in line
    _algorithm_errors(ns["make_hysteretic_qmix"])


def _algorithm_errors(make) -> None:
    """The messages the page's table quotes, from the example's algorithm."""
    from powmarl.config import Declared, HParams

    algo, env = make(), powmarl.envs.make("matrix_pow")
    with pytest.raises(ValueError, match=doc_says("algorithm 'hysteretic_qmix' is already")):
        algos.register("hysteretic_qmix", make)
    with pytest.raises(ValueError, match=doc_says("'alpha' is already a setting (a Config/")):
        dataclasses.replace(algo, hparams=(Declared("alpha", 0.1, "clash"),))
    with pytest.raises(ValueError, match=doc_says("beta: a traced hyperparameter needs a")):
        Declared("beta", "x", "a string")
    with pytest.raises(ValueError, match=doc_says("hysteretic_qmix: defaults name 'gama'")):
        dataclasses.replace(algo, defaults={"gama": 0.9})
    with pytest.raises(ValueError, match=doc_says("beta: must be in [0.0, 1.0], got 2.0")):
        powmarl.train(algo, env, hparam_grid={"beta": [0.5, 2.0]}, progress=False)
    with pytest.raises(ValueError, match=doc_says("hparam_grid: batch_size is a static")):
        powmarl.train(algo, env, hparam_grid={"batch_size": [8, 16]}, progress=False)
    with pytest.raises(ValueError, match=doc_says("unknown hyperparameter 'bta'; allowed:")):
        settings.resolve(algo, env, {"bta": 0.2})
    with pytest.raises(ValueError, match=doc_says("algo: unknown 'hysteretic'; allowed:")):
        algos.make("hysteretic")
    with pytest.raises(AttributeError, match=doc_says("HParams has no setting 'bta'")):
        _ = HParams().bta
    assert float(settings.resolve(algo, env, {"beta": "0.25"}).hp.beta) == 0.25


def test_jax_environment(run_example, tmp_path):
    ns = run_example("jax-env")
    env, result = ns["env"], ns["result"]
    powmarl.envs.check(env)
    assert "rendezvous" in powmarl.envs.registered() and result.backend.kind == "jax"
    assert [m.seed for m in result.members] == [0, 1] and min(result.t_env) >= 400
    record = json.loads((tmp_path / "runs/rendezvous/config.json").read_text())
    assert (record["env_id"], record["env_kwargs"]) == ("rendezvous", {"size": 5})
    assert record["settings"]["sources"]["epsilon_anneal_time"] == "env"
    assert record["hparams"]["epsilon_anneal_time"] == 400
    met = [r["eval/met_mean"] for r in result.metrics]
    assert all(0.0 <= m <= 1.0 for m in met)
    _env_errors(ns["Rendezvous"])


def _env_errors(cls) -> None:
    from powmarl.types import EnvSpec

    with pytest.raises(
        ValueError,
        match=doc_says("env rendezvous: unknown argument 'width'; allowed: size, episode_limit"),
    ):
        powmarl.envs.make("rendezvous", width=3)
    with pytest.raises(ValueError, match=doc_says("env id 'rendezvous' is already registered")):
        powmarl.envs.register("rendezvous", cls)
    flag = cls()
    flag.obs_last_action = 1
    with pytest.raises(ValueError, match=doc_says("env Rendezvous: obs_last_action must be a")):
        contract.checked(flag)
    narrow = cls()
    narrow.spec = EnvSpec(2, 3, obs_dim=9, state_dim=10, episode_limit=6)
    with pytest.raises(
        powmarl.envs.ConformanceError,
        match=doc_says("episode 0 reset: obs has shape (2, 10), spec says (2, 9)"),
    ):
        powmarl.envs.check(narrow)


@pytest.fixture
def spy_workers(monkeypatch):
    """The (copies, workers) of every WorkerVectorEnv the host backend starts."""
    from powmarl.runners import host_workers

    started = []

    class Spy(host_workers.WorkerVectorEnv):
        def __init__(self, factory, num_copies, num_workers, obs_dtype=None):
            started.append((num_copies, num_workers))
            super().__init__(factory, num_copies, num_workers, obs_dtype)

    monkeypatch.setattr(host_workers, "WorkerVectorEnv", Spy)
    return started


def test_host_environment_in_two_worker_processes(run_example, spy_workers):
    ns = run_example("host-env")
    env, result = ns["env"], ns["result"]
    assert spy_workers == [(16, 2)]  # 2 seeds x num_envs 8 copies, in 2 spawned workers
    assert "cannot be copied" not in ns["stderr"]
    assert type(pickle.loads(pickle.dumps(env))).__module__ == "signal_game"
    assert [m.seed for m in result.members] == [0, 1] and min(result.t_env) >= 400
    assert all(r["eval/correct_mean"] == r["eval/return_mean"] for r in result.metrics)
    _host_errors(type(env))


def _host_errors(cls) -> None:
    listed = cls()
    listed.info_keys = ["correct"]
    with pytest.raises(ValueError, match=doc_says("env SignalGame: info_keys must be a tuple")):
        contract.checked(listed)
    with pytest.raises(ValueError, match=doc_says("num_workers: must be >= 1, got 0")):
        powmarl.train("vdn", cls(), num_workers=0, progress=False)


def test_a_registered_host_env_builds_in_a_fresh_worker(run_example, tmp_path):
    """What the page states: the copy factory of a host env that ``make`` built from a
    user's id is the registered factory itself, which a fresh process (one that imports
    only what the pickle names, as a spawned worker does) can call without knowing the id."""
    del run_example  # used for its clean-up: registries, sys.path, sys.modules
    (tmp_path / "signal_game.py").write_text(examples()["host-env"].files["signal_game.py"])
    from signal_game import SignalGame

    powmarl.envs.register("signal_game", SignalGame)
    factory = contract.copy_factory(powmarl.envs.make("signal_game"))
    worker = "import pickle, sys; print(type(pickle.loads(sys.stdin.buffer.read())()).__name__)"
    done = subprocess.run(
        [sys.executable, "-c", worker], input=pickle.dumps(factory), cwd=tmp_path,
        capture_output=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().strip() == "SignalGame"


def test_csv_sink(run_example, tmp_path):
    ns = run_example("sink")
    run_dir = tmp_path / "runs/csv_demo"
    jsonl = read_metrics(run_dir)
    rows = ns["rows"]
    assert "csv" in sinks.SINKS and len(rows) == len(jsonl) == 4
    assert list(rows[0]) == list(jsonl[0])  # the columns are the metrics rows' keys
    for line, row in zip(rows, jsonl):
        assert float(line["eval/return_mean"]) == row["eval/return_mean"]
    text = (run_dir / "metrics.csv").read_text().splitlines()
    assert text[0].startswith("seed,") and ",t_env," in text[0] and len(text) == 5
    with pytest.raises(ValueError, match=doc_says("sink: 'csv' is already registered")):
        sinks.register(sinks.SINKS["csv"])
    with pytest.raises(ValueError, match=doc_says("loggers: unknown backend 'cvs'; allowed: csv")):
        sinks.make_sinks(["cvs"], run_dir)
    with pytest.raises(ValueError, match=doc_says("loggers: TensorBoard and W&B logging need")):
        powmarl.train("qmix", "matrix_pow", loggers=["csv"], progress=False)
