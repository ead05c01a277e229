"""`lighthouse.report.build`: headline numbers, the two-run comparison, profiles, bad inputs, and that the
single-file HTML really renders its charts in a headless browser."""

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from lighthouse.report.build import build_report, crossover_n, sweep_headline

PAPER = Path(__file__).resolve().parents[2] / "reports" / "h200" / "paper"
CHROMIUM = Path("/usr/bin/chromium")
PROFILE_COLUMNS = [
    "n",
    "topk",
    "levels",
    "pooling",
    "scorer",
    "dtype",
    "batch",
    "heads",
    "kv_heads",
    "head_dim",
    "impl",
    "s_sel",
    "pass",
    "stage",
    "ms",
    "share",
    "bytes",
    "flops",
    "floor_ms",
    "floor_kind",
    "floor_ratio",
    "device",
]


def read_rows(path):
    with Path(path).open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def paper_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("paper-report")
    return build_report([PAPER], out)


# ------------------------------------------------------------------------------------ the committed sweep
def test_paper_report_files(paper_report):
    r = paper_report
    for path in (r.markdown, r.html, r.headline_json):
        assert path.is_file() and path.stat().st_size > 0
    names = {p.name for p in r.charts}
    for chart in ("speedup", "latency", "memory"):
        assert f"paper-{chart}.png" in names
    assert not any(p.suffix == ".svg" for p in r.charts) and not list(r.charts[0].parent.glob("*.svg"))
    md = r.markdown.read_text()
    for p in r.charts:
        if p.suffix == ".png":
            assert f"](charts/{p.name})" in md
    assert "NVIDIA H200" in md and "2.11.0+cu130" in md and "3.6.0" in md  # machine info
    assert json.loads(r.headline_json.read_text())["runs"][0]["speedup"] == r.headline["runs"][0]["speedup"]


def test_paper_headline_matches_the_csv(paper_report):
    rows = read_rows(PAPER / "results.csv")

    def ms(impl, n, field="median_ms"):
        (row,) = [r for r in rows if r["impl"] == impl and r["pass"] == "fwdbwd" and int(r["n"]) == n]
        return float(row[field])

    h = paper_report.headline["runs"][0]
    assert (h["impl"], h["pass"], h["baseline"], h["n"]) == ("lighthouse_triton", "fwdbwd", "sdpa_cudnn", 524288)
    assert h["speedup"] == pytest.approx(ms("sdpa_cudnn", 524288) / ms("lighthouse_triton", 524288), rel=1e-4)
    assert h["memory_saved"] == pytest.approx(
        1 - ms("lighthouse_triton", 524288, "peak_mem_gib") / ms("sdpa_cudnn", 524288, "peak_mem_gib"), rel=1e-4
    )
    assert h["floor_ratio"] == pytest.approx(ms("lighthouse_triton", 524288, "floor_ratio"))

    # crossover, independently: the smallest N with dense/Lighthouse > 1 there and at every larger N
    ns = sorted({int(r["n"]) for r in rows if r["impl"] == "lighthouse_triton" and r["pass"] == "fwdbwd"})
    ratio = {n: ms("sdpa_cudnn", n) / ms("lighthouse_triton", n) for n in ns}
    expected = min(n for n in ns if all(ratio[m] > 1 for m in ns if m >= n))
    assert expected == 16384 and ratio[8192] < 1
    assert h["crossover_n"] == 16384 and h["faster_at_every_n"] is False
    assert "16K" in paper_report.markdown.read_text()


# ------------------------------------------------------------------------------ headline on synthetic rows
def rows_for(speedups, impl="lighthouse_triton", pass_="fwdbwd"):
    """Lighthouse + dense rows with the given speedup per N (dense 10 ms; peaks 1 vs 2 GiB)."""
    rows = []
    for n, s in speedups.items():
        shape = dict(pass_=pass_, n=str(n), dtype="bf16", batch="1", heads="8", kv_heads="8", head_dim="128")
        shape = {("pass" if k == "pass_" else k): v for k, v in shape.items()}
        rows.append(
            {**shape, "impl": "sdpa_cudnn", "kind": "dense", "status": "ok", "median_ms": "10", "peak_mem_gib": "2"}
        )
        rows.append(
            {
                **shape,
                "impl": impl,
                "kind": "lighthouse",
                "status": "ok",
                "median_ms": str(10 / s),
                "topk": "128",
                "levels": "3",
                "pooling": "4",
                "scorer": "norm",
                "peak_mem_gib": "1",
                "speedup_vs_sdpa_cudnn": str(s),
                "floor_ratio": "1.5",
            }
        )
    return rows


def test_crossover_none_when_lighthouse_never_wins():
    h = sweep_headline(rows_for({1024: 0.2, 2048: 0.5, 4096: 0.9}))
    assert h["crossover_n"] is None and h["faster_at_every_n"] is False
    assert h["n"] == 4096 and h["speedup"] == pytest.approx(0.9)


def test_crossover_smallest_n_when_it_always_wins():
    h = sweep_headline(rows_for({1024: 1.1, 2048: 2.0, 4096: 3.0}))
    assert h["crossover_n"] == 1024 and h["faster_at_every_n"] is True
    assert h["memory_saved"] == pytest.approx(0.5) and h["floor_ratio"] == pytest.approx(1.5)


def test_crossover_after_the_last_loss():
    speedups = {1024: 0.5, 2048: 1.3, 4096: 0.8, 8192: 1.2, 16384: 2.0}  # wins at 2K, loses at 4K
    assert crossover_n(speedups) == 8192
    h = sweep_headline(rows_for(speedups))
    assert h["crossover_n"] == 8192 and h["faster_at_every_n"] is False
    assert crossover_n({}) is None and crossover_n({1024: 2.0, 2048: 1.0}) is None


def test_headline_prefers_triton_and_fwdbwd_and_falls_back():
    rows = rows_for({1024: 2.0}, impl="lighthouse_torch") + rows_for({1024: 3.0}, pass_="fwd")
    h = sweep_headline(rows)
    assert h["impl"] == "lighthouse_triton" and h["pass"] == "fwd"  # triton has no fwdbwd row here
    rows = []
    for r in rows_for({1024: 2.0}):  # a sweep without cuDNN: the speedups are vs flash
        r["speedup_vs_sdpa_flash"] = r.pop("speedup_vs_sdpa_cudnn", "")
        rows.append({**r, "impl": "sdpa_flash"} if r["kind"] == "dense" else r)
    assert sweep_headline(rows)["baseline"] == "sdpa_flash"


# --------------------------------------------------------------------------------------- two runs, profiles
def test_two_sweeps_side_by_side(tmp_path):
    a, b = tmp_path / "run-a", tmp_path / "run-b"
    shutil.copytree(PAPER, a)
    shutil.copytree(PAPER, b)
    rows = read_rows(b / "results.csv")
    for r in rows:  # B is 10% slower everywhere (the band scaled too, so p20 <= median <= p80 still holds)
        for col in ("median_ms", "p20_ms", "p80_ms"):
            if r[col]:
                r[col] = repr(float(r[col]) * 1.1)
    with (b / "results.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)

    report = build_report([a, b], tmp_path / "out", title="A vs B")
    comp = report.headline["comparison"]
    assert comp["a"] == "run-a" and comp["b"] == "run-b" and comp["pass"] == "fwdbwd"
    assert comp["points"] == 16  # 8 points x (torch, triton)
    assert comp["geomean_b_over_a"] == pytest.approx(1.1, rel=1e-3)

    md = report.markdown.read_text()
    assert md.startswith("# A vs B")
    lines = md.split("## Side by side", 1)[1].splitlines()
    header = next(line for line in lines if line.startswith("| impl"))
    col = [c.strip() for c in header.strip("|").split("|")].index("B/A")
    body = [line for line in lines[lines.index(header) + 2 :] if line.startswith("|")][:16]
    ratios = [float(line.strip("|").split("|")[col]) for line in body]
    assert len(ratios) == 16 and all(r == pytest.approx(1.1, abs=2e-3) for r in ratios)
    assert {p.name for p in report.charts} >= {"run-a-speedup.png", "run-b-speedup.png"}


def write_profile(folder: Path) -> Path:
    """A synthetic profile.csv: one point, fwd and bwd stages plus total and measured rows."""
    folder.mkdir(parents=True)
    base = dict(
        n=65536,
        topk=4096,
        levels=3,
        pooling=4,
        scorer="norm",
        dtype="bf16",
        batch=1,
        heads=8,
        kv_heads=8,
        head_dim=128,
        impl="triton",
        s_sel=36864,
        device="cuda",
    )
    stages = {
        "fwd": {"scores": 0.4, "select": 0.3, "gather": 0.5, "sdpa": 2.0, "scatter": 0.3},
        "bwd": {"fan_in": 0.4, "sdpa_bwd": 5.0, "pool_bwd": 0.9},
    }
    rows = []
    for pass_, times in stages.items():
        total = sum(times.values())
        for stage, ms in times.items():
            rows.append(
                {
                    **base,
                    "pass": pass_,
                    "stage": stage,
                    "ms": ms,
                    "share": ms / total,
                    "bytes": 2e8,
                    "flops": 0,
                    "floor_ms": 0.05,
                    "floor_kind": "bandwidth",
                    "floor_ratio": ms / 0.05,
                }
            )
        rows.append(
            {
                **base,
                "pass": pass_,
                "stage": "total",
                "ms": total,
                "share": 1.0,
                "bytes": 2e8 * len(times),
                "flops": 0,
                "floor_ms": 0.05 * len(times),
                "floor_kind": "sum",
                "floor_ratio": 1,
            }
        )
        rows.append(
            {
                **base,
                "pass": pass_,
                "stage": "measured",
                "ms": total * 0.9,
                "share": 0.9,
                "bytes": "",
                "flops": "",
                "floor_ms": "",
                "floor_kind": "sum",
                "floor_ratio": "",
            }
        )
    path = folder / "profile.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=PROFILE_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    (folder / "machine.json").write_text(json.dumps({"gpu": "Test GPU", "git": {"commit": "abcdef1234567890"}}))
    return path


def test_profile_report(tmp_path):
    write_profile(tmp_path / "prof")
    report = build_report([tmp_path / "prof"], tmp_path / "out")
    md = report.markdown.read_text()
    assert "prof@abcdef1" in md  # label: folder name and short commit
    for text in ("sdpa_bwd", "pool_bwd", "measured", "share", "GB moved", "ms / floor", "Test GPU"):
        assert text in md
    assert "| fwd | sdpa | 2 | 57.1% | 0.200 | 0.05 | 40 |" in md
    assert "| - | - |" in md  # missing machine.json keys (torch, triton, ...) shown as '-'
    assert (tmp_path / "out" / "charts" / "prof-abcdef1-profile.png").is_file()
    (point,) = [p for p in report.headline["runs"][0]["points"] if p["pass"] == "bwd"]
    assert point["top_stage"] == "sdpa_bwd" and point["measured_ms"] == pytest.approx(6.3 * 0.9)


def test_profile_png_beside_the_csv_is_reused(tmp_path):
    write_profile(tmp_path / "prof")
    shutil.copyfile(PAPER / "memory.png", tmp_path / "prof" / "profile.png")
    build_report([tmp_path / "prof" / "profile.csv"], tmp_path / "out")
    copied = tmp_path / "out" / "charts" / "prof-abcdef1-profile.png"
    assert copied.read_bytes() == (PAPER / "memory.png").read_bytes()


def test_folder_without_results_is_a_value_error(tmp_path):
    empty = tmp_path / "nothing-here"
    empty.mkdir()
    with pytest.raises(ValueError, match="nothing-here"):
        build_report([PAPER, empty], tmp_path / "out")
    with pytest.raises(ValueError, match="missing"):
        build_report([tmp_path / "missing"], tmp_path / "out")


# ------------------------------------------------------------------------------------- the HTML, rendered
def test_html_is_self_contained_and_renders_its_charts(paper_report, tmp_path):
    text = paper_report.html.read_text()
    assert text.count('<img src="data:image/png;base64,') >= 3
    assert "http://" not in text and "https://" not in text
    if not CHROMIUM.exists():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(
                "CI is set but /usr/bin/chromium is missing: CI must install Debian's chromium "
                "(.ci/run does) so that this test runs instead of skipping"
            )
        pytest.skip("/usr/bin/chromium is not installed (apt-get install -y chromium); under CI=true this fails")
    shot = tmp_path / "shot.png"
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1280,2000",
        f"--screenshot={shot}",
        paper_report.html.resolve().as_uri(),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert shot.is_file(), done.stderr[-2000:]

    import matplotlib.image as mpimg

    rgb = np.round(mpimg.imread(shot)[..., :3] * 255).astype(int)
    assert rgb.shape[:2] == (2000, 1280)
    white = (rgb >= 250).all(axis=-1)
    background = np.abs(rgb - np.array([0xF4, 0xF6, 0xF8])).max(axis=-1) <= 2  # the page margin, see CSS
    inked = 1.0 - (white | background).mean()
    colours = len(np.unique(rgb.reshape(-1, 3) @ np.array([1 << 16, 1 << 8, 1])))
    # the page's own CSS is greys and blues and its text gives ~1.4K colours; the charts add thousands more
    # and warm line colours (tab10 orange, red) that nothing else on the page has
    warm = int(((rgb[..., 0] - rgb[..., 2]) > 80).sum())
    assert inked > 0.05, f"only {inked:.1%} of the screenshot is neither white nor background"
    assert colours > 3000, f"only {colours} distinct colours: the charts did not render"
    assert warm > 300, f"only {warm} orange/red pixels: the chart lines did not render"
