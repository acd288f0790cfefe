"""The HTML report: its data, PNGs, and a real headless browser rendering the page."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from sweeps.pareto import Results, pareto_front
from sweeps.report import build_report, render_html, write_report
from tests.sweeps.test_cli_results import CRITERIA, LAYERS, write_results

OBJS = ["test_accuracy:max", "sparsity:max"]
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def sweep(tmp_path: Path):
    return tmp_path / "res", write_results(tmp_path / "res", n=60)


def test_report_data(sweep) -> None:
    root, df = sweep
    ok = df[df.status == "ok"]
    with Results(root) as res:
        data = build_report(res, OBJS)
    front_ids = sorted(pareto_front(ok, OBJS)["trial_id"])
    assert data.by == "criterion" and data.groups == sorted(CRITERIA)
    assert sum(p["f"] for p in data.points) == len(front_ids)
    assert sorted(r[0] for r in data.table["rows"]) == front_ids
    assert data.heatmap["cols"] == list(LAYERS) and len(data.heatmap["rows"]) == len(front_ids)
    for g in CRITERIA:
        assert len(data.group_fronts[g]) == len(pareto_front(
            ok[ok["config.prune.criterion"] == g], OBJS))
        assert 0 < data.hypervolumes[g] <= data.hypervolumes["all"]
    hv = np.array(data.history["all"])
    assert hv[-1, 0] == len(df) and (np.diff(hv[:, 1]) >= 0).all()
    assert hv[-1, 1] == pytest.approx(data.hypervolumes["all"])
    assert set(data.curves) == set(CRITERIA) and data.curve_axes[0] == "target_sparsity"
    page = render_html(data)
    assert "<script" in page and "http://" not in page.replace("http://www.w3.org", "")
    assert "https://" not in page


def test_pngs(sweep, tmp_path: Path) -> None:
    root, _ = sweep
    write_report(root, tmp_path / "r.html", [*OBJS, "flops:min"], png_dir=tmp_path / "png")
    names = sorted(p.name for p in (tmp_path / "png").iterdir())
    assert names == ["accuracy_vs_sparsity.png", "front.png", "fronts_by_group.png",
                     "hypervolume.png", "layer_sparsity.png"]
    for p in (tmp_path / "png").iterdir():
        assert p.read_bytes()[:4] == b"\x89PNG" and p.stat().st_size > 5000


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chrome-profile'}"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True,
                          timeout=120, check=True)


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists() and not shutil.which("chromium"),
                    reason="needs Debian's chromium: apt-get install -y chromium")
def test_page_renders_in_headless_chromium(sweep, tmp_path: Path) -> None:
    root, _ = sweep
    out = tmp_path / "report.html"
    data = write_report(root, out, OBJS)
    n_front = sum(p["f"] for p in data.points)
    dom = _chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", out.as_uri()).stdout
    assert re.search(r'<body[^>]*data-rendered="1"', dom), dom[-2000:]

    def section(elem_id: str) -> str:
        m = re.search(rf'<div class="plot" id="{elem_id}" data-n="(\d+)">(.*?)</div>', dom,
                      re.S)
        assert m, f"{elem_id} not rendered"
        return m.group(2)

    scatter = section("front-scatter")
    assert scatter.count("<circle") == len(data.points)
    assert len(re.findall(r'class="pt front"', scatter)) == n_front
    assert "<title>" in scatter and "trial_id: t0" in scatter  # hover details
    assert section("group-fronts").count("<circle") == sum(map(len, data.group_fronts.values()))
    assert section("acc-sparsity").count("<circle") == sum(map(len, data.curves.values()))
    heat = section("layer-heatmap")
    assert len(re.findall(r'class="cell"', heat)) == n_front * len(LAYERS)
    assert len(re.findall(r'class="hv"', section("hv-history"))) == 1 + len(CRITERIA)
    table = re.search(r'<div id="front-table" data-n="(\d+)">(.*?)</div>', dom, re.S)
    assert table and int(table.group(1)) == n_front
    assert table.group(2).count("<tr>") == n_front + 1

    shot = tmp_path / "shot.png"
    _chromium(tmp_path, "--window-size=1200,1600", f"--screenshot={shot}", out.as_uri())
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)
    assert img.shape[0] >= 1000 and img.shape[1] >= 1000
    assert img[..., :3].std() > 0.05  # not blank: plots and text drew
    assert (img[..., :3].reshape(-1, 3) != 1.0).any(axis=1).mean() > 0.02
