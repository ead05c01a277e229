"""Pareto frontier and the quality charts."""

from lighthouse.quality.charts import needle_heatmaps, pareto_chart, pareto_front


def test_pareto_front_keeps_only_undominated_points():
    """Catches a frontier that keeps a point both slower and worse than another, or drops a tie-breaker."""
    pts = [(1.0, 0.99, "a"), (2.0, 0.9, "b"), (1.5, 0.8, "c"), (3.0, 0.5, "d"), (2.0, 0.85, "e"), (0.5, 0.99, "f")]
    assert [p[2] for p in pareto_front(pts)] == ["a", "b", "d"]
    err = [(1.0, 0.1, "a"), (2.0, 0.3, "b"), (1.5, 0.4, "c")]  # lower is better
    assert [p[2] for p in pareto_front(err, higher_is_better=False)] == ["a", "b"]


def _q(n, k, recall, scorer="norm"):
    return {
        "inputs": "needle",
        "status": "ok",
        "n": str(n),
        "levels": "3",
        "pooling": "4",
        "topk": str(k),
        "scorer": scorer,
        "needle_recall": str(recall),
        **{f"recall_d{10 * d:02d}": str(recall) for d in range(10)},
    }


def _s(n, k, speedup, scorer="norm"):
    return {
        "kind": "lighthouse",
        "status": "ok",
        "pass": "fwdbwd",
        "n": str(n),
        "levels": "3",
        "pooling": "4",
        "topk": str(k),
        "scorer": scorer,
        "dtype": "bf16",
        "batch": "1",
        "heads": "8",
        "kv_heads": "8",
        "head_dim": "128",
        "device": "cuda",
        "speedup_vs_sdpa_cudnn": str(speedup),
    }


def test_pareto_chart_and_heatmaps_are_written(tmp_path):
    """Catches a chart that silently draws nothing for a joined N, or one drawn for an N with no speed."""
    quality = [_q(65536, 1024, 0.7), _q(65536, 2048, 0.9), _q(65536, 4096, 1.0, "dilated"), _q(16384, 1024, 1.0)]
    sweep = [_s(65536, 1024, 9.0), _s(65536, 2048, 6.0), _s(65536, 4096, 3.0, "dilated")]
    paths = pareto_chart(sweep, quality, tmp_path)
    assert [p.name for p in paths] == ["pareto_needle_recall_N64K.png"] and paths[0].stat().st_size > 1000
    heat = needle_heatmaps(quality, tmp_path)
    assert sorted(p.name for p in heat) == ["needle_recall_dilated.png", "needle_recall_norm.png"]


def test_report_gains_the_pareto_section(tmp_path):
    """`lighthouse-bench report SWEEP QUALITY` must draw the Pareto chart from both folders (catches a
    quality folder rejected as 'no results.csv', or a join that finds nothing)."""
    from lighthouse.harness.tables import QUALITY, SWEEP, append_row
    from lighthouse.report.build import build_report

    sweep, quality = tmp_path / "sweep", tmp_path / "quality"
    sweep.mkdir(), quality.mkdir()
    for k, speedup in ((1024, 9.0), (2048, 6.0)):
        append_row(
            sweep / "results.csv", SWEEP, {**_s(65536, k, speedup), "impl": "lighthouse_triton", "median_ms": 1.0}
        )
    append_row(
        sweep / "results.csv",
        SWEEP,
        {
            **_s(65536, 1024, 1.0),
            "kind": "dense",
            "impl": "sdpa_cudnn",
            "levels": "",
            "pooling": "",
            "topk": "",
            "scorer": "",
            "median_ms": 9.0,
        },
    )
    for k, recall in ((1024, 0.7), (2048, 0.95)):
        append_row(quality / "quality.csv", QUALITY, {**_q(65536, k, recall), "out_rel_err": 0.5})
    files = build_report([sweep, quality], tmp_path / "report")
    text = files.markdown.read_text()
    assert "Speed against quality" in text and "pareto_needle_recall_N64K" in text
    assert "| norm | 64K | 2 | 0.825 | 0.95 | L=3 p=4 k=2048 |" in text  # which scorer retrieves needles
    assert (tmp_path / "report" / "charts" / "pareto_needle_recall_N64K.png").exists()


# ------------------------------------------------------------------------------------------- defect 11: legible
class _Kept:
    """matplotlib's pyplot with close() a no-op, so that the figures a chart function drew can be inspected."""

    def __init__(self, monkeypatch):
        import matplotlib.pyplot as plt

        plt.close("all")
        monkeypatch.setattr(plt, "close", lambda fig=None: None)
        self.plt = plt

    def figures(self):
        out = [self.plt.figure(n) for n in self.plt.get_fignums()]
        for fig in out:
            fig.canvas.draw()
        return out


def _inside(fig, text) -> bool:
    box, frame = text.get_window_extent(fig.canvas.get_renderer()), fig.bbox
    return frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1


def test_pareto_labels_never_overlap(tmp_path, monkeypatch):
    """Twelve frontier points a few percent apart: the labels drawn cover no other label (crowded ones are left
    out, and the chart says how many). Catches every frontier point labelled at the same offset, piled up."""
    from matplotlib.text import Annotation

    kept = _Kept(monkeypatch)
    ks = [512 * (i + 1) for i in range(12)]
    # slower as k grows and better: all on the frontier, crowded between two far frontier points
    sweep = [_s(65536, k, 3.2 - 0.01 * i) for i, k in enumerate(ks)] + [_s(65536, 64, 60.0), _s(65536, 65536, 0.2)]
    quality = [_q(65536, k, 0.8 + 0.001 * i) for i, k in enumerate(ks)] + [_q(65536, 64, 0.0), _q(65536, 65536, 1.0)]
    assert len(pareto_chart(sweep, quality, tmp_path)) == 1
    [fig] = kept.figures()
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    labels = [t for t in ax.texts if isinstance(t, Annotation)]
    boxes = [t.get_window_extent(renderer) for t in labels]
    assert len(labels) >= 2
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    left_out = 14 - len(labels)
    notes = [t.get_text() for t in ax.texts if not isinstance(t, Annotation)]
    assert notes == ([f"{left_out} frontier label(s) left out where they would overlap"] if left_out else [])


def test_heatmap_titles_stay_inside_narrow_figures(tmp_path, monkeypatch):
    """A needle heatmap with one (L, p) column and a passkey heatmap with one length are narrow: their titles are
    wrapped inside the figure. Catches titles cut at the figure's edges."""
    from lighthouse.quality.passkey_command import heatmaps

    kept = _Kept(monkeypatch)
    needle_heatmaps([_q(65536, 1024, 0.7)], tmp_path)
    cells = [
        {
            "model": "runs/two-stage/lighthouse-then-dense",
            "attention": "saved",
            "status": "ok",
            "length": 2048,
            "depth": d,
            "exact_acc": 0.5,
            "digit_only_acc": 0.6,
            "above_chance": "1",
            "chance_exact": 1e-05,
            "chance_digit": 0.1,
        }
        for d in (0, 50, 100)
    ]
    assert heatmaps(cells, tmp_path)
    figs = kept.figures()
    assert len(figs) == 2
    needle, passkey = figs
    assert needle.get_figwidth() < 4 and _inside(needle, needle._suptitle)
    assert passkey.get_figwidth() < 3 and _inside(passkey, passkey.axes[0].title)
