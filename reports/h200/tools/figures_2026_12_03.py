"""Every figure quoted from the H200 runs of 2026-12-03 (RoPE cost, paper-530m under mixed precision, the needle
grid on correctly planted needles; the second session's: both clocks, GQA, the RoPE stage profile, cold
start and the gate's proof inside the selection kernel; and the third session's: the same measurements after the
pull's trigonometry fix, the gather without spills and the host-glue cuts; and the fourth session's: the cold start
with the precompile, and RoPE after selection with the halves pooled in one pass; its later calls: the SDPA
warm-up beside the precompile, the re-recorded gate baseline, the tuned post pull and the gate's proof in the
gather kernel; and the fifth session's: PERF_NOTES step 21 timed, what the first backward of a process waits on
and the warm first call after sdpa.vjp, passkey on models trained with each RoPE placement, the gate after the
change), recomputed from the committed CSVs.

python reports/h200/tools/figures_2026_12_03.py
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import pandas as pd

H200 = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(H200.parents[1]))


def rope_cost(folder: Path = H200 / "rope", tag: str = "rope cost") -> None:
    s = pd.read_csv(folder / "rope_cost_summary.csv").set_index("pass")
    for p in ("fwdbwd", "fwd", "bwd"):
        r = s.loc[p]
        print(f"{tag} 96K {p}: pre {r.pre_ms:.3f} ms, post {r.post_ms:.3f} ms, post/pre {r.post_over_pre:.4f}")
    rounds = pd.read_csv(folder / "rope_cost.csv")
    fb = rounds[rounds["pass"] == "fwdbwd"].pivot_table(index="round", columns="rope", values="median_ms")
    ratio = fb["post"] / fb["pre"]
    print(f"{tag} 96K fwdbwd post/pre by round: {ratio.min():.3f} .. {ratio.max():.3f} ({len(ratio)} rounds)")


def paper_530m() -> None:
    for loss in ("liger", "chunked"):
        t = pd.read_csv(H200 / "train" / f"paper-530m-mixed-{loss}" / "train.csv")
        for _, r in t.iterrows():
            what = "dense" if r.attention == "dense" else f"lighthouse rope={r.rope}"
            speed = "" if r.attention == "dense" else f", {r.speedup_vs_dense:.2f}x dense"
            print(
                f"530m {loss} N={r.n} {what}: {r.tokens_per_s / 1e3:.1f}k tokens/s{speed}, peak {r.peak_mem_gib:.1f} "
                f"GiB, {r['dtype']}, clip {r['clip']}, loss {r.loss_impl}"
            )


def paper_530m_shares() -> None:
    t = pd.concat(
        pd.read_csv(H200 / "train" / f"paper-530m-mixed-{loss}" / "train.csv") for loss in ("liger", "chunked")
    )
    lh = t[t.attention == "lighthouse"]
    print(
        f"530m Lighthouse attention share of the step: {lh.attention_share.min():.2f} .. {lh.attention_share.max():.2f}"
    )
    both = lh.pivot_table(index=["loss_impl", "n"], columns="rope", values="tokens_per_s")
    ratio = both["post"] / both["pre"]
    print(f"530m post / pre tokens/s: {ratio.min():.4f} .. {ratio.max():.4f}")


def needles() -> None:
    q = pd.read_csv(H200 / "quality" / "needles-fixed" / "quality.csv")
    ok = q[q.status == "ok"]
    for (inputs, rope), g in ok.groupby(["inputs", "rope"]):
        dense = sorted(set(g.dense_needle_recall))
        best = g.groupby("n").needle_recall.max()
        print(
            f"needles {inputs} rope={rope}: dense recall {dense[0]:g}..{dense[-1]:g}; best Lighthouse recall by N "
            + ", ".join(f"{n // 1024}K {v:.3f}" for n, v in best.items())
        )
    pick = ok[(ok.inputs == "needle") & (ok.rope == "pre") & (ok.levels == 2) & (ok.pooling == 2) & (ok.topk == 512)]
    pick = pick[pick.scorer == "norm"].set_index("n").needle_recall
    print(
        "the old 96K pick (L=2 p=2 k=512 norm) on fixed needles: "
        + ", ".join(f"{n // 1024}K {v:.3f}" for n, v in pick.items())
    )
    rot = ok[ok.inputs == "needle-rope"]
    key = ["n", "levels", "pooling", "topk", "scorer"]
    both = rot.pivot_table(index=key, columns="rope", values="needle_recall").dropna()
    diff = both["post"] - both["pre"]
    for n, d in diff.groupby(level="n"):
        print(
            f"needle-rope post - pre recall at {n // 1024}K over {len(d)} configurations: "
            f"median {statistics.median(d):+.3f}, "
            f"{(d > 0).sum()} higher, {(d < 0).sum()} lower, {(d == 0).sum()} equal"
        )
    old = pd.read_csv(H200 / "quality" / "n96k" / "quality" / "quality.csv")
    old = old[(old.status == "ok") & (old.inputs == "needle")]
    print(
        f"inflated needles (before the fix) at 96K: best recall {old.needle_recall.max():.3f}, "
        f"{(old.needle_recall >= 0.9).sum()} of {len(old)} rows >= 0.9"
    )
    fixed = ok[(ok.inputs == "needle") & (ok.rope == "pre") & (ok.n == 98304)]
    print(f"fixed needles at 96K: {(fixed.needle_recall >= 0.9).sum()} of {len(fixed)} rows >= 0.9")


def clocks(folder: Path = H200 / "clocks", tag: str = "clocks") -> None:
    """issue 24's four points on both clocks (reports/h200/clocks, sweep --suite clocks)."""
    d = pd.read_csv(folder / "results.csv")
    lh = d[d.impl == "lighthouse_triton"]
    dense = d[d.impl == "sdpa_cudnn"].set_index(["n", "batch"])
    for _, r in lh.iterrows():
        c = dense.loc[(r.n, r.batch)]
        print(
            f"{tag} {r.n // 1024}K B{r.batch} k={int(r.topk)}: Lighthouse {r.median_ms:.3f} ms as timed, "
            f"{r.host_ahead_median_ms:.3f} host ahead "
            f"(as timed {100 * (r.median_ms / r.host_ahead_median_ms - 1):+.1f}%); "
            f"cuDNN {c.median_ms:.3f} / {c.host_ahead_median_ms:.3f}; speedup {r.speedup_vs_sdpa_cudnn:.2f}x / "
            f"{r.host_ahead_speedup_vs_sdpa_cudnn:.2f}x; "
            f"floor ratio {r.floor_ratio:.3f} / {r.host_ahead_floor_ratio:.3f}; "
            f"host {r.host_ms_per_call:.2f} ms per call (cuDNN {c.host_ms_per_call:.2f})"
        )


def gqa() -> None:
    """the paper suite's GQA points (reports/h200/gqa, sweep --suite gqa) and the break-even N per configuration."""
    from lighthouse.bench.breakeven import break_even_rows
    from lighthouse.harness.plain_csv import read_csv

    d = pd.read_csv(H200 / "gqa" / "results.csv")
    lh = d[d.impl == "lighthouse_triton"]
    for n, g in lh.groupby("n"):
        print(
            f"gqa {n // 1024}K: speedup as timed "
            f"{g.speedup_vs_sdpa_cudnn.min():.2f}..{g.speedup_vs_sdpa_cudnn.max():.2f}x, host ahead "
            f"{g.host_ahead_speedup_vs_sdpa_cudnn.min():.2f}..{g.host_ahead_speedup_vs_sdpa_cudnn.max():.2f}x, "
            f"host-ahead floor ratio {g.host_ahead_floor_ratio.min():.3f}..{g.host_ahead_floor_ratio.max():.3f} "
            f"({len(g)} shapes)"
        )
    for r in break_even_rows(read_csv(H200 / "gqa" / "results.csv"), "sdpa_cudnn"):
        print(
            f"gqa break-even Hq={r['heads']}/{r['kv_heads']} D={r['head_dim']}: as launched "
            f"{r['launched'].describe()}, host ahead {r['host_ahead'].describe()}"
        )
    st = pd.read_csv(H200 / "gqa" / "stages" / "stages.csv")
    at = st[(st.n == 98304) & (st.group == 8)]
    for _, r in at.iterrows():
        print(f"gqa stages 96K g=8 D={r.head_dim} {r.stage}: {r.host_ahead_ms:.3f} ms host ahead, {r.vs_g1:.2f}x g=1")


def rope_profile() -> None:
    """where RoPE after selection costs, stage by stage (reports/h200/rope/profile, profile --rope pre,post)."""
    d = pd.read_csv(H200 / "rope" / "profile" / "profile.csv")
    p = d.pivot_table(index=["pass", "stage"], columns="rope", values="ms", sort=False)
    for (pas, stage), r in p.iterrows():
        print(f"rope profile 96K {pas} {stage}: pre {r.pre:.3f} ms, post {r.post:.3f} ms ({r.post - r.pre:+.3f})")


def cold_start() -> None:
    """the first call in a fresh process on a fresh machine (reports/h200/coldstart/2026-12-03)."""
    c = pd.read_csv(H200 / "coldstart" / "2026-12-03" / "cold_start.csv")
    for _, r in c.iterrows():
        print(
            f"cold start {r.phase} N={r.n // 1024}K k={r.topk} L={r.levels}: import {r.import_ms / 1e3:.2f} s, "
            f"first fwd {r.first_fwd_ms / 1e3:.2f} s, first bwd {r.first_bwd_ms / 1e3:.2f} s, "
            f"first call {r.first_call_ms / 1e3:.2f} s, "
            f"import + first call {(r.import_ms + r.first_call_ms) / 1e3:.2f} s, "
            f"Triton compile {r.triton_compile_ms / 1e3:.2f} s "
            f"({r.kernels_compiled} kernels)"
        )
    k = pd.read_csv(H200 / "coldstart" / "2026-12-03" / "compile.csv")
    k = k[(k.phase == "cold") & (k.n == 98304)]
    for _, r in k.sort_values("compile_ms", ascending=False).iterrows():
        print(f"cold start 96K compile {r.kernel}: {r.compile_ms:.0f} ms")


def gate(
    folder: Path = H200 / "check" / "gate-kernel-select", tag: str = "gate select", cal_tag: str = "gate calibration"
) -> None:
    """the gate's proof with the slowdown inside one kernel (reports/h200/check/gate-kernel-select, -gather)."""
    d = pd.read_csv(folder / "slowdowns.csv")
    for pct, g in d.groupby("planted_pct"):
        codes = g.groupby("judgment").exit_code.first().tolist()
        delivered = g.groupby(["judgment", "point"]).delivered_pct.first()
        gated = g[g.figure != "host_ms_per_call"]
        caught = gated.groupby(["judgment", "point"]).verdict.apply(lambda v: (v == "REGRESSED").any())
        print(
            f"{tag} {pct}%: exit codes {codes}; delivered {delivered.min():.2f}..{delivered.max():.2f}%; "
            f"point-judgments caught {int(caught.sum())} of {len(caught)}; layer change measured by the check "
            f"{g.layer_host_ahead_change_pct.min():+.1f}..{g.layer_host_ahead_change_pct.max():+.1f}%"
        )
    cal = pd.read_csv(folder / "calibration.csv")
    for _, r in cal.iterrows():
        print(f"{cal_tag} n={r.n} asked {r.requested_pct}%: delivered {r.delivered_pct:.2f}%")


def stage_shift() -> None:
    """why every short stage reads ~0.07 ms more in the Dec 3 profile than in the Nov 29 one (PERF_NOTES step 14):
    the two profiles' stage ms (as launched, the only clock the profile had), their gpu_busy rows (the summed
    kernel durations of the whole pass), and scripts/gqa_stages.py's same stages on both clocks on Dec 3."""
    old = pd.read_csv(H200 / "profile" / "n96k-k1536" / "profile.csv")
    new = pd.read_csv(H200 / "rope" / "profile" / "profile.csv")
    new = new[new.rope == "pre"]
    st = pd.read_csv(H200 / "gqa" / "stages" / "stages.csv")
    st = st[(st.n == 98304) & (st.group == 1) & (st.head_dim == 128)].set_index("stage")
    a, b = (t.set_index(["pass", "stage"]).ms for t in (old, new))
    for pas, stage in a.index:
        line = f"stage shift 96K {pas} {stage}: Nov 29 {a[pas, stage]:.3f} ms, Dec 3 {b[pas, stage]:.3f} ms"
        line += f" ({b[pas, stage] - a[pas, stage]:+.3f})"
        if stage in st.index:
            g = st.loc[stage]
            line += f"; gqa_stages Dec 3 {g.ms:.3f} as launched, {g.host_ahead_ms:.3f} host ahead"
        print(line)
    for pas in ("fwd", "bwd"):
        stages = [s for p, s in a.index if p == pas and s not in ("total", "measured", "gpu_busy")]
        moved = sum(b[pas, s] - a[pas, s] for s in stages)
        busy = b[pas, "gpu_busy"] - a[pas, "gpu_busy"]
        print(
            f"stage shift 96K {pas}: the stages moved {moved:+.3f} ms in all, the pass's kernels (gpu_busy) {busy:+.3f}"
        )


def trace_kernels(path: Path) -> dict:
    """Durations (us) of each Triton kernel (named `_...`) in a profile's Chrome trace, in launch order."""
    events = json.loads(path.read_text())["traceEvents"]
    out = {}
    for e in sorted((e for e in events if e.get("cat") == "kernel"), key=lambda e: e["ts"]):
        if e["name"].startswith("_"):
            out.setdefault(e["name"], []).append(e["dur"])
    return out


def kernel_resources(path: Path, tag: str) -> None:
    """scripts/kernel_resources.py's table (a log: a header line, one line per kernel, a trailing rc= line)."""
    log = path.read_text().splitlines()
    head = log[0].split()
    for cells in (line.split() for line in log[1:]):
        if len(cells) == len(head):  # not the trailing rc= line
            r = dict(zip(head, cells))
            print(
                f"{tag} {r['rope']} {r['stage']}: {r['regs']} registers, {r['instrs']} "
                f"instructions, {r['warps/SM']} warps/SM, stack {r['stack']} (STL {r['STL']}, LDL {r['LDL']}), "
                f"f64 {r['f64']}, libdevice sin/cos {r['libdevice_sin_cos']}"
            )


def session3() -> None:
    """The third session (commit 0eb7c7e): the RoPE cost and the stage profile after the pull's trigonometry fix
    (PERF_NOTES step 12), the clocks after the host-glue cuts (step 15), the host's time per stage (step 13), and
    the kernel times of the profile's trace against the Nov 29 one (the gather without spills, step 14)."""
    rope_cost(H200 / "rope" / "after", "rope cost after")
    clocks(H200 / "clocks-after", "clocks after")
    new = pd.read_csv(H200 / "rope" / "profile-after" / "profile.csv")
    old = pd.read_csv(H200 / "rope" / "profile" / "profile.csv")
    for clock in ("ms", "host_ahead_ms"):
        p = new.pivot_table(index=["pass", "stage"], columns="rope", values=clock, sort=False)
        for (pas, stage), r in p.iterrows():
            line = (
                f"profile after 96K {pas} {stage} [{clock}]: pre {r.pre:.3f}, post {r.post:.3f} ({r.post - r.pre:+.3f})"
            )
            if clock == "ms":
                o = old[(old["pass"] == pas) & (old.stage == stage)].set_index("rope").ms
                line += f"; Dec 3 second session pre {o['pre']:.3f}, post {o['post']:.3f}"
            print(line)

    # each trace holds 3 fwd+bwd calls; the gather and pull kernels launch twice per call (forward and backward)
    pre = trace_kernels(H200 / "profile" / "n96k-k1536" / "trace-n98304-k1536-triton.json")
    after = "trace-n98304-k1536-L3-p4-norm-post-B1-H8x8-D128-bf16-triton.json"
    post = trace_kernels(H200 / "rope" / "profile-after" / after)
    for name in sorted(post):
        a, b = pre.get(name, []), post[name]
        per_call = lambda d: sum(d) / 3  # noqa: E731
        print(
            f"trace kernel {name}: Nov 29 pre (spilling gather) {per_call(a):.1f} us per call, "
            f"Dec 3 post after the fixes {per_call(b):.1f} us per call ({len(b)} launches)"
        )
    before, after = (pd.read_csv(H200 / f / "results.csv") for f in ("clocks", "clocks-after"))
    key = ["n", "batch", "topk"]
    b, a = (t[t.impl == "lighthouse_triton"].set_index(key) for t in (before, after))
    for k in a.index:
        print(
            f"clocks before -> after {k[0] // 1024}K B{k[1]} k={int(k[2])}: as timed {b.loc[k].median_ms:.3f} -> "
            f"{a.loc[k].median_ms:.3f} ms ({100 * (a.loc[k].median_ms / b.loc[k].median_ms - 1):+.1f}%), host ahead "
            f"{b.loc[k].host_ahead_median_ms:.3f} -> {a.loc[k].host_ahead_median_ms:.3f}, host per call "
            f"{b.loc[k].host_ms_per_call:.2f} -> {a.loc[k].host_ms_per_call:.2f} ms "
            f"({a.loc[k].host_ms_per_call - b.loc[k].host_ms_per_call:+.2f})"
        )
        r = a.loc[k]
        floor = r.host_ahead_median_ms / r.host_ahead_floor_ratio
        print(
            f"  floor ratio as timed {r.floor_ratio:.3f} is "
            f"{100 * (r.floor_ratio / r.host_ahead_floor_ratio - 1):+.1f}% over host ahead "
            f"{r.host_ahead_floor_ratio:.3f}; host ahead the layer is {r.host_ahead_median_ms - floor:.3f} ms "
            f"over its floor ({floor:.3f} ms)"
        )
    kernel_resources(H200 / "rope" / "after" / "kernel_resources_triton36.log", "kernel resources Triton 3.6")
    counts = pd.read_csv(H200 / "host-work" / "host_work.csv")
    for _, r in counts[(counts["pass"] == "fwd+bwd") & (counts.stage == "total")].iterrows():
        print(
            f"host work counts {r.n // 1024}K fwd+bwd: {r.launches} launches, {r.allocs} allocations, {r.compute} "
            f"compute ops, {r.views} views, {r.syncs} syncs, {r.events} event calls"
        )
    h = pd.read_csv(H200 / "host-work" / "host_time.csv")
    for n, g in h.groupby("n"):
        t = g.set_index(["pass", "stage"]).host_ms
        print(
            f"host work {n // 1024}K: fwd+bwd {t['fwd+bwd', 'total']:.3f} ms of host issue per call (fwd "
            f"{t['fwd', 'total']:.3f}, bwd {t['bwd', 'total']:.3f}; 'other' {t['fwd', 'other']:.3f} + "
            f"{t['bwd', 'other']:.3f}"
            f" = {t['fwd', 'other'] + t['bwd', 'other']:.3f})"
        )


def cold_start_rows(folder: Path, tag: str) -> None:
    """One line per process of a cold_start.csv: import, first call, their sum (the cold-start figure), the
    precompile."""
    c = pd.read_csv(folder / "cold_start.csv")
    for _, r in c[c.status == "ok"].iterrows():
        state = r.get("precompile", "none (before step 18)")
        pre = state + (f" in {r.precompile_ms / 1e3:.2f} s" if state == "ready" else "")
        print(
            f"{tag} {r.phase} N={r.n // 1024}K k={r.topk} L={r.levels} {r.scorer}: import {r.import_ms / 1e3:.2f} s + first call "
            f"{r.first_call_ms / 1e3:.2f} s (fwd {r.first_fwd_ms / 1e3:.2f}, bwd {r.first_bwd_ms / 1e3:.2f}) = "
            f"{(r.import_ms + r.first_call_ms) / 1e3:.2f} s; precompile {pre}; Triton compile summed "
            f"{r.triton_compile_ms / 1e3:.2f} s ({r.kernels_compiled} kernels); second call {r.second_call_ms:.2f} ms"
        )


def first_call_split(folder: Path, tag: str) -> None:
    """first_call.py's rows: each variant's first call, the stock SDPA's first calls, and the layer's own stages."""
    d = pd.read_csv(folder / "first_call.csv")
    d = d[d.status == "ok"]
    for (variant, backend), g in d.groupby(["variant", "backend"], sort=False):
        first = g[g.call == "first"].set_index("stage").ms
        setup = g[g.call == "setup"].set_index("stage").ms
        sdpa = first[[s for s in first.index if s in ("sdpa", "sdpa_bwd") or s.startswith("dense_sdpa")]]
        tiny = first[[s for s in first.index if s.startswith("tiny")]]
        own = first.drop(sdpa.index).drop(tiny.index)
        print(
            f"{tag} {variant} {backend}: import {setup['import'] / 1e3:.2f} s, "
            f"CUDA context {setup.cuda_context:.0f} ms; "
            f"first call {first.sum():.0f} ms: stock SDPA "
            + ", ".join(f"{s} {v:.0f}" for s, v in sdpa.items())
            + (", " + ", ".join(f"{s} {v:.1f}" for s, v in tiny.items()) if len(tiny) else "")
            + f"; Lighthouse's own {own.sum():.0f} ms ("
            + ", ".join(f"{s} {v:.1f}" for s, v in own.items())
            + f"); second call {g[g.call == 'second'].ms.sum():.2f} ms"
        )


def gpu_tests(path: Path, tag: str) -> None:
    """pytest's summary line of a GPU test log, and the delivered share of each failed plant calibration."""
    import re

    text = path.read_text()
    print(f"{tag}: " + re.findall(r"^(\d+ (?:passed|failed).*) in [\d.]+s$", text, re.M)[-1])
    for name in re.findall(r"^FAILED (\S+)", text, re.M):
        print(f"{tag} failed: {name}")
    for got, want in re.findall(r"^E\s+assert ([\d.]+) == ([\d.]+) ± ", text, re.M):
        print(f"{tag} plant delivered {float(got):.2f}% for {float(want):g}% asked")


def compile_rows(folder: Path, tag: str) -> None:
    """cold_start.py's compile.csv: per process (phase, N), each kernel's compile or load time, shortest first."""
    k = pd.read_csv(folder / "compile.csv")
    for (phase, n), g in k.groupby(["phase", "n"], sort=False):
        print(
            f"{tag} {phase} N={n // 1024}K compiles: "
            + ", ".join(f"{r.kernel} {r.compile_ms:.0f}" for _, r in g.sort_values("compile_ms").iterrows())
            + " ms"
        )


def session4() -> None:
    """The fourth session (commit f497f54): PERF_NOTES step 18's precompiled cold start against the lazy one, the warm
    first call stage by stage, and step 17's RoPE after selection with the halves pooled in one pass."""
    cs = H200 / "coldstart"
    cold_start_rows(cs / "2026-12-03-s4", "s4 cold start precompile")
    cold_start_rows(cs / "2026-12-03-s4-lazy", "s4 cold start lazy")
    cold_start_rows(cs / "2026-12-03", "s2 cold start (before step 18)")
    compile_rows(cs / "2026-12-03-s4", "s4 cold start precompile")
    first_call_split(cs / "first-call-s4", "s4 first call")
    gpu_tests(cs / "2026-12-03-s4" / "gpu_tests.log", "s4 gpu tests")

    rope = H200 / "rope"
    rope_cost(rope / "post-halves", "s4 rope cost post-halves")
    rope_cost(rope / "after", "s3 rope cost after")
    new = pd.read_csv(rope / "post-halves-profile" / "profile.csv")
    old = pd.read_csv(rope / "profile-after" / "profile.csv")
    for clock in ("host_ahead_ms", "ms"):
        p, o = (t.set_index(["pass", "stage", "rope"])[clock].sort_index() for t in (new, old))
        for pas, stage in dict.fromkeys(zip(new["pass"], new.stage)):  # the profile's own order
            r, was = p[pas, stage], o[pas, stage]
            if pd.isna(r.pre):  # gpu_busy has no host-ahead figure
                continue
            print(
                f"s4 profile 96K {pas} {stage} [{clock}]: pre {r.pre:.3f}, post {r.post:.3f} ({r.post - r.pre:+.3f}); "
                f"third session pre {was.pre:.3f}, post {was.post:.3f} ({was.post - was.pre:+.3f})"
            )
    # each trace holds 3 fwd+bwd calls; per call the gather kernel runs the forward gather, then the backward's
    # fan-in, and the pull kernel the scatter, then the pooling backward (their launch order)
    roles = {"_gather_kernel": ("gather", "fan_in"), "_pull_kernel": ("scatter", "pool_bwd")}
    trace = "trace-n98304-k1536-L3-p4-norm-{}-B1-H8x8-D128-bf16-triton.json"
    pre, post = (trace_kernels(rope / "post-halves-profile" / trace.format(r)) for r in ("pre", "post"))
    for name in sorted(post):
        parts = roles.get(name, ("",))
        for i, role in enumerate(parts):
            a, b = pre[name][i :: len(parts)], post[name][i :: len(parts)]
            label = f"{name} ({role})" if role else name
            print(
                f"s4 trace kernel {label}: pre {statistics.mean(a):.1f} us, post {statistics.mean(b):.1f} us "
                f"a launch ({len(b)} launches)"
            )
    kernel_resources(rope / "post-halves" / "kernel_resources.txt", "s4 kernel resources Triton 3.6")
    kernel_resources(rope / "after" / "kernel_resources_triton36.log", "s3 kernel resources Triton 3.6")
    front = forward_front(rope / "post-halves-profile" / trace.format("pre"))
    for i, (wall, busy) in enumerate(front):
        print(
            f"s4 trace pre call {i + 1}: layer entry (or the GPU free) to the SDPA forward's start {wall:.0f} us, "
            f"GPU busy {busy:.0f} us of it, idle {wall - busy:.0f} us (profiled: the profiler slows the host)"
        )
    for i, (found, span) in enumerate(check_ops_in_front(rope / "post-halves-profile" / trace.format("pre"))):
        listed = ", ".join(f"{name} {us:.0f}" for name, us in found)
        print(
            f"s4 trace pre call {i + 1}: the finiteness check's host ops before the SDPA op (us): {listed}; "
            f"their sum {sum(us for _, us in found):.0f} of the {span:.0f} us from the layer's entry to the SDPA op"
        )


def session4b() -> None:
    """The fourth session's later calls: the cold start with the stock SDPA's first call beside the precompile
    (commit 72e856c, PERF_NOTES step 19), the gate's baseline re-recorded (72e856c), the post pull's launch shape
    tuned (d353cac's script) and made the default (d353cac: RoPE cost and profile, step 20), the check against the
    new baseline and the gate's proof inside the gather kernel (d353cac)."""
    cs = H200 / "coldstart"
    cold_start_rows(cs / "2026-12-03-s4-sdpa", "s4b cold start sdpa")
    rows = pd.read_csv(cs / "2026-12-03-s4-sdpa" / "cold_start.csv")
    print(
        "s4b cold start sdpa first backward: "
        + ", ".join(f"{r.phase} {r.n // 1024}K {r.first_bwd_ms:.1f} ms" for _, r in rows.iterrows())
    )
    compile_rows(cs / "2026-12-03-s4-sdpa", "s4b cold start sdpa")
    gpu_tests(cs / "2026-12-03-s4-sdpa" / "gpu_tests.log", "s4b gpu tests (plant calibration)")
    runs = {
        "s4b (SDPA warm-up, 72e856c)": cs / "2026-12-03-s4-sdpa",
        "s4 (precompile, f497f54)": cs / "2026-12-03-s4",
        "s2 (before step 18)": cs / "2026-12-03",
    }
    at = {name: pd.read_csv(f / "cold_start.csv").query("n == 98304 and status == 'ok'") for name, f in runs.items()}
    for phase in ("cold", "warm"):
        for name, d in at.items():
            r = d[d.phase == phase].iloc[0]
            pre = f", precompile {r.precompile_ms / 1e3:.2f} s" if "precompile_ms" in r else ""
            print(
                f"s4b 96K {phase} {name}: import {r.import_ms / 1e3:.3f} + first call {r.first_call_ms / 1e3:.3f} = "
                f"{(r.import_ms + r.first_call_ms) / 1e3:.2f} s; first fwd {r.first_fwd_ms / 1e3:.3f} s, "
                f"first bwd {r.first_bwd_ms:.1f} ms{pre}"
            )
    new = at["s4b (SDPA warm-up, 72e856c)"].set_index("phase")
    cold, warm = new.loc["cold"], new.loc["warm"]
    total = (cold.import_ms + cold.first_call_ms) / 1e3
    checks = [
        ("cold import + first call (target <= 10 s)", total, 0, 10),
        ("cold first call (step 19: 5-6 s)", cold.first_call_ms / 1e3, 5, 6),
        ("cold import + first call (step 19: 8.3-10 s)", total, 8.3, 10),
        ("cold precompile window (step 19: 3.3-4 s)", cold.precompile_ms / 1e3, 3.3, 4),
        ("warm first call (step 19: 2.3-3 s)", warm.first_call_ms / 1e3, 2.3, 3),
        ("warm first call (target <= 2 s)", warm.first_call_ms / 1e3, 0, 2),
    ]
    for what, got, lo, hi in checks:
        print(f"s4b 96K {what}: {got:.2f} s, {'inside' if lo <= got <= hi else 'OUTSIDE'}")

    # did the kernels' compiles and loads run beside the SDPA warm-up? Their listener times against the window
    was = at["s4 (precompile, f497f54)"].set_index("phase")
    fc = pd.read_csv(cs / "first-call-s4" / "first_call.csv")
    fc = fc[(fc.status == "ok") & (fc.variant == "stages") & (fc.backend == "cudnn") & (fc.call == "first")]
    sdpa_bwd = fc.set_index("stage").ms["sdpa_bwd"]
    for phase in ("cold", "warm"):
        for name, folder in list(runs.items())[:2]:
            kk = pd.read_csv(folder / "compile.csv").query(f"phase == '{phase}' and n == 98304")
            print(
                f"s4b 96K {phase} {name}: the kernels' compile or load "
                f"{kk.compile_ms.min():.0f}..{kk.compile_ms.max():.0f} ms each "
                f"(cache hits {int(kk.cache_hit.sum())} of {len(kk)})"
            )
        grew = new.loc[phase].precompile_ms - was.loc[phase].precompile_ms
        print(
            f"s4b 96K {phase} precompile window {new.loc[phase].precompile_ms:.0f} ms against "
            f"{was.loc[phase].precompile_ms:.0f} without the SDPA warm-up ({grew:+.0f}); the stock SDPA backward's "
            f"first call alone {sdpa_bwd:.0f} ms (first-call-s4, cuDNN); that plus the window without it "
            f"{sdpa_bwd + was.loc[phase].precompile_ms:.0f} ms"
        )

    # the gate's baseline re-recorded: each gated figure's median and spread over the 3 runs, from their results.csv
    figures = ["host_ahead_speedup_vs_sdpa_cudnn", "host_ahead_floor_ratio", "host_ms_per_call"]
    rec = pd.concat(
        pd.read_csv(H200 / "check" / "record-s4" / f"run-{i}" / "results.csv").assign(run=i) for i in (1, 2, 3)
    )
    rec = rec[rec.impl == "lighthouse_triton"]
    old = pd.read_csv(H200 / "check" / "gate-kernel-select" / "baseline.csv").set_index(["n", "batch"])
    for (n, batch), g in rec.groupby(["n", "batch"], sort=False):
        cells = []
        for f in figures:
            med = g[f].median()
            cells.append(
                f"{f} {med:.4g} (spread {100 * (g[f].max() - g[f].min()) / med:.2f}%; was {old.loc[(n, batch), f]:.4g})"
            )
        print(f"s4b record {n // 1024}K B{batch}: " + ", ".join(cells))

    rope = H200 / "rope"
    t = pd.read_csv(rope / "tune-pull" / "summary.csv")
    print(f"s4b tune pull: {len(t)} shapes; pre's pull {t.pull_pre_ms.iloc[0]:.4f} ms host ahead")
    for rank, (_, r) in enumerate(t.iterrows(), 1):
        if rank <= 5 or r["default"]:
            print(
                f"s4b tune pull rank {rank} {r['shape']}{' (the old default)' if r['default'] else ''}: "
                f"pull {r.pull_post_ms:.4f} ms host ahead, {r.pull_post_over_pre:.3f}x pre"
            )
    rounds = pd.read_csv(rope / "tune-pull" / "tune_pull_post.csv")
    lay = rounds[rounds.stage == "layer"]
    base = lay[lay.rope == "pre"].set_index("round")
    for _, r in t[t.layer_post_over_pre.notna()].iterrows():
        mine = lay[(lay.rope == "post") & (lay["shape"] == r["shape"])].set_index("round")
        ahead = (mine.host_ahead_ms / base.host_ahead_ms).median()
        launched = (mine.median_ms / base.median_ms).median()
        tag = "winner" if r.winner else "old default" if r["default"] else "finalist"
        print(
            f"s4b tune layer {tag} {r['shape']}: fwd+bwd post/pre {r.layer_post_over_pre:.4f} host ahead, "
            f"{r.layer_post_over_pre_launched:.4f} as launched (summary.csv); from the {len(mine)} rounds "
            f"{ahead:.4f} / {launched:.4f}"
        )
    rope_cost(rope / "post-tuned", "s4b rope cost post-tuned")
    for folder in ("post-tuned", "post-halves", "after", "."):
        s4 = pd.read_csv(rope / folder / "rope_cost_summary.csv").set_index("pass")
        print(f"s4b rope cost fwd+bwd post/pre in {folder}/: {s4.loc['fwdbwd'].post_over_pre:.4f}")
    prof = {f: pd.read_csv(rope / f / "profile.csv") for f in ("post-tuned-profile", "post-halves-profile")}
    for folder, d in prof.items():
        p = d.set_index(["pass", "stage", "rope"]).sort_index()
        for pas, stage in (("bwd", "pool_bwd"), ("fwd", "gather"), ("bwd", "total"), ("fwd", "total")):
            pre, post = p.loc[(pas, stage, "pre")], p.loc[(pas, stage, "post")]
            print(
                f"s4b profile {folder} {pas} {stage}: host ahead pre {pre.host_ahead_ms:.4f}, post "
                f"{post.host_ahead_ms:.4f} ({post.host_ahead_ms - pre.host_ahead_ms:+.4f}, "
                f"{post.host_ahead_ms / pre.host_ahead_ms:.2f}x); as launched pre "
                f"{pre.ms:.4f}, post {post.ms:.4f}"
            )

    chk = H200 / "check" / "check-after-s4"
    c = pd.read_csv(chk / "check.csv")
    gated = c[c.verdict != "not gated"]
    timed = gated[~gated.figure.str.startswith("parity")]
    change = pd.to_numeric(timed.change_pct)
    print(
        f"s4b check after: {len(gated)} gated figures, {(gated.verdict == 'ok').sum()} ok, "
        f"{(gated.verdict == 'REGRESSED').sum()} regressed; timed figures' change "
        f"{change.min():+.1f}..{change.max():+.1f}% ({len(timed)} figures)"
    )
    big = timed.loc[change.abs().idxmax()]
    print(f"s4b check after: the largest change {big.change_pct}% is {big.figure} of {big.point}")
    gpu_tests(chk / "gpu_tests.log", "s4b gpu tests (tests/ops)")

    gather = H200 / "check" / "gate-kernel-gather"
    gate(gather, "s4b gate gather", "s4b gate gather calibration")
    d = pd.read_csv(gather / "slowdowns.csv")
    d = d[d.figure != "host_ms_per_call"]
    for (pct, point), g in d.groupby(["planted_pct", "point"], sort=False):
        failed = g.groupby("judgment").verdict.apply(lambda v: (v == "REGRESSED").any())
        print(
            f"s4b gate gather {pct}% {point.split(' n=')[1]}: delivered {g.delivered_pct.iloc[0]:.2f}%, failed in "
            f"{int(failed.sum())} of {len(failed)} judgments; the check's layer change "
            f"{g.layer_host_ahead_change_pct.min():+.1f}..{g.layer_host_ahead_change_pct.max():+.1f}%; "
            f"worst figure change {pd.to_numeric(g.change_pct).abs().max():.1f}%"
        )


def check_ops_in_front(path: Path) -> list:
    """Per forward in a profile's trace: the host ops of the finiteness check before the sub-sequence SDPA's op
    (PERF_NOTES step 21): (name, us) of each aten::copy_ (a word's copy to pinned memory), aten::sum (the v screen)
    and CUDA event record, in order, and the span from the layer's entry to the SDPA op."""
    events = json.loads(path.read_text())["traceEvents"]
    ops = sorted((e for e in events if e.get("cat") in ("cpu_op", "cuda_runtime")), key=lambda e: e["ts"])
    out = []
    for call in sorted((e for e in events if e.get("name") == "LighthouseFunction"), key=lambda e: e["ts"]):
        sdpa = next(e for e in ops if e["ts"] > call["ts"] and e["name"] == "aten::scaled_dot_product_attention")
        found, end = [], 0.0
        for e in ops:  # outermost ops only: an aten::sum holds an inner aten::sum
            names = ("aten::copy_", "aten::sum", "cudaEventRecordWithFlags", "cudaEventRecord")
            if call["ts"] <= e["ts"] < sdpa["ts"] and e["name"] in names and e["ts"] >= end:
                found.append((e["name"], e["dur"]))
                end = e["ts"] + e["dur"]
        out.append((found, sdpa["ts"] - call["ts"]))
    return out


def forward_front(path: Path) -> list:
    """Per forward in a profile's trace: (us from the layer's entry, the LighthouseFunction op, or from the end of the
    GPU work queued before it if later, to the start of the sub-sequence SDPA kernel; us of it the GPU ran kernels,
    copies or sets). What the host issues before the SDPA
    is short GPU work (scores, select, gather), so the rest of that span is the GPU waiting for the host."""
    events = json.loads(path.read_text())["traceEvents"]
    gpu = sorted((e for e in events if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")), key=lambda e: e["ts"])
    out = []
    for call in sorted((e for e in events if e.get("name") == "LighthouseFunction"), key=lambda e: e["ts"]):
        # from the entry, or from where the GPU finished the work queued before it (a host that was ahead)
        start = max([call["ts"]] + [e["ts"] + e["dur"] for e in gpu if e["ts"] < call["ts"]])
        sdpa = next(e for e in gpu if e["ts"] > start and "sdpa" in e["name"] and "fprop" in e["name"])
        busy = sum(e["dur"] for e in gpu if start <= e["ts"] < sdpa["ts"])
        out.append((sdpa["ts"] - start, busy))
    return out


def sdpa_first(folder: Path, tag: str) -> None:
    """sdpa_first_call.py's rows: per variant, each timed step in ms."""
    d = pd.read_csv(folder / "sdpa_first_call.csv")
    for variant, g in d[d.status == "ok"].groupby("variant", sort=False):
        steps = g[~g.step.isin(["import_torch", "cuda_init"])]
        print(f"{tag} {variant}: " + ", ".join(f"{r.step} {r.ms:.0f}" for _, r in steps.iterrows()) + " ms")


def host_per_call(folder: Path, tag: str) -> None:
    """host_work.py's host_time.csv: the host's time to issue one warm fwd+bwd, and its forward's front stages."""
    t = pd.read_csv(folder / "host_time.csv").set_index(["n", "pass", "stage"]).host_ms
    for n in sorted({i[0] for i in t.index}):
        front = sum(t[(n, "fwd", st)] for st in ("other", "scores", "select", "gather", "sdpa"))
        print(
            f"{tag} N={n // 1024}K: host per fwd+bwd {t[(n, 'fwd+bwd', 'total')]:.3f} ms (fwd {t[(n, 'fwd', 'total')]:.3f},"
            f" bwd {t[(n, 'bwd', 'total')]:.3f}); fwd entry to the SDPA's launch (other, scores, select, gather, sdpa)"
            f" {front:.3f} ms"
        )


def passkey_rope() -> None:
    """issue 22: the two-stage recipe once per RoPE placement (both at once), then passkey on the saved models."""
    rope = H200 / "passkey" / "rope"
    for placement in ("pre", "post"):
        c = pd.read_csv(rope / f"train-{placement}" / "curve.csv")
        final = c.dropna(subset=["val_loss"]).groupby("arm").last()
        ltd, dense = final.loc["lighthouse-then-dense"], final.loc["dense"]
        print(
            f"passkey rope train {placement}: {int(c.step.max())} steps per arm; final validation loss "
            f"lighthouse-then-dense {ltd.val_loss:.4f}, dense {dense.val_loss:.4f} "
            f"({100 * (ltd.val_loss / dense.val_loss - 1):+.2f}%)"
        )
    for sub in ("passkey-rope", "passkey-rope-lighthouse"):
        d = pd.read_csv(rope / sub / "passkey.csv")
        for (model, attention), g in d.groupby(["model", "attention"], sort=False):
            ok = g[g.status == "ok"]
            print(
                f"passkey rope {Path(model).parent.name.replace('models-', '')}/{Path(model).name} ({attention}): "
                f"{len(ok)} ok cells of {len(g)} (others: {', '.join(sorted(set(g[g.status != 'ok'].status))) or 'none'}); "
                f"best exact-match {ok.exact_acc.max():.2f}; digit accuracy mean {ok.digit_acc.mean():.3f} max "
                f"{ok.digit_acc.max():.2f}; digit-only mean {ok.digit_only_acc.mean():.3f} max {ok.digit_only_acc.max():.2f};"
                f" above chance in {int(ok.above_chance.astype(str).str.lower().eq('true').sum())} cells"
            )


def check_summary(folder: Path, tag: str) -> None:
    """A check.csv: how many gated figures held, and each regression with its limit."""
    c = pd.read_csv(folder / "check.csv")
    gated = c[c.verdict.isin(["ok", "REGRESSED"])]
    print(f"{tag}: {int((gated.verdict == 'ok').sum())} of {len(gated)} gated figures ok")
    for _, r in gated[gated.verdict == "REGRESSED"].iterrows():
        print(f"{tag} regressed: {r.point} {r.figure} {r.baseline} -> {r.now} ({r.change_pct:+.1f}%); {r.note}")


def session5() -> None:
    """The fifth session (commits 300cd20 to 7565226; each folder's README names its own)."""
    clocks(H200 / "clocks-after", "s5 step 21 before (s3, clocks-after)")
    clocks(H200 / "clocks-s5", "s5 step 21 after (clocks-s5)")
    clocks(H200 / "clocks-s5-vjp", "s5 after vjp (clocks-s5-vjp)")
    for folder in ("clocks-after", "clocks-s5", "clocks-s5-vjp"):
        d = pd.read_csv(H200 / folder / "results.csv")
        r = d[(d.impl == "lighthouse_triton") & (d.n == 98304)].iloc[0]
        print(f"s5 96K idle as timed ({folder}): {r.median_ms - r.host_ahead_median_ms:.3f} ms")
    front = forward_front(
        H200 / "profile" / "s5-step21" / "trace-n98304-k1536-L3-p4-norm-pre-B1-H8x8-D128-bf16-triton.json"
    )
    for i, (span, busy) in enumerate(front):
        print(f"s5 trace pre call {i}: entry to SDPA start {span:.0f} us, GPU busy {busy:.0f} us of it")
    host_per_call(H200 / "host-work", "s5 host work before (s3)")
    host_per_call(H200 / "host-work" / "s5", "s5 host work after step 21")
    for v in ("vjp-1", "autograd-grad", "vjp-2"):
        host_per_call(H200 / "host-work" / "vjp-ab" / v, f"s5 vjp A/B {v}")
    sdpa_first(H200 / "coldstart" / "sdpa-first-call-s5", "s5 sdpa first")
    sdpa_first(H200 / "coldstart" / "sdpa-first-profiled", "s5 sdpa first profiled")
    sdpa_first(H200 / "coldstart" / "sdpa-first-scalar", "s5 sdpa first scalar")
    cold_start_rows(H200 / "coldstart" / "2026-12-03-s4-sdpa", "s5 before (s4-sdpa)")
    cold_start_rows(H200 / "coldstart" / "2026-12-03-s5", "s5 after vjp")
    compile_rows(H200 / "coldstart" / "2026-12-03-s5", "s5 after vjp")
    first_call_split(H200 / "coldstart" / "first-call-s5", "s5 first call")
    passkey_rope()
    check_summary(H200 / "check" / "check-after-s5-first", "s5 check, first run")
    check_summary(H200 / "check" / "check-after-s5", "s5 check, second run")


if __name__ == "__main__":
    rope_cost()
    paper_530m()
    paper_530m_shares()
    needles()
    clocks()
    gqa()
    rope_profile()
    cold_start()
    gate()
    stage_shift()
    session3()
    session4()
    session4b()
    session5()
