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
    # Plain click output: a usage error is one unwrapped "Error: ..." line, and help paragraphs are re-flowed
    # (rich mode keeps the docstrings' line breaks mid-sentence and boxes errors at the terminal width).
    rich_markup_mode=None,
)

def _show_version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"lighthouse-bench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.", callback=_show_version,
                                          is_eager=True)] = False,
) -> None:
    """Benchmark Lighthouse attention against dense causal SDPA."""


LIST = "A list: 8k,96k,128k; a range doubles: 8k..256k; k = 1024, m = 1048576."


def _opt(help_: str, *names: str, metavar: Optional[str] = None):
    """An option with its help and a metavar that says what to write (typer's own shows <str>, <int>)."""
    return typer.Option(*names, help=help_, show_default=False, metavar=metavar)


@app.command()
def sweep(
    seq: Annotated[Optional[str], _opt(f"Sequence lengths N. {LIST}", "--seq", metavar="SIZES")] = None,
    topk: Annotated[Optional[str], _opt("Budgets k (multiples of 128), e.g. 1024,4096 or 512..4096.", "--topk", metavar="SIZES")] = None,
    levels: Annotated[Optional[str], _opt("Pyramid levels L; a range steps by one: 2..4 = 2,3,4.", "--levels", metavar="INTS")] = None,
    pooling: Annotated[Optional[str], _opt("Pooling factors p, e.g. 2,4,8 (or 2..8).", "--pooling", metavar="INTS")] = None,
    scorer: Annotated[Optional[str], _opt("Selection scorers: norm, dilated, gla.", "--scorer", metavar="NAMES")] = None,
    batch: Annotated[Optional[str], _opt("Batch sizes B.", "--batch", metavar="INTS")] = None,
    heads: Annotated[Optional[str], _opt("Query heads Hq.", "--heads", metavar="INTS")] = None,
    kv_heads: Annotated[Optional[str], _opt("KV heads Hkv (GQA); default: equal to --heads.", "--kv-heads", metavar="INTS")] = None,
    head_dim: Annotated[Optional[str], _opt("Head dims D.", "--head-dim", metavar="INTS")] = None,
    dtype: Annotated[Optional[str], _opt("Dtypes: bf16, fp16, fp32 (default bf16 on CUDA, fp32 on CPU).", "--dtype", metavar="NAMES")] = None,
    passes: Annotated[Optional[str], _opt("Passes: fwd, bwd (backward alone), fwdbwd. Default: all three.", "--pass", metavar="NAMES")] = None,
    impl: Annotated[Optional[str], _opt("Lighthouse paths: torch, triton. Default: torch, plus triton where it runs.", "--impl", metavar="NAMES")] = None,
    baseline: Annotated[Optional[str], _opt(
        "Dense baselines, each forced explicitly: cudnn, flash, efficient, math (SDPA backends), flex "
        "(FlexAttention, compiled). Default: every one that runs on the device.", "--baseline", metavar="NAMES")] = None,
    device: Annotated[Optional[str], _opt("cuda or cpu. Default: cuda when available.", "--device", metavar="cuda|cpu")] = None,
    suite: Annotated[Optional[str], _opt(
        "A preset (quick, paper, full, ci) or a .toml file (a name without .toml or / is a preset); flags override it. "
        "Default: quick on the CPU, the built-in grid on CUDA.", "--suite", metavar="PRESET|FILE")] = None,
    out: Annotated[Optional[Path], _opt("Output folder. Default: out/sweep-<timestamp>.", "--out", metavar="DIR")] = None,
    warmup: Annotated[Optional[int], _opt("Untimed calls before timing (>= 1; the first is reported as first_call_ms). Default 3.", "--warmup", metavar="N")] = None,
    rep: Annotated[Optional[int], _opt("Most timed repetitions per row. Default 20.", "--rep", metavar="N")] = None,
    min_rep: Annotated[Optional[int], _opt("Fewest timed repetitions per row. Default 3.", "--min-rep", metavar="N")] = None,
    max_seconds: Annotated[Optional[float], _opt("Stop repeating a row after this many seconds (once --min-rep are done). Default 3.", "--max-seconds", metavar="SECONDS")] = None,
    floor: Annotated[Optional[bool], _opt("Also time dense SDPA on S random entries per Lighthouse point. Default: on for CUDA.", "--floor/--no-floor")] = None,
    resume: Annotated[bool, _opt("Continue the sweep in --out: skip rows already ok/invalid/unsupported, retry oom/error.", "--resume")] = False,
    seed: Annotated[Optional[int], _opt("Seed of the random inputs. Default 0.", "--seed", metavar="N")] = None,
    plot: Annotated[bool, typer.Option("--plot/--no-plot", help="Draw the charts after the sweep.")] = True,
    dry_run: Annotated[bool, _opt("Print the points and rows the sweep would run, and exit.", "--dry-run")] = False,
) -> None:
    """Time Lighthouse against dense SDPA over a parameter grid; write results.csv, machine.json and charts."""
    import torch

    from .bench import points
    from .bench.outdir import OutputFolderError
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
    try:
        code = run(spec, out or default_out_dir(), resume=resume, plot=plot, argv=sys.argv,
                   equivalent=_command_line(suite, flags, out, resume))
    except (SweepError, OutputFolderError) as err:
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
    results: Annotated[Path, typer.Argument(help="A results.csv written by `lighthouse-bench sweep`.", exists=True, dir_okay=False,
                                                  metavar="RESULTS.csv", hidden=True)],
    out: Annotated[Optional[Path], _opt("Folder for the charts. Default: beside RESULTS.", "--out", metavar="DIR")] = None,
) -> None:
    """Draw speedup, latency and memory charts (PNG and SVG) from RESULTS.csv, a results.csv written by
    `lighthouse-bench sweep`."""
    from .bench.plots import make_charts

    try:
        paths = make_charts(results, out)
    except ValueError as err:  # not a results file (results.ResultsFormatError), or an unwritable --out
        raise typer.BadParameter(str(err)) from None
    for path in paths:
        typer.echo(f"chart: {path}")


@app.command()
def profile(
    seq: Annotated[str, _opt(f"Sequence lengths N (one or a few). {LIST}", "--seq", metavar="SIZES")] = "16k",
    topk: Annotated[str, _opt("Budgets k (multiples of 128).", "--topk", metavar="SIZES")] = "1024",
    levels: Annotated[Optional[str], _opt("Pyramid levels L.", "--levels", metavar="INTS")] = None,
    pooling: Annotated[Optional[str], _opt("Pooling factors p.", "--pooling", metavar="INTS")] = None,
    scorer: Annotated[Optional[str], _opt("Scorers: norm, dilated, gla.", "--scorer", metavar="NAMES")] = None,
    batch: Annotated[Optional[str], _opt("Batch sizes B.", "--batch", metavar="INTS")] = None,
    heads: Annotated[Optional[str], _opt("Query heads Hq.", "--heads", metavar="INTS")] = None,
    kv_heads: Annotated[Optional[str], _opt("KV heads Hkv; default: equal to --heads.", "--kv-heads", metavar="INTS")] = None,
    head_dim: Annotated[Optional[str], _opt("Head dims D.", "--head-dim", metavar="INTS")] = None,
    dtype: Annotated[Optional[str], _opt("bf16, fp16, fp32 (default bf16 on CUDA, fp32 on CPU).", "--dtype", metavar="NAMES")] = None,
    impl: Annotated[Optional[str], _opt("torch or triton (default triton on CUDA, torch on CPU).", "--impl", metavar="NAMES")] = None,
    sdpa_backend: Annotated[Optional[str], _opt("SDPA backend of the sub-sequence call: cudnn, flash, efficient, math, auto. Default: cudnn on CUDA, math on CPU.", "--sdpa-backend", metavar="NAME")] = None,
    device: Annotated[Optional[str], _opt("cuda or cpu. Default: cuda when available.", "--device", metavar="cuda|cpu")] = None,
    out: Annotated[Optional[Path], _opt("Output folder. Default: out/profile-<timestamp>.", "--out", metavar="DIR")] = None,
    warmup: Annotated[int, _opt("Untimed calls before timing each stage.", "--warmup", metavar="N")] = 3,
    rep: Annotated[int, _opt("Most timed repetitions per stage.", "--rep", metavar="N")] = 20,
    max_seconds: Annotated[float, _opt("Stop repeating a stage after this many seconds (after 3 repetitions).", "--max-seconds", metavar="SECONDS")] = 2.0,
    seed: Annotated[int, _opt("Seed of the random inputs.", "--seed", metavar="N")] = 0,
    trace: Annotated[bool, _opt("Also export a torch.profiler Chrome trace of 3 forward+backward calls per point.", "--trace")] = False,
    remeasure_peaks: Annotated[bool, _opt("Measure the device's copy bandwidth and matmul peak again instead of using the cache.", "--remeasure-peaks")] = False,
) -> None:
    """Per-stage times of one Lighthouse call (forward and backward), with bytes, FLOPs and distance to the
    device's measured floor; writes profile.csv, machine.json and a stacked-bar chart."""
    from datetime import datetime

    import torch

    from .bench.options import OptionError, parse_choices, parse_option
    from .bench.outdir import writable_folder
    from .bench.points import make_points
    from .bench.profile import run_profile
    from .bench.runner import kernels_unavailable_reason, resolve_device
    from .sdpa import BACKENDS, CUDA_ONLY

    point_text = {"seq": seq, "topk": topk, "levels": levels, "pooling": pooling, "scorer": scorer, "batch": batch,
                  "heads": heads, "kv_heads": kv_heads, "head_dim": head_dim, "dtype": dtype}
    try:  # the same parsers, ranges and messages as `sweep` (lighthouse.bench.options)
        cuda = torch.cuda.is_available()
        dev_name = parse_option("device", device) if device else ("cuda" if cuda else "cpu")
        if dev_name == "cuda" and not cuda:
            raise OptionError("--device: --device asks for cuda, but CUDA is not available here; use --device cpu")
        dev = resolve_device(dev_name)
        timing = {key: parse_option(key, value) for key, value in
                  (("warmup", warmup), ("rep", rep), ("max_seconds", max_seconds), ("seed", seed))}
        impls = parse_option("impl", impl) if impl else ["triton" if dev.type == "cuda" else "torch"]
        if len(impls) != 1:
            raise OptionError(f"--impl: profile takes one implementation, torch or triton, got {impl!r}")
        impl_name = impls[0]
        reason = kernels_unavailable_reason(dev) if impl_name == "triton" else None
        if reason:
            raise OptionError(f"--impl triton cannot run here: {reason}; use --impl torch")
        backend = parse_choices(sdpa_backend or ("cudnn" if dev.type == "cuda" else "math"), "--sdpa-backend",
                                ("auto", *BACKENDS))
        if len(backend) != 1:
            raise OptionError(f"--sdpa-backend: one backend, got {sdpa_backend!r}")
        backend = None if backend[0] == "auto" else backend[0]
        if backend in CUDA_ONLY and dev.type != "cuda":
            raise OptionError(f"--sdpa-backend {backend} cannot run on {dev.type}: it needs a CUDA device; use math or auto")
        points = make_points([point_text], dev.type)
        for point in points:
            point.config(impl_name, backend)  # names a bad parameter now, before anything runs
        out = writable_folder(out or Path("out") / f"profile-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    options = {**{k: v for k, v in point_text.items() if v is not None}, "impl": impl_name,
               "sdpa_backend": backend or "auto", "device": dev.type, **timing, "trace": trace,
               "remeasure_peaks": remeasure_peaks, "out": str(out)}
    equivalent = ["lighthouse-bench", "profile"]
    for key, value in options.items():
        if isinstance(value, bool):
            equivalent += [_flag(key)] if value else []
        else:
            equivalent += [_flag(key), str(value)]
    code = run_profile(points, impl_name, dev, out, sdpa_backend=backend, trace_calls=trace,
                       remeasure_peaks=remeasure_peaks, argv=sys.argv, options=options, equivalent=equivalent, **timing)
    raise typer.Exit(code)


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


@app.command()
def report(
    results: Annotated[List[Path], typer.Argument(help="Folders (or CSVs) of sweeps and profiles: results.csv or profile.csv with machine.json beside it.", metavar="RESULTS", hidden=True)],
    out: Annotated[Optional[Path], _opt("Output folder. Default: out/report-<timestamp>.", "--out", metavar="DIR")] = None,
    title: Annotated[Optional[str], _opt("Title of the report. Default: from the runs.", "--title", metavar="TEXT")] = None,
) -> None:
    """One self-contained report (report.md with charts beside it, and a single-file report.html) from one or
    more sweeps and profiles: the headline, the tables, the charts, the machine info of every run, and a
    side-by-side when given exactly two sweeps. Each RESULTS is a folder (or CSV) of a sweep or a profile:
    results.csv or profile.csv with machine.json beside it."""
    from datetime import datetime

    from .bench.report import build_report
    from .bench.results import torn_note

    out = out or Path("out") / f"report-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    try:
        files = build_report(results, out, title)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    for run in files.headline.get("runs", []):
        if run.get("torn_rows"):
            typer.echo(f"warning: {torn_note(run['source'], run['torn_rows'])}", err=True)
        if run.get("kind") == "sweep" and run.get("speedup") is not None:
            point = run.get("point") or {}
            config = f"k={point.get('topk')} L={point.get('levels')} p={point.get('pooling')} {point.get('scorer')}"
            noisy = "; CPU figures are noisy" if run.get("device") == "cpu" else ""
            typer.echo(f"{run.get('label')}: {run['speedup']:.2f}x {run.get('baseline')} at N={run.get('n')} "
                       f"(best configuration there: {config}), crossover N={run.get('crossover_n')}{noisy}")
    typer.echo(f"report: {files.markdown}")
    typer.echo(f"report: {files.html}")


@app.command()
def check(
    baseline: Annotated[Path, typer.Option("--baseline", help="Baseline CSV of this GPU kind, e.g. reports/baselines/h200.csv (written by --record).", show_default=False, metavar="FILE")],
    results: Annotated[Optional[Path], _opt("A results.csv (or its folder) to judge instead of running the suite; parity is then skipped.", "--results", metavar="PATH")] = None,
    tolerance: Annotated[float, _opt("Allowed relative change of each gated figure, in (0, 1). Default 0.10.", "--tolerance", metavar="FRACTION")] = 0.10,
    record: Annotated[bool, _opt("Write --baseline from the results (measuring first without --results) instead of judging.", "--record")] = False,
    out: Annotated[Optional[Path], _opt("Folder for the run, check.csv and check.md. Default: out/check-<timestamp>.", "--out", metavar="DIR")] = None,
    suite: Annotated[str, _opt("Suite to run when measuring. Default ci.", "--suite", metavar="PRESET|FILE")] = "ci",
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
