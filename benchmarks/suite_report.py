"""The GPU suite's outputs (benchmarks/gpu_suite.py): suite.json, report.md, the runs.

Measurements are flat dicts whose keys carry their unit (``_s``, ``_bytes``, ``_mib``,
``_per_s``); ``UNITS`` spells them out in suite.json.
"""

from __future__ import annotations

import json
import math
import platform
import shutil
import sys
from pathlib import Path

import suite_markdown

UNITS = {
    "env_steps_per_s_per_seed": "env steps per second per seed (steady state)",
    "env_steps_per_s_total": "env steps per second, all vmapped seeds together",
    "s_per_learner_call_all_seeds": "seconds per rollout iteration with a learner call",
    "init_compile_s / chunk_compile_s": "seconds to compile (and run once, for init) in the "
    "measuring process: a load from the persistent cache when prewarmed",
    "cold_init_compile_s / cold_chunk_compile_s": "seconds of the first (cold) compile, in the "
    "prewarm phase with cold_compile_concurrent_jobs compiles at a time",
    "xla_*_bytes": "bytes, memory_analysis() of the compiled chunk, all seeds together",
    "device_peak_bytes": "bytes, peak_bytes_in_use of jax.devices()[0].memory_stats() "
    "(None where the backend keeps no statistics, e.g. CPU)",
    "buffer_mib_per_seed": "MiB of replay buffer per seed",
    "peak_rss_mib": "MiB, the measuring process's peak resident set",
    "wall_s / share_s / elapsed_s / timed_s": "seconds",
    "cold_program_s": "seconds of the prewarm's one-chunk training run of the preset (cold "
    "compile, init, one chunk)",
    "t_env_per_seed": "env steps each seed had taken at its last evaluation",
    "training env_steps_per_s_per_seed": "mean of the runs' time/env_steps_per_s over every "
    "evaluation period but the first (which holds the compilation)",
    "pow_over_qmix_time_per_env_step": "POW-QMIX's seconds per env step / QMIX's (same "
    "setting); paper 1.15-1.20, target at most 1.2",
}
#: Fields of a measuring process's rows kept in suite.json.
ROW_FIELDS = (
    "env_steps_per_s_per_seed",
    "env_steps_per_s_total",
    "s_per_learner_call_all_seeds",
    "init_compile_s",
    "chunk_compile_s",
    "xla_temp_bytes",
    "xla_argument_bytes",
    "xla_output_bytes",
    "xla_generated_code_bytes",
    "xla_peak_bytes",
    "device_peak_bytes",
    "device_bytes_in_use",
    "device_bytes_limit",
    "buffer_mib_per_seed",
    "peak_rss_mib",
    "timed_chunks",
    "timed_s",
    "num_envs",
    "batch_size",
    "buffer_size",
    "device",
    "backend",
    "device_count",
)
PAPER_OVERHEAD = suite_markdown.PAPER_OVERHEAD
TARGET_RATIO = suite_markdown.TARGET_RATIO


def measurement_entry(result: dict, cold: dict | None, jobs: int) -> dict:
    """One setting's entry: how its process ended, its last row, its cold compile."""
    entry = {
        k: result.get(k)
        for k in (
            "key",
            "label",
            "env",
            "env_args",
            "algo",
            "seeds",
            "overrides",
            "status",
            "note",
            "wall_s",
        )
    }
    rows = result.get("rows") or []
    last = rows[-1] if rows else {}
    entry.update({k: last[k] for k in ROW_FIELDS if k in last})
    if result.get("status") == "timeout" and last.get("stage") == "compiled":
        entry["note"] = f"{entry['note']}; compiled, not timed"
    if cold is not None:
        compiled = (cold.get("rows") or [{}])[-1]
        entry["cold_compile_status"] = cold["status"]
        entry["cold_init_compile_s"] = compiled.get("init_compile_s")
        entry["cold_chunk_compile_s"] = compiled.get("chunk_compile_s")
        entry["cold_compile_concurrent_jobs"] = jobs
    return entry


def cost_ratios(entries: list[dict]) -> list[dict]:
    """POW-QMIX's cost per env step and per learner call relative to QMIX, per setting."""
    rate = "env_steps_per_s_per_seed"
    by = {(e["label"], e["seeds"], e["algo"]): e for e in entries}
    out = []
    for label, seeds in dict.fromkeys((e["label"], e["seeds"]) for e in entries):
        q, p = by.get((label, seeds, "qmix"), {}), by.get((label, seeds, "pow_qmix"), {})
        row = {
            "label": label,
            "seeds": seeds,
            "qmix_" + rate: q.get(rate),
            "pow_qmix_" + rate: p.get(rate),
            "paper_ratio": PAPER_OVERHEAD,
            "target_max_ratio": TARGET_RATIO,
        }
        if q.get(rate) and p.get(rate):
            ratio = q[rate] / p[rate]
            calls = p["s_per_learner_call_all_seeds"] / q["s_per_learner_call_all_seeds"]
            row.update(
                pow_over_qmix_time_per_env_step=ratio,
                pow_over_qmix_time_per_learner_call=calls,
                meets_target=ratio <= TARGET_RATIO,
            )
        else:
            row.update(
                pow_over_qmix_time_per_env_step=None,
                meets_target=None,
                note="a measurement is missing",
            )
        out.append(row)
    return out


def read_rows(path: Path) -> list[dict]:
    """Complete lines of a metrics.jsonl (a line cut off by a kill is skipped)."""
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.endswith("\n") and line.strip()]


def training_entry(result: dict) -> dict:
    """Where a training run got to: each seed's last evaluation, its throughput."""
    rows = read_rows(Path(result["run_dir"]) / "metrics.jsonl")
    keys = ("key", "preset", "seeds", "status", "note", "share_s", "wall_s")
    entry = {k: result.get(k) for k in keys}
    started = next((r for r in result.get("rows") or [] if r.get("stage") == "started"), {})
    entry.update({k: started.get(k) for k in ("algo", "env", "env_args", "overrides")})
    done = (result.get("rows") or [{}])[-1]
    entry["stopped_by"] = done.get("stopped_by", "killed at its share" if rows else None)
    last = {r["seed"]: r for r in rows}
    entry["evaluations_per_seed"] = len(rows) // max(len(last), 1)
    entry["t_env_per_seed"] = {str(s): r["t_env"] for s, r in sorted(last.items())}
    returns = {str(s): r.get("eval/return_mean") for s, r in sorted(last.items())}
    entry["eval_return_mean_per_seed"] = returns
    finite = [v for v in returns.values() if isinstance(v, float) and math.isfinite(v)]
    entry["eval_return_mean"] = sum(finite) / len(finite) if finite else None
    entry["elapsed_s"] = max((r.get("time/elapsed_s", 0.0) for r in rows), default=None)
    # the first chunk's rate holds the compilation: average the chunks after it
    later = [r["time/env_steps_per_s"] for r in rows[len(last) :] if "time/env_steps_per_s" in r]
    entry["env_steps_per_s_per_seed"] = sum(later) / len(later) if later else None
    return entry


def copy_runs(trained: list[dict], out: Path) -> list[Path]:
    """config.json and metrics.jsonl of every run that logged a row, to out/runs/<preset>."""
    copies = []
    for result in trained:
        src = Path(result["run_dir"])
        if not read_rows(src / "metrics.jsonl"):
            continue
        dst = out / "runs" / result["preset"]
        dst.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "metrics.jsonl"):
            shutil.copyfile(src / name, dst / name)
        copies.append(dst)
    return copies


def curves(copies: list[Path], out: Path) -> tuple[list[str], str | None]:
    """powmarl's report of the copied runs into ``out``: (files written, error or None)."""
    if not copies:
        return [], "no training run logged an evaluation"
    from powmarl.report import make_report

    try:
        written = make_report(copies, out)
    except (ImportError, ValueError) as err:
        return [], f"powmarl report failed: {err}"
    return sorted(written), None


def versions() -> dict:
    """Library versions (importing jax does not start a backend)."""
    import jax
    import jaxlib

    import powmarl

    return {
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "powmarl": powmarl.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def device_of(entries: list[dict]) -> dict:
    for e in entries:
        if e.get("device"):
            return {k: e.get(k) for k in ("device", "backend", "device_count")}
    return {"device": None, "backend": None, "device_count": None}


def write_outputs(
    out: Path,
    meta: dict,
    compiled: dict,
    measured: list[dict],
    skipped: list[dict],
    trained: list[dict],
) -> dict:
    """Write suite.json, report.md, the runs' metrics and curves into ``out``."""
    entries = [measurement_entry(r, compiled.get(r["key"]), meta["jobs"]) for r in measured]
    copies = copy_runs(trained, out)
    files, error = curves(copies, out)
    training = [training_entry(r) for r in trained]
    for t in training:
        cold = compiled.get(t["key"])
        if cold is not None:
            t["cold_program_status"] = cold["status"]
            t["cold_program_s"] = cold["wall_s"]  # compile + init + one chunk, one process
    notes = [f"smax 3s_vs_5z not measured: {skipped[0]['note']}"] if skipped else []
    notes += [error] if error else []
    suite = {
        "suite": meta,
        "versions": versions(),
        "device": device_of(entries),
        "units": UNITS,
        "measurements": entries + skipped,
        "pow_over_qmix": cost_ratios(entries),
        "training": training,
        "files": sorted(
            files + [f"runs/{p.name}/{n}" for p in copies for n in ("config.json", "metrics.jsonl")]
        ),
        "notes": notes,
    }
    (out / "suite.json").write_text(json.dumps(suite, indent=1) + "\n")
    (out / "report.md").write_text(suite_markdown.report_markdown(suite))
    return suite
