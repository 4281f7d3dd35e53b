"""The report page (powmarl.report.page): index.html shows every table, figure and run's
settings, loads nothing from the network, and every image loads in a real headless browser
(Debian's chromium; the browser test skips where none is installed)."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from powmarl.report import make_report

pytest.importorskip("matplotlib", reason="the page test draws figures (powmarl[report])")

HAS_RLIABLE = importlib.util.find_spec("rliable") is not None


def _write_run(path: Path, algo: str, finals: list[float], tables: bool) -> Path:
    path.mkdir(parents=True)
    payoff = [[8.0, -12.0], [-12.0, 0.0]]
    config = {"algo": algo, "env_id": "matrix", "env_kwargs": {"payoff": payoff},
              "seeds": list(range(len(finals))), "config": {"t_max": 400}}  # fmt: skip
    (path / "config.json").write_text(json.dumps(config))
    rows = [
        {"seed": s, "t_env": 100 * k, "eval/return_mean": v * k / 4}
        for s, v in enumerate(finals)
        for k in range(5)
    ]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if tables:
        table = {"q_tot": [[8.0, 1.0], [1.0, 0.5]], "greedy_actions": [0, 0]}
        (path / "tables.json").write_text(json.dumps({"0": table}))
    return path


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A report with curves, a heatmap, aggregate figures (when rliable is installed)."""
    root = tmp_path_factory.mktemp("page")
    dirs = [
        _write_run(root / "runs" / "pow_qmix", "pow_qmix", [8.0, 8.0, 7.0], tables=True),
        _write_run(root / "runs" / "qmix <b>", "qmix", [7.0, 6.0, 7.0], tables=False),
    ]
    aggregate = None
    if HAS_RLIABLE:
        from powmarl.report.aggregate import Options

        aggregate = Options(reps=50)
    written = make_report(dirs, root / "report", aggregate=aggregate)
    return root / "report", written, dirs


class _Refs(HTMLParser):
    """Tags and every src/href of a page."""

    def __init__(self):
        super().__init__()
        self.tags, self.refs, self.images = set(), [], []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        attrs = dict(attrs)
        self.refs += [attrs[k] for k in ("src", "href") if k in attrs]
        if tag == "img":
            self.images.append(attrs["src"])


def test_page_shows_everything_and_is_offline(report):
    out, _, dirs = report
    page = (out / "index.html").read_text(encoding="utf-8")
    refs = _Refs()
    refs.feed(page)
    assert not {"script", "link", "iframe"} & refs.tags
    assert not [r for r in refs.refs if re.match(r"[a-z]+:", r)]  # relative paths only
    assert all((out / r).is_file() for r in refs.refs)
    pngs = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert sorted(refs.images) == pngs and any(p.startswith("heatmaps/") for p in pngs)
    assert "<table>" in page and "Final performance" in page and "Student-t" in page
    for run_dir in dirs:
        assert str(run_dir).replace("<b>", "&lt;b&gt;") in page  # escaped, not markup
    assert "<td>400</td>" in page  # t_max from the run's settings
    if HAS_RLIABLE:
        assert any(p.startswith("aggregate/") for p in pngs)
        assert "95% stratified bootstrap intervals (50 bootstrap samples)" in page


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="no chromium (Debian: apt-get install chromium)")
def test_every_image_loads_in_a_headless_browser(report, tmp_path):
    """chromium --dump-dom on a copy of the page with a script writing each image's natural
    size into the DOM; a missing image added to the copy must show 0x0 (the check works)."""
    out, _, _ = report
    probe = (
        '<img src="missing.png" alt="control">'
        '<script>window.addEventListener("load", () => { for (const i of document.images) '
        'i.setAttribute("data-size", i.naturalWidth + "x" + i.naturalHeight); '
        'document.body.setAttribute("data-loaded", "yes"); });</script></body>'
    )
    page = (out / "index.html").read_text(encoding="utf-8").replace("</body>", probe)
    check = out / "check.html"
    check.write_text(page, encoding="utf-8")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--no-first-run", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000"]  # fmt: skip
    try:
        done = subprocess.run(
            [_chromium(), *flags, "--dump-dom", check.as_uri()],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    finally:
        check.unlink()
    assert 'data-loaded="yes"' in done.stdout, done.stderr[-2000:]
    sizes = dict(re.findall(r'<img src="([^"]+)"[^>]*data-size="(\d+x\d+)"', done.stdout))
    assert sizes.pop("missing.png") == "0x0"
    assert sizes and len(sizes) == len(list(out.rglob("*.png")))
    broken = [src for src, size in sizes.items() if size.startswith("0x") or size.endswith("x0")]
    assert not broken, f"images that did not load: {broken}"
