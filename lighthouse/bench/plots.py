"""Charts from a results.csv (the report end of the data flow; it never measures anything).

speedup: Lighthouse speedup vs N per configuration, one panel per (baseline, pass), log-x, a line at 1x, as
         launched; speedup-host-ahead: the same on the host-ahead clock (the kernels alone), where the file has it.
latency: median ms (as launched) vs N for Lighthouse, its floor and each dense baseline, log-log, p20-p80 band.
memory:  peak GiB vs N (CUDA only; a CPU run gets an annotated empty chart).
Each as PNG (no SVG copy: committed reports stay lean), titled with the GPU and dtype. Failed rows are left out
(they are in the CSV).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator  # noqa: E402

from ..harness import baselines, chart_text, machine  # noqa: E402
from ..harness.outdir import writable_folder  # noqa: E402
from ..harness.tables import (  # noqa: E402
    BASELINES,
    CLOCKS,
    CONFIG_COLUMNS,
    HOST_AHEAD,
    LAUNCHED,
    PASSES,
    PROFILE,
    SHAPE_COLUMNS,
    SWEEP,
    ResultsFormatError,
    clock_column,
    fmt_size,
    header_of,
    kind_of_header,
    read_finished,
    read_rows,
)

IMPL_STYLE = {"lighthouse_torch": ("--", "o"), "lighthouse_triton": ("-", "^")}
#: Chart file formats: PNG only (an SVG beside every PNG doubled the committed reports for nothing).
FORMATS = ("png",)
#: Legend entries for configurations at most: beyond it the fastest are coloured and named and the rest drawn in
#: grey under one entry (a single-N sweep of 108 configurations drew a 108-entry legend over its title).
LEGEND_CONFIGS = 16
OTHERS_COLOUR = (0.55, 0.55, 0.55, 0.45)


#: Columns kept as text even where every value looks like a number.
TEXT_COLUMNS = ("scorer", "rope", "impl", "status", "pass")
#: Columns charted as numbers: a cell that is not one becomes NaN (left out of the chart).
NUMBER_COLUMNS = ("median_ms", "p20_ms", "p80_ms", "peak_mem_gib", "n", "s_sel")


def load(csv_path: Path, warn_torn: bool = True) -> pd.DataFrame:
    """The finished rows of a results.csv (tables.read_finished: torn rows left out, with a warning) as a frame:
    empty cells NaN, every column that holds only numbers numeric."""
    if kind_of_header(header_of(csv_path)) is PROFILE:
        raise ResultsFormatError(
            f"not a lighthouse-bench sweep results file: {csv_path} is a profile "
            "(`lighthouse-bench report` draws profiles)"
        )
    rows = read_finished(csv_path, SWEEP) if warn_torn else read_rows(csv_path, SWEEP)[0]
    rows = [{k: (v if v != "" else None) for k, v in r.items()} for r in rows]
    df = pd.DataFrame(rows, columns=list(rows[0]) if rows else list(SWEEP.columns))
    for col in df.columns:
        if col in NUMBER_COLUMNS:
            df[col] = pd.to_numeric(df[col], errors="coerce")
        elif col not in TEXT_COLUMNS:
            try:
                df[col] = pd.to_numeric(df[col])
            except (TypeError, ValueError):
                pass
    return df


#: Line style per RoPE placement, when a file holds both (the colour stays the configuration's).
ROPE_STYLE = {"pre": "-", "post": "--"}


def _label_config(row, varying: Sequence[str]) -> str:
    parts = [f"L{int(row['levels'])} p{int(row['pooling'])} k{int(row['topk'])}", str(row["scorer"])]
    shape = {"dtype": "{}", "batch": "B{}", "heads": "H{}", "kv_heads": "Hkv{}", "head_dim": "D{}"}
    parts += [shape[c].format(row[c]) for c in varying]
    return " ".join(parts)


def _rope(row) -> str:
    value = row.get("rope") if hasattr(row, "get") else None
    return value if isinstance(value, str) and value else "pre"


def _fastest(lh: pd.DataFrame, labels: Sequence[str], varying: Sequence[str], keep: int) -> List[str]:
    """The `keep` configurations with the largest speedup over any dense baseline (as launched) in an ok row, or
    without any speedup in the file, the lowest median ms."""
    ok = lh[lh["status"] == "ok"]
    speedups = [c for c in ok.columns if c.startswith("speedup_vs_") and ok[c].notna().any()]
    score: Dict[str, float] = {}
    for _, r in ok.iterrows():
        values = [r[c] for c in speedups if r[c] == r[c]] if speedups else [-r["median_ms"]]
        values = [v for v in values if v == v]
        if values:
            lab = _label_config(r, varying)
            score[lab] = max(score.get(lab, -math.inf), max(values))
    return sorted(labels, key=lambda lab: -score.get(lab, -math.inf))[:keep]


class Styles:
    """One colour per Lighthouse configuration (shared by every panel and chart); line style per impl, or per
    RoPE placement (solid pre, dashed post) when the file holds both, the impl then shown by the marker. With more
    configurations than the legend holds (LEGEND_CONFIGS entries), the fastest are named and the rest are grey."""

    def __init__(self, df: pd.DataFrame):
        lh = df[df["kind"] == "lighthouse"]
        self.varying = [c for c in SHAPE_COLUMNS if c in df and df[c].nunique() > 1]
        columns = [c for c in CONFIG_COLUMNS if c != "rope"]
        keys = lh[columns + self.varying].drop_duplicates().sort_values(columns)
        self.labels = [_label_config(r, self.varying) for _, r in keys.iterrows()]
        self.impls = sorted(lh["impl"].dropna().unique())
        self.ropes = sorted({_rope(r) for _, r in lh.iterrows()}) if "rope" in lh else ["pre"]
        room = max(1, LEGEND_CONFIGS // max(1, len(self.impls) * len(self.ropes)))
        named = self.labels if len(self.labels) <= room else _fastest(lh, self.labels, self.varying, room)
        self.named = set(named)
        cmap = plt.get_cmap("tab10" if len(self.named) <= 9 else "tab20")
        palette = [c for c in cmap.colors if max(c) - min(c) > 0.05]  # no grey: grey is for the unnamed
        named_labels = [x for x in self.labels if x in self.named]
        self.colors = {lab: palette[i % len(palette)] for i, lab in enumerate(named_labels)}
        self.colors.update({lab: OTHERS_COLOUR for lab in self.labels if lab not in self.named})
        self.others = len(self.labels) - len(self.named)

    def config(self, row) -> str:
        """The legend's name of a row's configuration (with its placement when the file holds both)."""
        label = _label_config(row, self.varying)
        return label + (f" rope={_rope(row)}" if len(self.ropes) > 1 else "")

    def color(self, row):
        return self.colors.get(_label_config(row, self.varying), "gray")

    def plot(self, ax, handles: Dict[str, Line2D], g: pd.DataFrame, col: str, impl: str, band: bool = False) -> None:
        """One configuration's line; its legend entry, or the one entry of the grey configurations."""
        row = g.iloc[0]
        ls, mk = self.line(impl, row)
        key = _label_config(row, self.varying)
        named = key in self.named
        color = self.colors.get(key, OTHERS_COLOUR)
        ax.plot(
            g["n"],
            g[col],
            ls,
            marker=mk,
            color=color,
            ms=4 if named else 3,
            lw=1.4 if named else 0.8,
            zorder=2 if named else 1,
        )
        if band:
            _band(ax, g, color)
        if named:
            lab = self.config(row)
            name = lab if len(self.impls) <= 1 else f"{impl.removeprefix('lighthouse_')} {lab}"
            handles.setdefault(name, Line2D([], [], ls=ls, marker=mk, color=color, ms=4))
        else:
            handles.setdefault(
                f"{self.others} other configurations (grey; all in results.csv)",
                Line2D([], [], ls="-", marker="o", color=OTHERS_COLOUR, ms=3, lw=0.8),
            )

    def line(self, impl: str, row=None) -> Tuple[str, str]:
        if len(self.ropes) > 1:
            marker = IMPL_STYLE.get(impl, (":", "s"))[1] if len(self.impls) > 1 else "o"
            return ROPE_STYLE.get(_rope(row) if row is not None else "pre", ":"), marker
        if len(self.impls) <= 1:
            return "-", "o"
        return IMPL_STYLE.get(impl, (":", "s"))

    def dense_label(self, impl: str, row) -> str:
        shape = {"dtype": "{}", "batch": "B{}", "heads": "H{}", "kv_heads": "Hkv{}", "head_dim": "D{}"}
        return " ".join([impl] + [shape[c].format(row[c]) for c in self.varying])


def _title(df: pd.DataFrame, what: str, info: Optional[dict]) -> str:
    device = (info or {}).get("gpu") or (info or {}).get("cpu") or ", ".join(sorted(df["device"].astype(str).unique()))
    dtypes = ", ".join(sorted(df["dtype"].astype(str).unique()))
    shape = ""
    if all(df[c].nunique() == 1 for c in SHAPE_COLUMNS[1:] if c in df) and len(df):
        r = df.iloc[0]
        shape = f" · B={r['batch']} H={r['heads']} Hkv={r['kv_heads']} D={r['head_dim']}"
    return f"{what} — {device} · {dtypes}{shape}"


def _log2_x(ax, ns: Sequence[float]) -> None:
    ax.set_xscale("log", base=2)
    ticks = sorted({int(n) for n in ns if n == n})
    if ticks:
        if len(ticks) > 10:  # keep every other tick readable
            ticks = ticks[:: math.ceil(len(ticks) / 10)]
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: fmt_size(int(round(x)))))
        ax.xaxis.set_minor_locator(NullLocator())
        lo, hi = min(ticks), max(ticks)
        ax.set_xlim(lo / 1.3, hi * 1.3)
        if any(b / a < 1.6 for a, b in zip(ticks, ticks[1:])):  # 96K next to 128K: tilt the labels apart
            ax.tick_params(axis="x", labelrotation=50, labelsize=8)
    ax.set_xlabel("sequence length N")
    ax.grid(True, which="major", alpha=0.3)


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=10, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def _legend(fig, handles: Dict[str, Line2D]) -> None:
    """Right of the panels, in as many columns as keep it within the figure's height (never over the title)."""
    if not handles:
        return
    rows = max(4, int(fig.get_figheight() * 72 / (8 * 1.9)))  # 8 pt entries, spaced
    fig.legend(
        list(handles.values()),
        list(handles.keys()),
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        fontsize=8,
        ncol=max(1, math.ceil(len(handles) / rows)),
        frameon=False,
    )


def _suptitle(fig, text: str, fontsize: int = 11) -> None:
    """The figure's title, wrapped to its width (a long title on a one-panel figure ran into the legend)."""
    fig.suptitle(chart_text.fit(text, fig.get_figwidth(), fontsize), fontsize=fontsize)


def _save(fig, out_dir: Path, name: str) -> List[Path]:
    paths = []
    for ext in FORMATS:
        path = out_dir / f"{name}.{ext}"
        fig.savefig(path, dpi=130, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def _passes(df: pd.DataFrame) -> List[str]:
    present = [p for p in PASSES if (df["pass"] == p).any()]
    return present or ["fwd"]


def _series(group: pd.DataFrame, col: str) -> pd.DataFrame:
    return group.dropna(subset=[col]).sort_values("n")


def _speedup_y(ax, values: pd.Series) -> None:
    """Log y (0.5x and 2x are equally far from 1x), always showing the 1x line, ticks written as 2x."""
    v = values.dropna()
    v = v[v > 0]
    lo = min([1.0] + list(v)) / 1.5
    hi = max([1.0] + list(v)) * 1.5
    ax.set_yscale("log")
    ax.set_ylim(lo, hi)
    ticks = [t for t in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if lo <= t <= hi]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}x"))
    ax.yaxis.set_minor_locator(NullLocator())


def speedup_chart(
    df: pd.DataFrame, ok: pd.DataFrame, st: Styles, info, out_dir: Path, clock: str = LAUNCHED
) -> List[Path]:
    """Speedups on one clock (tables.CLOCKS; Lighthouse and dense both on it), named in the title and the file."""
    lh = ok[ok["kind"] == "lighthouse"]

    def column(base: str) -> str:
        return clock_column(f"speedup_vs_{base}", clock)

    baselines = [b for b in BASELINES.values() if column(b) in lh and lh[column(b)].notna().any()]
    passes = _passes(df)
    rows = max(1, len(baselines))
    fig, axes = plt.subplots(rows, len(passes), figsize=(4.6 * len(passes), 3.4 * rows), squeeze=False)
    handles: Dict[str, Line2D] = {}
    for i, base in enumerate(baselines or [None]):
        for j, pass_ in enumerate(passes):
            ax = axes[i][j]
            if base is None:
                _empty(ax, "no speedups: no Lighthouse row with a\nsuccessful dense baseline in the same sweep")
                ax.set_title(pass_)
                continue
            col = column(base)
            sub = lh[lh["pass"] == pass_]
            for (impl, *_), g in sub.groupby(["impl", *CONFIG_COLUMNS, *st.varying], dropna=False):
                g = _series(g, col)
                if g.empty:
                    continue
                st.plot(ax, handles, g, col, impl)
            ax.axhline(1.0, color="crimson", lw=1, ls=":")
            _log2_x(ax, sub["n"])
            _speedup_y(ax, sub[col])
            ax.set_title(f"{pass_} vs {base}", fontsize=10)
            ax.set_ylabel("speedup (x)")
            if sub[col].notna().sum() == 0:
                _empty(ax, f"no {pass_} speedups vs {base}")
    if baselines:
        handles.setdefault("1x (as fast as dense)", Line2D([], [], color="crimson", ls=":"))
    _legend(fig, handles)
    _suptitle(fig, _title(df, f"Lighthouse speedup over dense causal SDPA, {CLOCKS[clock]}", info))
    fig.tight_layout()
    return _save(fig, out_dir, "speedup" if clock == LAUNCHED else f"speedup-{clock.replace('_', '-')}")


def _band(ax, g, color) -> None:
    if g["p20_ms"].notna().all() and g["p80_ms"].notna().all() and len(g) > 1:
        ax.fill_between(g["n"], g["p20_ms"], g["p80_ms"], color=color, alpha=0.2, lw=0)
    elif len(g):
        ax.errorbar(
            g["n"],
            g["median_ms"],
            yerr=[g["median_ms"] - g["p20_ms"], g["p80_ms"] - g["median_ms"]],
            fmt="none",
            ecolor=color,
            alpha=0.5,
            capsize=2,
        )


def _metric_chart(df, ok, st, info, out_dir, *, col, ylabel, name, title, band) -> List[Path]:
    passes = _passes(df)
    fig, axes = plt.subplots(1, len(passes), figsize=(4.6 * len(passes), 3.8), squeeze=False)
    handles: Dict[str, Line2D] = {}
    for j, pass_ in enumerate(passes):
        ax = axes[0][j]
        sub = ok[(ok["pass"] == pass_) & ok[col].notna()]
        ax.set_title(pass_, fontsize=10)
        if sub.empty:
            _empty(ax, f"no successful {pass_} rows")
            continue
        dense = sub[sub["kind"] == "dense"]
        for impl, g in dense.groupby(["impl", *st.varying]) if st.varying else dense.groupby("impl"):
            impl = impl[0] if isinstance(impl, tuple) else impl
            g = _series(g, col)
            color = baselines.colour(impl)
            ax.plot(g["n"], g[col], "-.", marker="s", color=color, ms=4, lw=1.4)
            if band:
                _band(ax, g, color)
            handles.setdefault(st.dense_label(impl, g.iloc[0]), Line2D([], [], ls="-.", marker="s", color=color, ms=4))
        for kind in ("lighthouse", "floor"):
            for (impl, *_), g in sub[sub["kind"] == kind].groupby(["impl", *CONFIG_COLUMNS, *st.varying], dropna=False):
                g = _series(g, col)
                color = st.color(g.iloc[0])
                if kind == "floor":
                    ax.plot(g["n"], g[col], ":", color=color, lw=1.2)
                    handles.setdefault(
                        "floor: dense SDPA on the S entries (dotted)", Line2D([], [], ls=":", color="gray")
                    )
                    continue
                st.plot(ax, handles, g, col, impl, band)
        _log2_x(ax, sub["n"])
        ax.set_yscale("log")
        ax.set_ylabel(ylabel)
    if band and handles:
        handles.setdefault("band: p20-p80 of the repetitions", Line2D([], [], color="gray", alpha=0.3, lw=6))
    _legend(fig, handles)
    _suptitle(fig, _title(df, title, info))
    fig.tight_layout()
    return _save(fig, out_dir, name)


def memory_chart(df, ok, st, info, out_dir) -> List[Path]:
    has_mem = "peak_mem_gib" in ok and ok["peak_mem_gib"].notna().any()
    if has_mem:
        return _metric_chart(
            df,
            ok,
            st,
            info,
            out_dir,
            col="peak_mem_gib",
            ylabel="peak memory (GiB)",
            name="memory",
            title="Peak memory (inputs included)",
            band=False,
        )
    fig, ax = plt.subplots(figsize=(6, 3))
    devices = ", ".join(sorted(df["device"].astype(str).unique())) or "?"
    _empty(ax, f"No peak memory in this results file:\nit is measured on CUDA only (this run: {devices}).")
    _suptitle(fig, _title(df, "Peak memory", info))
    return _save(fig, out_dir, "memory")


def make_charts(
    csv_path, out_dir: Optional[Path] = None, info: Optional[dict] = None, warn_torn: bool = True
) -> List[Path]:
    """Write speedup, latency and memory charts (PNG) beside the CSV (or into out_dir). Raises
    tables.ResultsFormatError (a ValueError) before writing anything when the CSV is not a results file."""
    csv_path = Path(csv_path)
    df = load(csv_path, warn_torn)
    if df.empty:  # a header alone (or only torn rows): no chart rather than empty axes
        raise ResultsFormatError(f"{csv_path} has no finished row to chart")
    out_dir = writable_folder(out_dir or csv_path.parent, "--out" if out_dir else "--out (default: beside the CSV)")
    info = info if info is not None else machine.read(csv_path.parent / "machine.json")
    ok = df[(df["status"] == "ok") & df["median_ms"].notna()]
    st = Styles(df)
    paths = speedup_chart(df, ok, st, info, out_dir)
    ahead = [clock_column(f"speedup_vs_{b}", HOST_AHEAD) for b in BASELINES.values()]
    if any(c in ok and ok[c].notna().any() for c in ahead):  # files before the second clock have none
        paths += speedup_chart(df, ok, st, info, out_dir, clock=HOST_AHEAD)
    paths += _metric_chart(
        df,
        ok,
        st,
        info,
        out_dir,
        col="median_ms",
        ylabel="median latency (ms)",
        name="latency",
        title=f"Latency: Lighthouse and dense causal SDPA, {CLOCKS[LAUNCHED]}",
        band=True,
    )
    paths += memory_chart(df, ok, st, info, out_dir)
    return paths
