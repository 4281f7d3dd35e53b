"""report.md of the GPU suite (benchmarks/gpu_suite.py): suite.json as markdown tables."""

from __future__ import annotations

PAPER_OVERHEAD = "1.15-1.20"  # POW-QMIX's time per step over QMIX's, as the paper reports
TARGET_RATIO = 1.2


def num(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.1f}" if abs(x) >= 10 else f"{x:.3g}"


def gib(x) -> str:
    """Bytes as GiB, or MiB below 1 GiB."""
    if x is None:
        return "-"
    return f"{x / 2**30:.2f} GiB" if x >= 2**30 else f"{x / 2**20:.1f} MiB"


def field(name: str, fmt=num):
    return lambda item: fmt(item.get(name))


def pair(first: str, second: str):
    """'a + b s' of two fields (e.g. init and chunk compile seconds)."""

    def show(item) -> str:
        a, b = item.get(first), item.get(second)
        return "-" if a is None and b is None else f"{num(a)} + {num(b)} s"

    return show


def status(item) -> str:
    return item["status"] + (f" ({item['note']})" if item.get("note") else "")


def joined(name: str):
    return lambda item: ", ".join(num(v) for v in item[name].values()) or "-"


def table(columns, items) -> list[str]:
    """A markdown table: ``columns`` are (header, item -> cell text)."""
    lines = ["| " + " | ".join(h for h, _ in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(show(i)) for _, show in columns) + " |" for i in items]
    return lines


MEASUREMENTS = (
    ("task", field("label", str)),
    ("algo", field("algo", str)),
    ("seeds", field("seeds", str)),
    ("status", status),
    ("env steps/s per seed", field("env_steps_per_s_per_seed")),
    ("all seeds", field("env_steps_per_s_total")),
    ("s per learner call (all seeds)", field("s_per_learner_call_all_seeds")),
    ("compile init + chunk, cold", pair("cold_init_compile_s", "cold_chunk_compile_s")),
    ("init + chunk in the run", pair("init_compile_s", "chunk_compile_s")),
    ("XLA temp", field("xla_temp_bytes", gib)),
    ("device peak", field("device_peak_bytes", gib)),
)
RATIOS = (
    ("task", field("label", str)),
    ("seeds", field("seeds", str)),
    ("QMIX env steps/s per seed", field("qmix_env_steps_per_s_per_seed")),
    ("POW-QMIX", field("pow_qmix_env_steps_per_s_per_seed")),
    ("POW / QMIX time per env step", field("pow_over_qmix_time_per_env_step")),
    ("per learner call", field("pow_over_qmix_time_per_learner_call")),
    (f"at most {TARGET_RATIO}", lambda r: {True: "yes", False: "no"}.get(r["meets_target"], "-")),
)
TRAINING = (
    ("preset", field("preset", str)),
    ("seeds", lambda t: ", ".join(map(str, t["seeds"]))),
    ("status", status),
    ("stopped by", lambda t: t["stopped_by"] or "-"),
    ("env steps reached per seed", joined("t_env_per_seed")),
    ("eval return, mean", field("eval_return_mean")),
    ("per seed", joined("eval_return_mean_per_seed")),
    ("env steps/s per seed", field("env_steps_per_s_per_seed")),
    ("wall s", field("wall_s")),
)


def _heading(suite: dict) -> list[str]:
    meta, dev, ver = suite["suite"], suite["device"], suite["versions"]
    tiny = " (--tiny)" if meta["tiny"] else ""
    where = (
        f"Device: {dev['device']} (backend {dev['backend']}, {dev['device_count']} device(s));"
        f" jax {ver['jax']}, jaxlib {ver['jaxlib']}, powmarl {ver['powmarl']}; started"
        f" {meta['started']}; {meta['wall_s']:.0f} s of a {meta['budget_s']:.0f} s budget{tiny}."
    )
    lines = ["# powmarl GPU suite", "", where]
    if dev["backend"] is None:
        lines += ["", "**No measurement ran** (see the statuses below)."]
    elif dev["backend"] != "gpu":
        lines += ["", f"**Not a GPU run**: every number below was measured on {dev['backend']}."]
    return lines


def report_markdown(suite: dict) -> str:
    """report.md: the measurements, the POW/QMIX cost ratios and where training got."""
    meta = suite["suite"]
    compiles = (
        f"Cold compiles ran {meta['jobs']} at a time (prewarm phase); 'in the run' is the"
        " measuring process's own, a load from the compilation cache after the prewarm"
        " (tracing and lowering included)."
        if meta["prewarm"]
        else "No prewarm: 'in the run' is a cold compile, one at a time."
    )
    pngs = [f for f in suite["files"] if f.endswith(".png")]
    lines = _heading(suite)
    lines += ["", "## Whole-training throughput, compile time, memory", ""]
    lines += table(MEASUREMENTS, suite["measurements"]) + ["", compiles, ""]
    lines += [f"## POW-QMIX's cost relative to QMIX (paper: {PAPER_OVERHEAD})", ""]
    lines += table(RATIOS, suite["pow_over_qmix"])
    lines += ["", "## Training, last evaluation", ""]
    lines += table(TRAINING, suite["training"])
    lines += ["", "Curves: " + (", ".join(pngs) or "none") + "; table: table.md", ""]
    if suite["notes"]:
        lines += ["## Notes", ""] + [f"- {n}" for n in suite["notes"]] + [""]
    return "\n".join(lines)
