"""``index.html``: one report page, viewable offline.

The page shows the report's Markdown tables (``table.md``, ``aggregate.md``) as HTML, every
figure the report wrote (``<img>`` with a relative ``src``: the PNGs stay beside it) with its
caption, and each run directory's settings (``config.json``). It loads nothing from the
network: no scripts, fonts or style sheets but its own inline CSS.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from powmarl.io.run_dir import atomic_write_text
from powmarl.report.runs import Group

#: Figure sections of the page: (directory prefix, heading, caption of each figure).
SECTIONS = (
    ("aggregate/", "Aggregate statistics (figures)", None),
    ("curves/", "Learning curves", "Mean over seeds and 95% Student-t interval band."),
    ("heatmaps/", "Payoff heatmaps", "Payoff R, Q_tot, Q* and Q_r of one seed (red: greedy)."),
)

_STYLE = """
body { font-family: sans-serif; margin: 1.5em auto; max-width: 80em; padding: 0 1em; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: left; }
th { background: #eee; }
figure { display: inline-block; margin: 0.6em; vertical-align: top; max-width: 46em; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #333; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
code { background: #f3f3f3; }
"""


def _inline(text: str) -> str:
    """Escape ``text`` and turn Markdown backticks into <code>."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def markdown_to_html(text: str) -> str:
    """The Markdown the report writes: ``#`` headings, pipe tables, paragraphs."""
    out, table = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            table.append(line)
            continue
        if table:
            rows = [_cells(r) for r in table if not re.fullmatch(r"\|[-|: ]+\|?", r.strip())]
            head = "".join(f"<th>{_inline(c)}</th>" for c in rows[0])
            body = "".join(
                "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in rows[1:]
            )
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            table = []
        heading = re.match(r"(#+)\s+(.*)", line)
        if heading:
            level = min(len(heading.group(1)) + 1, 6)  # the page's own title is <h1>
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
    return "\n".join(out)


def _figures(written: dict[str, Path], captions: dict[str, str]) -> str:
    """A section per figure directory, each PNG with its caption."""
    parts = []
    for prefix, heading, default in SECTIONS:
        names = sorted(n for n in written if n.startswith(prefix) and n.endswith(".png"))
        if not names:
            continue
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        for name in names:
            caption = captions.get(name) or default or ""
            label = Path(name).stem.replace("_", " ")
            parts.append(
                f'<figure><img src="{html.escape(name)}" alt="{html.escape(label)}">'
                f"<figcaption><b>{html.escape(label)}</b>: {_inline(caption)}</figcaption>"
                "</figure>"
            )
    return "\n".join(parts)


def _settings_rows(config: dict[str, Any]) -> list[tuple[str, str]]:
    """The settings shown in the runs table: identity, budget and provenance."""
    flat = {**config.get("config", {}), **config.get("hparams", {})}
    prov = config.get("provenance") or {}
    commit = (prov.get("git") or {}).get("commit")
    return [
        ("algorithm", str(config.get("algo"))),
        ("env", f"{config.get('env_id')} {json.dumps(config.get('env_kwargs') or {})}"),
        ("seeds", ", ".join(str(s) for s in config.get("seeds", []))),
        ("t_max", str(flat.get("t_max", "?"))),
        ("powmarl", prov.get("powmarl") or config.get("versions", {}).get("powmarl") or "unknown"),
        ("commit", commit or "unknown"),
    ]


def _runs(groups: Sequence[Group]) -> str:
    """One table row per run directory, its full config.json folded under it."""
    dirs = sorted({d for g in groups for d in g.dirs.values()})
    parts = ["<h2>Runs and their settings</h2>"]
    for run_dir in dirs:
        try:
            config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            config = {}
        rows = "".join(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
            for k, v in _settings_rows(config)
        )
        parts.append(
            f"<h3><code>{html.escape(str(run_dir))}</code></h3><table>{rows}</table>"
            "<details><summary>config.json</summary><pre>"
            f"{html.escape(json.dumps(config, indent=2, sort_keys=True))}</pre></details>"
        )
    return "\n".join(parts)


def render_page(out: Path, groups: Sequence[Group], written: dict[str, Path],
                captions: dict[str, str]) -> str:  # fmt: skip
    """The page's HTML (see the module docstring)."""
    sections = []
    for name, heading in (("table.md", "Final performance"), ("aggregate.md", None)):
        if name in written and (out / name).is_file():
            if heading:
                sections.append(f"<h2>{heading}</h2>")
            sections.append(markdown_to_html((out / name).read_text(encoding="utf-8")))
    sections += [_figures(written, captions), _runs(groups)]
    files = ", ".join(
        f'<a href="{html.escape(n)}">{html.escape(n)}</a>'
        for n in written
        if not n.endswith(".png")
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>powmarl report</title><style>{_STYLE}</style></head><body>"
        f"<h1>powmarl report</h1><p>Files: {files}</p>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )


def write_page(out: Path, groups: Sequence[Group], written: dict[str, Path],
               captions: dict[str, str] | None = None) -> dict[str, Path]:  # fmt: skip
    """Write ``out/index.html``; {"index.html": path}."""
    path = Path(out) / "index.html"
    atomic_write_text(path, render_page(Path(out), groups, written, captions or {}))
    return {"index.html": path}
