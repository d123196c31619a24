"""``opsloop report``: a self-contained page with charts that have data, rendered by headless Chromium."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from opsloop import cli
from opsloop.services import rollouts, scoring
from opsloop.store.firestore_store import FirestoreStore
from tests.emulator.test_cli import ingest, traffic
from tests.emulator.test_rollouts import BETTER, send_traffic, shadow_then_canary

pytestmark = pytest.mark.emulator


class Page(HTMLParser):
    """The charts (img.chart with their data-points) and every external reference of the page."""

    def __init__(self) -> None:
        super().__init__()
        self.charts: list[dict[str, str]] = []
        self.external: list[str] = []
        self.headings: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "img" and "chart" in a.get("class", ""):
            self.charts.append(a)
        for key in ("src", "href"):
            if key in a and not a[key].startswith("data:"):
                self.external.append(a[key])
        self._in_h2 = tag == "h2"

    def handle_data(self, data: str) -> None:
        if self._in_h2:
            self.headings.append(data.strip())
            self._in_h2 = False


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "headless Chromium is installed by `make test` (make browser: apt-get install chromium)"
    return exe


def headless(exe: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={profile}"]
    return subprocess.run([exe, *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture()
def report_store(seeded: FirestoreStore) -> FirestoreStore:
    seeded.configs.set("rollout", {"minSamples": 300, "minShadowSamples": 200, "guardrailMinSamples": 150,
                                  "safetyMinSamples": 100})
    ingest(seeded, traffic(900, hours=8))  # history for the charts
    router = shadow_then_canary(seeded, BETTER)
    for seed in (3, 4):  # two looks at the canary, so the evaluation chart has two intervals
        send_traffic(seeded, router, 400, seed=seed)
        scoring.score_observations(seeded, dt.datetime.now(dt.UTC))
        rollouts.evaluate_rollouts(seeded, dt.datetime.now(dt.UTC))
    scoring.score_observations(seeded, dt.datetime.now(dt.UTC), refresh_cards=True)
    return seeded


def test_report_is_self_contained_has_data_and_renders_in_chromium(
        report_store: FirestoreStore, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    code = cli.main(["report", "--out", str(out), "--hours", "12"])
    printed = capsys.readouterr().out
    assert code == 0 and str(out.resolve()) in printed

    text = out.read_text()
    page = Page()
    page.feed(text)
    assert page.external == []  # nothing fetched: every chart is a data URI
    for heading in ("Over time", "Skill cards", "Policies: active vs draft / shadow / canary", "Rollout evaluations",
                    "Audit trail"):
        assert heading in page.headings
    metric_charts = page.charts[:4]
    assert [c["alt"] for c in metric_charts] == ["mean reward", "success rate", "p95 latency (ms)", "mean cost (USD)"]
    assert all(int(c["data-points"]) >= 3 * 8 for c in metric_charts)  # 3 components x >= 8 hours each
    evaluation = [c for c in page.charts if c["alt"] == "rollout evaluations"]
    assert len(evaluation) == 1 and int(evaluation[0]["data-points"]) == 2
    assert "router-core@1.0.1" in text and "canary" in text  # the canary's version beside the active one
    assert text.count("<tr") > 10 and "shadow" in text and "alice" in text  # audit trail rows
    assert "best model" in text

    exe = chromium()
    dom = headless(exe, tmp_path / "profile1", "--virtual-time-budget=10000", "--dump-dom", out.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    loaded = re.search(r'data-charts-loaded="(\d+)"', dom.stdout)
    total = re.search(r'data-charts-total="(\d+)"', dom.stdout)
    assert loaded and total, dom.stdout[:500]
    assert int(total.group(1)) == len(page.charts) == 5
    assert int(loaded.group(1)) == 5  # every embedded PNG decoded in the browser

    shot = tmp_path / "shot.png"
    ran = headless(exe, tmp_path / "profile2", "--window-size=1280,2400", f"--screenshot={shot}", out.as_uri())
    assert ran.returncode == 0 and shot.exists(), ran.stderr[-2000:]
    with Image.open(shot) as img:
        colors = img.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 200  # drawn charts and text, not a blank page

    # the canary ends: the experiments section lists it with what it changed
    assert "no experiments yet" in text
    rollouts.reject(report_store, "router-core", "1.0.1", "enough", actor="alice")
    assert cli.main(["report", "--out", str(out), "--hours", "12"]) == 0
    after = Page()
    after.feed(out.read_text())
    assert "Experiments" in after.headings
    row = re.search(r"<tr[^>]*><td>router-core</td><td>1\.0\.0 → 1\.0\.1</td><td>rejected</td>.*?</tr>",
                    out.read_text())
    assert row and "modelWeights.gemini" in row.group(0) and "alice" in row.group(0)


def test_report_of_an_empty_project_still_renders_and_says_so(
        store: FirestoreStore, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "empty.html"
    assert cli.main(["report", "--out", str(out)]) == 0
    capsys.readouterr()
    page = Page()
    page.feed(out.read_text())
    assert len(page.charts) == 4 and all(c["data-points"] == "0" for c in page.charts)
    assert "no rollouts yet" in out.read_text() and "no skill cards yet" in out.read_text()
    assert "no experiments yet" in out.read_text()
    with pytest.raises(SystemExit) as bad_hours:  # argparse refuses it before anything runs
        cli.main(["report", "--out", str(out), "--hours", "0"])
    assert bad_hours.value.code == cli.EXIT_USAGE
