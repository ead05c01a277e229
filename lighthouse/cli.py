"""`lighthouse-bench`: the command line. Each command is one function below, thin on purpose: it turns
options into a plan and hands it to `lighthouse.bench`. A new command (profile, report, check) is one more
`@app.command()` function.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer

app = typer.Typer(
    name="lighthouse-bench",
    help="Benchmark Lighthouse attention against dense causal SDPA.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

LIST = "A list: 8k,96k,128k; a range doubles: 8k..256k; k = 1024, m = 1048576."


def _opt(help_: str, *names: str):
    return typer.Option(*names, help=help_, show_default=False)


@app.command()
def sweep(
    seq: Annotated[Optional[str], _opt(f"Sequence lengths N. {LIST}", "--seq")] = None,
    topk: Annotated[Optional[str], _opt("Budgets k (multiples of 128), e.g. 1024,4096 or 512..4096.", "--topk")] = None,
    levels: Annotated[Optional[str], _opt("Pyramid levels L; a range steps by one: 2..4 = 2,3,4.", "--levels")] = None,
    pooling: Annotated[Optional[str], _opt("Pooling factors p, e.g. 2,4,8 (or 2..8).", "--pooling")] = None,
    scorer: Annotated[Optional[str], _opt("Selection scorers: norm, dilated, gla.", "--scorer")] = None,
    batch: Annotated[Optional[str], _opt("Batch sizes B.", "--batch")] = None,
    heads: Annotated[Optional[str], _opt("Query heads Hq.", "--heads")] = None,
    kv_heads: Annotated[Optional[str], _opt("KV heads Hkv (GQA); default: equal to --heads.", "--kv-heads")] = None,
    head_dim: Annotated[Optional[str], _opt("Head dims D.", "--head-dim")] = None,
    dtype: Annotated[Optional[str], _opt("Dtypes: bf16, fp16, fp32 (default bf16 on CUDA, fp32 on CPU).", "--dtype")] = None,
    passes: Annotated[Optional[str], _opt("Passes: fwd, bwd (backward alone), fwdbwd. Default: all three.", "--pass")] = None,
    impl: Annotated[Optional[str], _opt("Lighthouse paths: torch, triton. Default: torch, plus triton where it runs.", "--impl")] = None,
    baseline: Annotated[Optional[str], _opt(
        "Dense baselines, each forced explicitly: cudnn, flash, efficient, math (SDPA backends), flex "
        "(FlexAttention, compiled). Default: every one that runs on the device.", "--baseline")] = None,
    device: Annotated[Optional[str], _opt("cuda or cpu. Default: cuda when available.", "--device")] = None,
    suite: Annotated[Optional[str], _opt(
        "A preset (quick, paper, full, ci) or a path to a .toml file; flags override it. "
        "Default: quick on the CPU, the built-in grid on CUDA.", "--suite")] = None,
    out: Annotated[Optional[Path], _opt("Output folder. Default: out/sweep-<timestamp>.", "--out")] = None,
    warmup: Annotated[Optional[int], _opt("Untimed calls before timing (>= 1; the first is reported as first_call_ms). Default 3.", "--warmup")] = None,
    rep: Annotated[Optional[int], _opt("Most timed repetitions per row. Default 20.", "--rep")] = None,
    min_rep: Annotated[Optional[int], _opt("Fewest timed repetitions per row. Default 3.", "--min-rep")] = None,
    max_seconds: Annotated[Optional[float], _opt("Stop repeating a row after this many seconds (once --min-rep are done). Default 3.", "--max-seconds")] = None,
    floor: Annotated[Optional[bool], _opt("Also time dense SDPA on S random entries per Lighthouse point. Default: on for CUDA.", "--floor/--no-floor")] = None,
    resume: Annotated[bool, _opt("Continue the sweep in --out: skip rows already ok/invalid/unsupported, retry oom/error.", "--resume")] = False,
    seed: Annotated[Optional[int], _opt("Seed of the random inputs. Default 0.", "--seed")] = None,
    plot: Annotated[bool, typer.Option("--plot/--no-plot", help="Draw the charts after the sweep.")] = True,
    dry_run: Annotated[bool, _opt("Print the points and rows the sweep would run, and exit.", "--dry-run")] = False,
    cp: Annotated[int, _opt(
        "Context parallelism over W ranks (W >= 2: launch with torchrun --nproc-per-node W, one process per GPU): "
        "Lighthouse with cp_group= against PyTorch's ring attention; rank 0 writes. Default 1 (off).", "--cp")] = 1,
) -> None:
    """Time Lighthouse against dense SDPA over a parameter grid; write results.csv, machine.json and charts."""
    import torch

    from .bench import points
    from .bench.sweep import SweepError, default_out_dir, describe, run

    flags = {"seq": seq, "topk": topk, "levels": levels, "pooling": pooling, "scorer": scorer, "batch": batch,
             "heads": heads, "kv_heads": kv_heads, "head_dim": head_dim, "dtype": dtype, "pass": passes, "impl": impl,
             "baseline": baseline, "device": device, "warmup": warmup, "rep": rep, "min_rep": min_rep,
             "max_seconds": max_seconds, "seed": seed, "floor": floor}
    try:
        spec = points.resolve(suite, flags, torch.cuda.is_available())
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    if dry_run:
        describe(spec)
        return
    if resume and out is None:
        raise typer.BadParameter("--resume needs --out: the folder of the sweep to continue")
    if cp < 1:
        raise typer.BadParameter(f"--cp must be an integer >= 1 (the number of ranks), got {cp}")
    if cp > 1 and out is None:
        raise typer.BadParameter("--cp needs --out: every rank must agree on the folder")
    try:
        code = run(spec, out or default_out_dir(), resume=resume, plot=plot, argv=sys.argv,
                   equivalent=_command_line(suite, flags, out, resume) + (["--cp", str(cp)] if cp > 1 else []), cp=cp)
    except SweepError as err:
        raise typer.BadParameter(str(err)) from None
    raise typer.Exit(code)


def _command_line(suite, flags, out, resume) -> List[str]:
    """The options as given, spelled out (recorded in machine.json next to sys.argv)."""
    from .bench.options import option_name

    args = ["lighthouse-bench", "sweep"] + (["--suite", suite] if suite else [])
    for key, value in flags.items():
        if value is None:
            continue
        if key == "floor":
            args.append("--floor" if value else "--no-floor")
        else:
            args += ["--pass" if key == "pass" else option_name(key), str(value)]
    return args + (["--out", str(out)] if out else []) + (["--resume"] if resume else [])


@app.command()
def plot(
    results: Annotated[Path, typer.Argument(help="A results.csv written by `lighthouse-bench sweep`.", exists=True, dir_okay=False)],
    out: Annotated[Optional[Path], _opt("Folder for the charts. Default: beside RESULTS.", "--out")] = None,
) -> None:
    """Draw speedup, latency and memory charts (PNG and SVG) from a results.csv."""
    from .bench.plots import make_charts

    for path in make_charts(results, out):
        typer.echo(f"chart: {path}")


@app.command()
def profile(
    seq: Annotated[str, _opt(f"Sequence lengths N (one or a few). {LIST}", "--seq")] = "16k",
    topk: Annotated[str, _opt("Budgets k (multiples of 128).", "--topk")] = "1024",
    levels: Annotated[Optional[str], _opt("Pyramid levels L.", "--levels")] = None,
    pooling: Annotated[Optional[str], _opt("Pooling factors p.", "--pooling")] = None,
    scorer: Annotated[Optional[str], _opt("Scorers: norm, dilated, gla.", "--scorer")] = None,
    batch: Annotated[Optional[str], _opt("Batch sizes B.", "--batch")] = None,
    heads: Annotated[Optional[str], _opt("Query heads Hq.", "--heads")] = None,
    kv_heads: Annotated[Optional[str], _opt("KV heads Hkv; default: equal to --heads.", "--kv-heads")] = None,
    head_dim: Annotated[Optional[str], _opt("Head dims D.", "--head-dim")] = None,
    dtype: Annotated[Optional[str], _opt("bf16, fp16, fp32 (default bf16 on CUDA, fp32 on CPU).", "--dtype")] = None,
    impl: Annotated[Optional[str], _opt("torch or triton (default triton on CUDA, torch on CPU).", "--impl")] = None,
    sdpa_backend: Annotated[Optional[str], _opt("SDPA backend of the sub-sequence call: cudnn, flash, efficient, math, auto. Default: cudnn on CUDA, math on CPU.", "--sdpa-backend")] = None,
    device: Annotated[Optional[str], _opt("cuda or cpu. Default: cuda when available.", "--device")] = None,
    out: Annotated[Optional[Path], _opt("Output folder. Default: out/profile-<timestamp>.", "--out")] = None,
    warmup: Annotated[int, _opt("Untimed calls before timing each stage.", "--warmup")] = 3,
    rep: Annotated[int, _opt("Most timed repetitions per stage.", "--rep")] = 20,
    max_seconds: Annotated[float, _opt("Stop repeating a stage after this many seconds (after 3 repetitions).", "--max-seconds")] = 2.0,
    seed: Annotated[int, _opt("Seed of the random inputs.", "--seed")] = 0,
    trace: Annotated[bool, _opt("Also export a torch.profiler Chrome trace of 3 forward+backward calls per point.", "--trace")] = False,
    remeasure_peaks: Annotated[bool, _opt("Measure the device's copy bandwidth and matmul peak again instead of using the cache.", "--remeasure-peaks")] = False,
) -> None:
    """Per-stage times of one Lighthouse call (forward and backward), with bytes, FLOPs and distance to the
    device's measured floor; writes profile.csv, machine.json and a stacked-bar chart."""
    from datetime import datetime

    import torch

    from .bench.points import make_points
    from .bench.profile import run_profile
    from .bench.runner import resolve_device

    try:
        dev = resolve_device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA device is available")
        impl_name = impl or ("triton" if dev.type == "cuda" else "torch")
        if impl_name not in ("torch", "triton"):
            raise ValueError(f"--impl must be torch or triton, got {impl_name!r}")
        backend = sdpa_backend or ("cudnn" if dev.type == "cuda" else "math")
        backend = None if backend == "auto" else backend
        points = make_points([{"seq": seq, "topk": topk, "levels": levels, "pooling": pooling, "scorer": scorer,
                               "batch": batch, "heads": heads, "kv_heads": kv_heads, "head_dim": head_dim,
                               "dtype": dtype}], dev.type)
        for point in points:
            point.config(impl_name, backend)  # names a bad parameter now, before anything runs
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    out = out or Path("out") / f"profile-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    code = run_profile(points, impl_name, dev, out, sdpa_backend=backend, trace_calls=trace, remeasure_peaks=remeasure_peaks, seed=seed,
                       warmup=warmup, rep=rep, max_seconds=max_seconds, argv=sys.argv)
    raise typer.Exit(code)


@app.command()
def report(
    results: Annotated[List[Path], typer.Argument(help="Folders (or CSVs) of sweeps and profiles: results.csv or profile.csv with machine.json beside it.")],
    out: Annotated[Optional[Path], _opt("Output folder. Default: out/report-<timestamp>.", "--out")] = None,
    title: Annotated[Optional[str], _opt("Title of the report. Default: from the runs.", "--title")] = None,
) -> None:
    """One self-contained report (report.md with charts beside it, and a single-file report.html) from one or
    more sweeps and profiles: the headline, the tables, the charts, the machine info of every run, and a
    side-by-side when given exactly two sweeps."""
    from datetime import datetime

    from .bench.report import build_report

    out = out or Path("out") / f"report-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    try:
        files = build_report(results, out, title)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    for run in files.headline.get("runs", []):
        if run.get("kind") == "sweep" and run.get("speedup") is not None:
            typer.echo(f"{run.get('label')}: {run['speedup']:.2f}x dense at N={run.get('n')}, "
                       f"crossover N={run.get('crossover_n')}")
    typer.echo(f"report: {files.markdown}")
    typer.echo(f"report: {files.html}")


@app.command()
def check(
    baseline: Annotated[Path, typer.Option("--baseline", help="Baseline CSV of this GPU kind, e.g. reports/baselines/h200.csv (written by --record).", show_default=False)],
    results: Annotated[Optional[Path], _opt("A results.csv (or its folder) to judge instead of running the suite; parity is then skipped.", "--results")] = None,
    tolerance: Annotated[float, _opt("Allowed relative change of each gated figure, in (0, 1). Default 0.10.", "--tolerance")] = 0.10,
    record: Annotated[bool, _opt("Write --baseline from the results (measuring first without --results) instead of judging.", "--record")] = False,
    out: Annotated[Optional[Path], _opt("Folder for the run, check.csv and check.md. Default: out/check-<timestamp>.", "--out")] = None,
    suite: Annotated[str, _opt("Suite to run when measuring. Default ci.", "--suite")] = "ci",
) -> None:
    """Regression gate: the ci suite's speedup over dense cuDNN and time over the SDPA-on-S floor against a
    recorded baseline, plus Triton-vs-PyTorch parity. Exit 0 all hold, 1 a regression, 2 could not measure."""
    from .bench.check import run_check

    try:
        code = run_check(baseline, results, tolerance, record, suite, out)
    except ValueError as err:  # a bad tolerance or suite name
        raise typer.BadParameter(str(err)) from None
    raise typer.Exit(code)


@app.command()
def suites() -> None:
    """List the sweep presets and what they are for."""
    from .bench.options import load_suite, suite_names

    for name in suite_names():
        desc = load_suite(name)["top"].get("description", "")
        typer.echo(f"{name:8s} {desc}")


def main(argv: Optional[List[str]] = None) -> None:  # pragma: no cover - `python -m lighthouse.cli`
    app(argv)


if __name__ == "__main__":  # pragma: no cover
    main()
