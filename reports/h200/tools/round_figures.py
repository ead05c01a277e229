"""Every figure quoted from the H200 runs of issues 10-16 (reports/h200/{train,coldstart,check,quality,passkey,
graphs}, reports/baselines/nvidia-h200.csv), recomputed from the committed CSVs, so that READMEs, PERF_NOTES and
notes cite numbers a script made rather than numbers copied by eye. ROUND-10-16.md says which call made which
folder; the second session's folders are printed by the functions after `quality`.

    python reports/h200/tools/round_figures.py
"""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from pathlib import Path

H200 = Path(__file__).resolve().parents[1]  # reports/h200, the data these figures come from


def rows(path: Path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def train() -> None:
    print("== train (reports/h200/train/throughput/train.csv)")
    for r in rows(H200 / "train" / "throughput" / "train.csv"):
        tag = r["attention"] + (
            "" if r["attention"] == "dense" else f" k={r['topk']}" + (" no-recompute" if r["recompute"] == "0" else "")
        )
        print(
            f"  N={r['n']:>7} {tag:<28} {r['status']:<3} tokens/s={r['tokens_per_s']:>9} speedup={r['speedup_vs_dense'] or '-':>7} "
            f"step_ms={r['median_step_ms']:>9} attention_share={r['attention_share']:>8} peak_GiB={r['peak_mem_gib']:>8} "
            f"mfu={r['mfu']:>8} first_step_s={r['first_step_s']}"
        )
    at98 = {
        (r["attention"], r["recompute"]): r
        for r in rows(H200 / "train" / "throughput" / "train.csv")
        if r["n"] == "98304"
    }
    d, lh = at98[("dense", "")], at98[("lighthouse", "1")]
    print(
        f"  98K over the timed steps' p20-p80: dense {float(d['p20_step_ms']):.0f}-{float(d['p80_step_ms']):.0f} ms, "
        f"Lighthouse {float(lh['p20_step_ms']):.0f}-{float(lh['p80_step_ms']):.0f} ms ({d['steps']} and {lh['steps']} steps): "
        f"speedup {float(d['p20_step_ms']) / float(lh['p80_step_ms']):.3f}-{float(d['p80_step_ms']) / float(lh['p20_step_ms']):.3f}x"
    )
    curve = rows(H200 / "train" / "recipe" / "curve.csv")
    for arm in ("lighthouse-then-dense", "dense"):
        mine = [r for r in curve if r["arm"] == arm]
        final = [r for r in mine if r["val_loss"]][-1]
        switch = [r for r in mine if r["attention"] == "dense"]
        print(
            f"  recipe {arm}: final val_loss={float(final['val_loss']):.4f} steps={final['step']} "
            f"wall_s={float(final['elapsed_s']):.1f} first dense step={switch[0]['step'] if switch else '-'}"
        )
    a = [float(r["val_loss"]) for r in curve if r["arm"] == "lighthouse-then-dense" and r["val_loss"]][-1]
    d = [float(r["val_loss"]) for r in curve if r["arm"] == "dense" and r["val_loss"]][-1]
    print(f"  recipe gap: {100 * (a / d - 1):+.2f}% validation loss")


def coldstart() -> None:
    print("== cold start (reports/h200/coldstart/cold_start.csv)")
    for r in rows(H200 / "coldstart" / "cold_start.csv"):
        if r["status"] == "ok":
            print(
                f"  {r['phase']:<4} N={r['n']:>7} k={r['topk']} L={r['levels']}: first call {float(r['first_call_ms']) / 1e3:.2f} s "
                f"(fwd {float(r['first_fwd_ms']) / 1e3:.2f}, bwd {float(r['first_bwd_ms']) / 1e3:.2f}), "
                f"triton compile {float(r['triton_compile_ms']) / 1e3:.2f} s over {r['kernels_compiled']} kernels"
            )
    print("== small N (reports/h200/coldstart/small_n.csv)")
    for r in rows(H200 / "coldstart" / "small_n.csv"):
        print(
            f"  N={r['n']:>7} k={r['topk'] or '-':>5} {r['impl']:<22} median {r['median_ms']} ms  vs cuDNN {r['speedup_vs_cudnn'] or '-'}"
        )
    print("== N = 1M (reports/h200/coldstart/one_m.csv)")
    for r in rows(H200 / "coldstart" / "one_m.csv"):
        print(
            f"  L={r['levels'] or '-'} {r['impl']:<18} median {r['median_ms']} ms  peak {r['peak_gib']} GiB  speedup {r['speedup_vs_cudnn']}"
        )


def gate() -> None:
    print("== planted slowdowns (reports/h200/check/gate-slowdowns/slowdowns.csv)")
    table = rows(H200 / "check" / "gate-slowdowns" / "slowdowns.csv")
    by_level = defaultdict(dict)
    for r in table:
        key = (r["judgment"], r["point"].split(" n=")[1].split()[0])
        by_level[r["planted_pct"]].setdefault(r["judgment"], {"exit": r["exit_code"], "layer": {}})["layer"][key[1]] = (
            r["layer_ms_change_pct"]
        )
    for pct in sorted(by_level, key=float):
        for j, info in sorted(by_level[pct].items()):
            changes = ", ".join(f"N={n}: {c}%" for n, c in info["layer"].items())
            print(f"  planted {pct:>2}% judgment {j}: exit {info['exit']}; measured layer time change {changes}")
    for r in rows(H200 / "check" / "gate-slowdowns" / "baseline.csv"):
        print(
            f"  baseline N={r['n']}: speedup_vs_sdpa_cudnn {float(r['speedup_vs_sdpa_cudnn']):.3f} "
            f"(spread {100 * float(r['speedup_vs_sdpa_cudnn_spread']):.1f}%), floor_ratio {float(r['floor_ratio']):.3f}, "
            f"median {float(r['median_ms']):.3f} ms over {r['runs']} runs"
        )


def quality() -> None:
    print("== quality (reports/h200/quality/n*/quality/quality.csv)")
    for n in ("16k", "64k", "96k", "128k"):
        q = [r for r in rows(H200 / "quality" / f"n{n}" / "quality" / "quality.csv") if r["status"] == "ok"]
        s = rows(H200 / "quality" / f"n{n}" / "sweep" / "results.csv")
        lh = [r for r in s if r["kind"] == "lighthouse"]
        print(
            f"  N={n}: quality rows ok={len(q)}; sweep Lighthouse rows ok={sum(r['status'] == 'ok' for r in lh)} "
            f"invalid={sum(r['status'] == 'invalid' for r in lh)}"
        )
        for scorer in ("norm", "dilated", "gla"):
            needle = [float(r["needle_recall"]) for r in q if r["inputs"] == "needle" and r["scorer"] == scorer]
            perfect = [
                f"L{r['levels']}p{r['pooling']}k{r['topk']}"
                for r in q
                if r["inputs"] == "needle" and r["scorer"] == scorer and float(r["needle_recall"]) >= 0.9
            ]
            dense = {r["dense_needle_recall"] for r in q if r["inputs"] == "needle"}
            print(
                f"    {scorer:<8} needle recall mean {statistics.mean(needle):.3f} min {min(needle):.3f} max {max(needle):.3f} "
                f"over {len(needle)} configs; >= 0.9: {len(perfect)} ({', '.join(sorted(set(p[:4] for p in perfect)))}); "
                f"dense recall {sorted(dense)}"
            )


def quality_time() -> None:
    """How long the quality grid took on the device: first to last finished row over the four N."""
    stamps = sorted(
        r["finished_at"]
        for n in ("16k", "64k", "96k", "128k")
        for r in rows(H200 / "quality" / f"n{n}" / "quality" / "quality.csv")
        if r.get("finished_at")
    )
    secs = sum(
        float(r["seconds"])
        for n in ("16k", "64k", "96k", "128k")
        for r in rows(H200 / "quality" / f"n{n}" / "quality" / "quality.csv")
        if r.get("seconds")
    )
    print(
        f"== quality grid time: rows finished from {stamps[0]} to {stamps[-1]} ({len(stamps)} rows); "
        f"the rows' own seconds add up to {secs:.0f} s"
    )


def recipe(folder: str) -> None:
    """Two-stage recipe: each arm's final validation loss and wall time, and the Lighthouse arm around its switch."""
    print(f"== two-stage recipe (reports/h200/train/{folder}/curve.csv)")
    curve = rows(H200 / "train" / folder / "curve.csv")
    arms = defaultdict(list)
    for r in curve:
        arms[r["arm"]].append(r)
    final = {}
    for arm, rs in arms.items():
        last = rs[-1]
        final[arm] = float(last["val_loss"])
        print(f"  {arm}: final val_loss={final[arm]:.4f} steps={last['step']} wall_s={float(last['elapsed_s']):.1f}")
    lh = arms["lighthouse-then-dense"]
    switch = next(i for i, r in enumerate(lh) if r["attention"] == "dense")
    before = [r for r in lh[:switch] if r["val_loss"]][-1]
    after = next(r for r in lh[switch:] if r["val_loss"])
    dense_same = [r for r in arms["dense"] if r["val_loss"] and int(r["step"]) <= int(before["step"])][-1]
    print(
        f"  switch after step {before['step']}: Lighthouse val_loss {float(before['val_loss']):.4f} "
        f"(dense arm at step {dense_same['step']} {float(dense_same['val_loss']):.4f}, "
        f"{100 * (float(before['val_loss']) / float(dense_same['val_loss']) - 1):+.1f}%); "
        f"first dense evaluation (step {after['step']}) {float(after['val_loss']):.4f}; lr at switch {float(before['lr']):.2e}"
    )
    print(f"  gap: {100 * (final['lighthouse-then-dense'] / final['dense'] - 1):+.2f}% validation loss")


def longest() -> None:
    print("== longest N (reports/h200/train/longest-1m/train.csv)")
    for r in rows(H200 / "train" / "longest-1m" / "train.csv"):
        print(
            f"  N={r['n']} {r['attention']} {r['status']} tokens/s={float(r['tokens_per_s']):.0f} "
            f"step_s={float(r['median_step_ms']) / 1e3:.1f} peak_GiB={float(r['peak_mem_gib']):.1f} "
            f"attention_share={float(r['attention_share']):.2f} mfu={float(r['mfu']):.2f} first_step_s={float(r['first_step_s']):.0f}"
        )
    import json

    info = json.loads((H200 / "train" / "longest-1m" / "machine.json").read_text())
    print(f"  GPU memory {info['gpu_memory_gib']} GiB ({info['gpu']})")


def passkey() -> None:
    print("== passkey (reports/h200/passkey/pk/passkey.csv)")
    table = [r for r in rows(H200 / "passkey" / "pk" / "passkey.csv")]
    groups = defaultdict(list)
    for r in table:
        groups[(r["model"].rsplit("/", 1)[-1], r["attention"])].append(r)
    for (model, attention), rs in sorted(groups.items()):
        ok = [r for r in rs if r["status"] == "ok"]
        exact = [float(r["exact_acc"]) for r in ok]
        digit = [float(r["digit_acc"]) for r in ok]
        print(
            f"  {model} ({attention}): {len(ok)} ok cells, {sum(r['status'] == 'invalid' for r in rs)} invalid; "
            f"best exact-match {max(exact):.2f}, best digit accuracy {max(digit):.2f}, mean digit accuracy "
            f"{statistics.mean(digit):.3f}; cells above chance {sum(r['above_chance'] in ('1', 'True') for r in ok)}"
        )


def first_call() -> None:
    print("== warm first call by stage (reports/h200/coldstart/first-call/first_call*.csv)")
    folder = H200 / "coldstart" / "first-call"
    for name in ("first_call.csv", "first_call-autograd.csv"):
        by_variant = defaultdict(list)
        for r in rows(folder / name):
            if r["status"] == "ok":
                by_variant[(r["variant"], r["backend"])].append(r)
        for (variant, backend), rs in by_variant.items():
            first = [r for r in rs if r["call"] == "first"]
            total = sum(float(r["ms"]) for r in first)
            parts = ", ".join(f"{r['stage']} {float(r['ms']):.0f}" for r in first)
            other = sum(
                float(r["ms"])
                for r in first
                if r["stage"] not in ("scores", "sdpa_bwd") and not r["stage"].startswith(("dense_sdpa", "tiny"))
            )
            print(
                f"  {variant} {backend}: first call {total:.0f} ms ({parts}); the layer's stages or calls other "
                f"than scores and the SDPA backward: {other:.0f} ms"
            )


def graphs() -> None:
    print("== CUDA graphs, small N (reports/h200/coldstart/graphs/{plain,graphed}/small_n.csv, separate processes)")
    plain = {(r["n"], r["topk"], r["impl"]): r for r in rows(H200 / "coldstart" / "graphs" / "plain" / "small_n.csv")}
    graphed = {
        (r["n"], r["topk"], r["impl"]): r for r in rows(H200 / "coldstart" / "graphs" / "graphed" / "small_n.csv")
    }
    for key, g in graphed.items():
        if g["impl"] != "lighthouse_triton":
            continue
        n, topk, _ = key
        p = plain[key]
        dense_p = float(plain[(n, "", "sdpa_cudnn")]["median_ms"])
        dense_g = float(graphed[(n, "", "sdpa_cudnn")]["median_ms"])
        print(
            f"  N={n:>6} k={topk:>4}: plain {float(p['median_ms']):.3f} ms ({dense_p / float(p['median_ms']):.2f}x plain cuDNN "
            f"{dense_p:.3f} ms; host issue {float(p['host_issue_ms']):.3f} ms), graphed {float(g['median_ms']):.3f} ms "
            f"({dense_g / float(g['median_ms']):.2f}x graphed cuDNN {dense_g:.3f} ms, {dense_p / float(g['median_ms']):.2f}x "
            f"plain cuDNN; host issue {float(g['host_issue_ms']):.3f} ms)"
        )
    print("== CUDA graphs through the sweep (reports/h200/graphs/sweep-{graphed,plain}/results.csv)")
    for name in ("sweep-plain", "sweep-graphed"):
        for r in rows(H200 / "graphs" / name / "results.csv"):
            if r["kind"] == "lighthouse" and r["status"] == "ok":
                print(
                    f"  {name}: N={r['n']} k={r['topk']} {float(r['median_ms']):.3f} ms, "
                    f"{float(r['speedup_vs_sdpa_cudnn']):.2f}x cuDNN (same mode), floor ratio {float(r['floor_ratio']):.2f}"
                )
            elif r["kind"] == "dense" and r["status"] == "ok":
                print(f"  {name}: N={r['n']} dense cuDNN {float(r['median_ms']):.3f} ms")


def _level_summary(pct: str, lv: dict) -> str:
    """One planted level of a slowdowns.csv: its exit codes by judgment, the layer time change measured per N."""
    exits = [lv["exits"][j] for j in sorted(lv["exits"])]
    ranges = "; ".join(
        f"N={n}: {min(c):+.1f}..{max(c):+.1f}%" for n, c in sorted(lv["layer"].items(), key=lambda x: int(x[0]))
    )
    return f"  planted {pct:>2}%: exit codes {', '.join(exits)}; measured layer time change {ranges}"


def gate3() -> None:
    print("== planted slowdowns, 3 judgments (reports/h200/check/gate-slowdowns-3x/slowdowns.csv)")
    table = rows(H200 / "check" / "gate-slowdowns-3x" / "slowdowns.csv")
    levels = defaultdict(lambda: {"exits": {}, "layer": defaultdict(list)})
    for r in table:
        n = r["point"].split(" n=")[1].split()[0]
        lv = levels[r["planted_pct"]]
        lv["exits"][r["judgment"]] = r["exit_code"]
        if r["figure"] == "speedup_vs_sdpa_cudnn":
            lv["layer"][n].append(float(r["layer_ms_change_pct"]))
    for pct in sorted(levels, key=float):
        lv = levels[pct]
        print(_level_summary(pct, lv))
    first = {r["n"]: float(r["median_ms"]) for r in rows(H200 / "check" / "gate-slowdowns" / "baseline.csv")}
    for r in rows(H200 / "check" / "gate-slowdowns-3x" / "baseline.csv"):
        print(
            f"  N={r['n']}: median {first[r['n']]:.3f} ms in the first session's baseline -> {float(r['median_ms']):.3f} ms "
            f"({100 * (float(r['median_ms']) / first[r['n']] - 1):+.1f}%)"
        )
    for r in rows(H200 / "check" / "gate-slowdowns-3x" / "baseline.csv"):
        print(
            f"  baseline N={r['n']}: speedup_vs_sdpa_cudnn {float(r['speedup_vs_sdpa_cudnn']):.3f} "
            f"(spread {100 * float(r['speedup_vs_sdpa_cudnn_spread']):.1f}%), floor_ratio {float(r['floor_ratio']):.3f} "
            f"(spread {100 * float(r['floor_ratio_spread']):.1f}%), median {float(r['median_ms']):.3f} ms over {r['runs']} runs"
        )


def checkpoint_quality(folder: str = "checkpoint-16k") -> None:
    """Third session: quality on the q, k, v captured from the two `mid` models of train/recipe-0.75-saved
    (quality/checkpoint-16k) and of train/recipe-0.75-saved-2 (quality/checkpoint-16k-2)."""
    from lighthouse.harness.tables import QUALITY, read_rows
    from lighthouse.quality.summary import checkpoint_table

    path = H200 / "quality" / folder / "quality.csv"
    table = rows(path)
    print(
        f"== quality on checkpoint inputs ({path.relative_to(H200.parent.parent)}): "
        f"{sum(r['status'] == 'ok' for r in table)} ok, {sum(r['status'] == 'invalid' for r in table)} invalid rows"
    )
    headers, body = checkpoint_table(read_rows(path, QUALITY)[0])
    for line in body:
        print("  " + "; ".join(f"{h}={v}" for h, v in zip(headers, line)))
    ok = [r for r in table if r["status"] == "ok"]
    for model in sorted({r["inputs"] for r in ok}):
        per_layer = defaultdict(list)
        for r in ok:
            if r["inputs"] == model:
                per_layer[int(r["layer"])].append(float(r["cos_median"]))
        print(
            f"  {model.rsplit('/', 1)[-1]}: per-layer median of cos_median over configurations and scorers: "
            + ", ".join(f"{lay}: {statistics.median(v):.3f}" for lay, v in sorted(per_layer.items()))
        )
        train_cfg = [
            r for r in ok if r["inputs"] == model and (r["levels"], r["pooling"], r["topk"]) == ("3", "4", "512")
        ]
        for scorer in ("norm", "dilated", "gla"):
            sel = [r for r in train_cfg if r["scorer"] == scorer]
            print(
                f"    training configuration L=3 p=4 k=512 {scorer}: cos_median {min(float(r['cos_median']) for r in sel):.3f}"
                f"..{max(float(r['cos_median']) for r in sel):.3f} over layers; out_rel_err "
                f"{min(float(r['out_rel_err']) for r in sel):.3f}..{max(float(r['out_rel_err']) for r in sel):.3f}"
            )


def passkey_digit_only() -> None:
    print("== passkey with the digit-only score (reports/h200/passkey/pk-digit-only/passkey.csv)")
    groups = defaultdict(list)
    for r in rows(H200 / "passkey" / "pk-digit-only" / "passkey.csv"):
        groups[(r["model"].rsplit("/", 1)[-1], r["attention"])].append(r)
    for (model, attention), rs in sorted(groups.items()):
        ok = [r for r in rs if r["status"] == "ok"]
        only = [float(r["digit_only_acc"]) for r in ok]
        print(
            f"  {model} ({attention}): {len(ok)} ok cells; best exact-match {max(float(r['exact_acc']) for r in ok):.2f}; "
            f"digit accuracy mean {statistics.mean(float(r['digit_acc']) for r in ok):.3f} max "
            f"{max(float(r['digit_acc']) for r in ok):.2f}; digit-only accuracy mean {statistics.mean(only):.3f} "
            f"min {min(only):.2f} max {max(only):.2f}; smallest p_chance {min(float(r['p_chance']) for r in ok):.4f}; "
            f"cells above chance {sum(r['above_chance'] in ('1', 'True') for r in ok)}"
        )


def gate_third(folder: str) -> None:
    """Third session's planted slowdowns: exit codes per level, the measured layer change, the fresh baseline."""
    print(f"== planted slowdowns (reports/h200/check/{folder}/slowdowns.csv)")
    levels = defaultdict(
        lambda: {"exits": {}, "layer": defaultdict(list), "failed": defaultdict(set), "worst": defaultdict(dict)}
    )
    for r in rows(H200 / "check" / folder / "slowdowns.csv"):
        n = r["point"].split(" n=")[1].split()[0]
        lv = levels[r["planted_pct"]]
        adverse = float(r["change_pct"]) * (1 if r["figure"] == "floor_ratio" else -1)  # > 0: slower
        if adverse > lv["worst"][n].get(r["figure"], (None, None, float("-inf")))[2]:
            lv["worst"][n][r["figure"]] = (float(r["change_pct"]), r["limit"], adverse)
        lv["exits"][r["judgment"]] = r["exit_code"]
        if r["figure"] == "speedup_vs_sdpa_cudnn":
            lv["layer"][n].append(float(r["layer_ms_change_pct"]))
        if r["verdict"] == "REGRESSED":
            lv["failed"][r["judgment"]].add(f"N={n} {r['figure']} {r['change_pct']}% (limit {r['limit']})")
    for pct in sorted(levels, key=float):
        lv = levels[pct]
        print(_level_summary(pct, lv))
        for j, failed in sorted(lv["failed"].items()):
            print(f"    judgment {j} regressed: {', '.join(sorted(failed))}")
        for n, worst in sorted(lv["worst"].items(), key=lambda x: int(x[0])):
            print(
                f"    N={n} most adverse change per figure: "
                + ", ".join(f"{fig} {chg:+.1f}% (limit {lim})" for fig, (chg, lim, _) in sorted(worst.items()))
            )
    for r in rows(H200 / "check" / folder / "baseline.csv"):
        print(
            f"  baseline N={r['n']} batch {r['batch']}: speedup_vs_sdpa_cudnn {float(r['speedup_vs_sdpa_cudnn']):.3f} "
            f"(spread {100 * float(r['speedup_vs_sdpa_cudnn_spread']):.1f}%), median {float(r['median_ms']):.3f} ms "
            f"(dense cuDNN {float(r['dense_median_ms']):.3f} ms) over {r['runs']} runs"
        )


def gate_all_runs() -> None:
    """The four gate runs together: unplanted movement of each point's speedup over cuDNN against its own
    baseline median (baseline runs, unplanted judgments and their repeats), the 16K spreads, and per GPU-bound
    point how the verdict followed the measured layer change."""
    import glob

    folders = ("gate-slowdowns", "gate-slowdowns-3x", "gate-ramped", "gate-host")
    print("== the four gate runs together (reports/h200/check/{" + ",".join(folders) + "})")
    moved = defaultdict(list)
    for folder in folders:
        base = {r["n"]: float(r["speedup_vs_sdpa_cudnn"]) for r in rows(H200 / "check" / folder / "baseline.csv")}
        paths = sorted(glob.glob(str(H200 / "check" / folder / "record" / "run-*" / "results.csv")))
        paths += sorted(glob.glob(str(H200 / "check" / folder / "planted-0-*" / "results.csv")))
        paths += sorted(glob.glob(str(H200 / "check" / folder / "planted-0-*" / "repeat-*" / "results.csv")))
        for path in paths:
            for r in rows(Path(path)):
                if r.get("kind") == "lighthouse" and r["status"] == "ok" and r.get("speedup_vs_sdpa_cudnn"):
                    moved[r["n"]].append(100 * (float(r["speedup_vs_sdpa_cudnn"]) / base[r["n"]] - 1))
        spread = {
            r["n"]: 100 * float(r["speedup_vs_sdpa_cudnn_spread"])
            for r in rows(H200 / "check" / folder / "baseline.csv")
        }
        print(f"  {folder}: 16K spread of speedup_vs_sdpa_cudnn {spread['16384']:.1f}%")
    for n, xs in sorted(moved.items(), key=lambda x: int(x[0])):
        print(
            f"  N={n}: speedup over cuDNN with nothing planted moved {min(xs):+.1f}..{max(xs):+.1f}% from its baseline "
            f"median ({len(xs)} measurements)"
        )
    unplanted_fail, caught, missed, held, regressed = defaultdict(int), [], [], [], []
    for folder in folders:
        per = defaultdict(lambda: {"regressed": False, "layer": None})
        for r in rows(H200 / "check" / folder / "slowdowns.csv"):
            n = r["point"].split(" n=")[1].split()[0]
            key = (r["planted_pct"], r["judgment"], n)
            per[key]["regressed"] |= r["verdict"] == "REGRESSED"
            per[key]["layer"] = float(r["layer_ms_change_pct"]) if r["layer_ms_change_pct"] else None
        for (pct, j, n), v in per.items():
            if pct == "0" and v["regressed"]:
                unplanted_fail[n] += 1
            if n != "16384" and v["layer"] is not None and pct != "0":
                (regressed if v["regressed"] else held).append(v["layer"])
            if n != "16384" and v["layer"] is not None and v["layer"] >= 7.0:
                (caught if v["regressed"] else missed).append(f"{folder} {pct}%#{j} N={n} {v['layer']:+.1f}%")
    print(f"  unplanted judgments with a regressed figure, per N: {dict(unplanted_fail) or 'none'}")
    print(
        f"  64K/96K judged points whose layer slowed >= 7%: {len(caught)} regressed, {len(missed)} held"
        + (f" ({'; '.join(missed)})" if missed else "")
        + f"; in {len({c.rsplit(' N=', 1)[0] for c in caught + missed})} judgments"
    )
    print(
        f"  64K/96K planted judged points: largest slowdown that held {max(held):+.1f}%, smallest that regressed "
        f"{min(regressed):+.1f}%"
    )


def context_parallel() -> None:
    """Issue 16 on 2 x H200 (reports/h200x2): parity per rank, W=2 at 1M against W=1 at 512K, ring attention."""
    x2 = H200.parent / "h200x2"
    print("== context parallelism, 2 x H200 (reports/h200x2/)")
    lines = [line for line in (x2 / "cp_validate.txt").read_text().splitlines() if line.startswith("rank ")]
    worst = defaultdict(float)
    for line in lines:
        dtype = line.split()[3]
        for part in line.split(":")[1].split():
            if "=" in part:
                worst[dtype] = max(worst[dtype], float(part.split("=")[1]))
    print(
        f"  cp_validate: {len(lines)} rank lines, {sum(line.endswith('ok') for line in lines)} ok; largest relative "
        f"error of out/dq/dk/dv: " + ", ".join(f"{d} {v:.2e}" for d, v in sorted(worst.items()))
    )
    cp2 = {r["impl"]: r for r in rows(x2 / "cp2" / "results.csv")}
    cp1 = {r["impl"]: r for r in rows(x2 / "cp1" / "results.csv")}
    lh2, ring, lh1, dense1 = cp2["lighthouse_triton_cp2"], cp2["ring_cp2"], cp1["lighthouse_triton"], cp1["sdpa_cudnn"]
    for name, r in (
        ("Lighthouse W=2", lh2),
        ("ring attention W=2", ring),
        ("Lighthouse W=1", lh1),
        ("dense cuDNN W=1", dense1),
    ):
        print(
            f"  {name}: N={r['n']} {float(r['median_ms']):.3f} ms (p20 {float(r['p20_ms']):.3f}, p80 {float(r['p80_ms']):.3f}, "
            f"{r['reps']} reps) peak {float(r['peak_mem_gib']):.2f} GiB per rank; S={r['s_sel'] or '-'}"
        )
    print(
        f"  weak scaling: W=2 at 1M / W=1 at 512K = {float(lh2['median_ms']) / float(lh1['median_ms']):.3f} "
        f"(target <= 1.15); speedup over ring attention at 1M: {float(ring['median_ms']) / float(lh2['median_ms']):.1f}x "
        f"(target >= 50); speedup over dense cuDNN at 512K on one GPU: {float(dense1['median_ms']) / float(lh1['median_ms']):.1f}x"
    )
    s1, s2 = int(lh1["s_sel"]), int(lh2["s_sel"])
    heads = 8
    print(
        f"  SDPA on S per rank, arithmetic: W=2 runs {heads // 2} heads on S={s2}, W=1 {heads} heads on S={s1}: "
        f"{(s2**2 * heads / 2) / (s1**2 * heads):.3f}x the causal attention work"
    )


if __name__ == "__main__":
    train()
    coldstart()
    gate()
    quality()
    quality_time()
    recipe("recipe-0.75")
    longest()
    passkey()
    first_call()
    graphs()
    gate3()
    # third session
    recipe("recipe-0.75-saved")
    checkpoint_quality()
    recipe("recipe-0.75-saved-2")
    checkpoint_quality("checkpoint-16k-2")
    passkey_digit_only()
    gate_third("gate-ramped")
    gate_third("gate-host")
    gate_all_runs()
    gate_third("gate-b4")  # the ci suite's 16K point at batch 4 (GPU-bound); its baseline is baselines/nvidia-h200.csv
    context_parallel()
