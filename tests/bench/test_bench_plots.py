"""The sweep's charts (lighthouse.bench.plots) as drawn: legend size and placement, the title inside the figure."""

import itertools

import matplotlib
import pytest

from lighthouse.bench import plots
from lighthouse.harness.tables import SWEEP, append_row

matplotlib.use("Agg")

SHAPE = dict(device="cuda", dtype="bf16", batch=1, heads=8, kv_heads=8, head_dim=128, status="ok", **{"pass": "fwdbwd"})


def write_sweep(path, ns, configs):
    """Dense cuDNN at 10 ms per N; Lighthouse configuration i (both paths) at 1 + 0.1 i ms: config 0 fastest."""
    for n in ns:
        append_row(path, SWEEP, {**SHAPE, "impl": "sdpa_cudnn", "kind": "dense", "n": n, "median_ms": 10.0})
        for i, (k, levels, p, s) in enumerate(configs):
            for impl in ("lighthouse_triton", "lighthouse_torch"):
                ms = 1.0 + 0.1 * i + (0.05 if impl == "lighthouse_torch" else 0)
                append_row(
                    path,
                    SWEEP,
                    {
                        **SHAPE,
                        "impl": impl,
                        "kind": "lighthouse",
                        "n": n,
                        "topk": k,
                        "levels": levels,
                        "pooling": p,
                        "scorer": s,
                        "median_ms": ms,
                        "speedup_vs_sdpa_cudnn": 10.0 / ms,
                    },
                )


@pytest.fixture
def drawn(monkeypatch):
    """The figures make_charts saves, by file name, kept open for inspection."""
    figures = {}
    save = plots._save

    def keep(fig, out_dir, name):
        figures[name] = fig
        return save(fig, out_dir, name)

    monkeypatch.setattr(plots, "_save", keep)
    monkeypatch.setattr(plots.plt, "close", lambda fig=None: None)
    return figures


def boxes(fig):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    return fig._suptitle.get_window_extent(renderer), fig.legends[0].get_window_extent(renderer), fig.bbox


def test_a_single_n_sweep_of_108_entries_keeps_a_short_legend_clear_of_the_title(tmp_path, drawn):
    """54 configurations x 2 paths at one N: the legend names at most LEGEND_CONFIGS of them (the fastest first,
    the rest grey under one entry) and neither it nor the title leaves the figure or covers the other. Catches
    the 108-entry legend drawn over the title (defect 11)."""
    configs = list(itertools.product((512, 1024, 2048), (2, 3, 4), (2, 4, 8), ("norm", "gla")))
    write_sweep(tmp_path / "results.csv", [65536], configs)
    plots.make_charts(tmp_path / "results.csv")
    for name in ("speedup", "latency"):
        fig = drawn[name]
        texts = [t.get_text() for t in fig.legends[0].get_texts()]
        assert len(texts) <= plots.LEGEND_CONFIGS + 3, texts
        assert "46 other configurations (grey; all in results.csv)" in texts, texts  # 8 named x 2 paths
        assert "triton L2 p2 k512 norm" in texts  # config 0, the fastest, is named
        title, legend, figure = boxes(fig)
        assert figure.x0 <= title.x0 and title.x1 <= figure.x1, (name, title, figure)
        assert not title.overlaps(legend), (name, title, legend)
        assert legend.height <= figure.height * 1.05, (name, legend, figure)


def test_a_small_sweep_names_every_configuration(tmp_path, drawn):
    """Three configurations over three N: each named, no grey entry. Catches the cap applied where it is not
    needed."""
    configs = [(512, 2, 2, "norm"), (1024, 2, 2, "norm"), (1024, 3, 4, "gla")]
    write_sweep(tmp_path / "results.csv", [4096, 8192, 16384], configs)
    plots.make_charts(tmp_path / "results.csv")
    texts = [t.get_text() for t in drawn["speedup"].legends[0].get_texts()]
    assert len([t for t in texts if t.startswith(("triton ", "torch "))]) == 6
    assert not any("other configurations" in t for t in texts)
