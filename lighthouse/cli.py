"""`lighthouse-bench`: the command line. Each command is one function below, thin on purpose: it turns
options into a plan and hands it to `lighthouse.bench`. A new command (profile, report, check) is one more
`@app.command()` function.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from .cli_options import (
    LIST,
    CorpusRoot,
    Device,
    DryRun,
    MaxSeconds,
    Out,
    Plot,
    Rep,
    Resume,
    RopeTheta,
    Ropes,
    SdpaBackend,
    Seed,
    Suite,
    Warmup,
    arg,
    grid_options,
    opt as _opt,
)
from .harness.quiet import quiet_transformers

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
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=_show_version, is_eager=True)
    ] = False,
) -> None:
    """Benchmark Lighthouse attention against dense causal SDPA."""
    from .testing import install_if_requested

    install_if_requested()  # test-only: LIGHTHOUSE_TEST_SLOWDOWN_US set in the environment


@app.command()
@grid_options
def sweep(
    point: dict,
    rope: Ropes = None,
    rope_theta: RopeTheta = None,
    passes: Annotated[
        Optional[str], _opt("Passes: fwd, bwd (backward alone), fwdbwd. Default: all three.", "--pass", metavar="NAMES")
    ] = None,
    impl: Annotated[
        Optional[str],
        _opt("Lighthouse paths: torch, triton. Default: torch, plus triton where it runs.", "--impl", metavar="NAMES"),
    ] = None,
    baseline: Annotated[
        Optional[str],
        _opt(
            "Dense baselines, each forced explicitly: cudnn, flash, efficient, math (SDPA backends), flex "
            "(FlexAttention, compiled). Default: every one that runs on the device.",
            "--baseline",
            metavar="NAMES",
        ),
    ] = None,
    device: Device = None,
    suite: Suite = None,
    out: Out = None,
    warmup: Warmup = None,
    rep: Rep = None,
    min_rep: Annotated[
        Optional[int], _opt("Fewest timed repetitions per row. Default 3.", "--min-rep", metavar="N")
    ] = None,
    max_seconds: MaxSeconds = None,
    floor: Annotated[
        Optional[bool],
        _opt(
            "Also time dense SDPA on S random entries per Lighthouse point. Default: on for CUDA.", "--floor/--no-floor"
        ),
    ] = None,
    cuda_graph: Annotated[
        Optional[bool],
        _opt(
            "Time the Lighthouse (Triton) and dense rows through CUDA graphs (lighthouse.graph_lighthouse: forward and "
            "backward each replayed as one graph; first_call_ms includes the capture); CUDA only. Default off.",
            "--cuda-graph/--no-cuda-graph",
        ),
    ] = None,
    resume: Resume = False,
    seed: Seed = None,
    plot: Plot = True,
    dry_run: DryRun = False,
    cp: Annotated[
        int,
        _opt(
            "Context parallelism over W ranks (W >= 2: launch with torchrun --nproc-per-node W, one process per GPU): "
            "Lighthouse with cp_group= against PyTorch's ring attention; rank 0 writes. Default 1 (off).",
            "--cp",
            metavar="W",
        ),
    ] = 1,
) -> None:
    """Time Lighthouse against dense SDPA over a parameter grid; write results.csv, machine.json and charts.
    Options not given come from --suite: quick on the CPU, the built-in grid on CUDA."""
    import torch

    from .bench.sweep import describe, run
    from .harness import points
    from .harness.command_line import as_given
    from .harness.outdir import default_out

    flags = {
        **point,
        "rope": rope,
        "rope_theta": rope_theta,
        "pass": passes,
        "impl": impl,
        "baseline": baseline,
        "device": device,
        "warmup": warmup,
        "rep": rep,
        "min_rep": min_rep,
        "max_seconds": max_seconds,
        "seed": seed,
        "floor": floor,
        "cuda_graph": cuda_graph,
    }
    try:
        if cp < 1:
            raise ValueError(f"--cp must be an integer >= 1 (the number of ranks), got {cp}")
        spec = points.resolve(suite, flags, torch.cuda.is_available())
        if dry_run:
            describe(spec)
            return
        if resume and out is None:
            raise ValueError("--resume needs --out: the folder of the sweep to continue")
        if cp > 1 and spec.cuda_graph:
            raise ValueError("--cuda-graph: not with --cp (context parallelism runs collectives); leave one out")
        if cp > 1 and out is None:
            raise ValueError("--cp needs --out: every rank must agree on the folder")
        launch = ["torchrun", "--standalone", "--nproc-per-node", str(cp), "-m", "lighthouse.cli"] if cp > 1 else None
        code = run(
            spec,
            out or default_out("sweep"),
            resume=resume,
            plot=plot,
            argv=sys.argv,
            command_line=as_given(launch),
            cp=cp,
        )
    except ValueError as err:  # a bad option, --out in the way, a --resume of another run (the message names it)
        raise typer.BadParameter(str(err)) from None
    raise typer.Exit(code)


@app.command()
def plot(
    results: Annotated[Path, arg("RESULTS.csv", exists=True, dir_okay=False)],
    out: Annotated[
        Optional[Path], _opt("Folder for the charts. Default: beside RESULTS.", "--out", metavar="DIR")
    ] = None,
) -> None:
    """Draw speedup, latency and memory charts (PNG) from RESULTS.csv, a results.csv written by
    `lighthouse-bench sweep`."""
    from .bench.plots import make_charts

    try:
        paths = make_charts(results, out)
    except ValueError as err:  # not a results file (results.ResultsFormatError), or an unwritable --out
        raise typer.BadParameter(str(err)) from None
    for path in paths:
        typer.echo(f"chart: {path}")


@app.command()
@grid_options
def profile(
    point: dict,
    rope: Ropes = None,
    impl: Annotated[
        Optional[str], _opt("torch or triton (default triton on CUDA, torch on CPU).", "--impl", metavar="NAMES")
    ] = None,
    sdpa_backend: SdpaBackend = None,
    device: Device = None,
    out: Out = None,
    warmup: Warmup = None,
    rep: Rep = None,
    max_seconds: MaxSeconds = None,
    seed: Seed = 0,
    trace: Annotated[
        bool, _opt("Also export a torch.profiler Chrome trace of 3 forward+backward calls per point.", "--trace")
    ] = False,
    remeasure_peaks: Annotated[
        bool,
        _opt(
            "Measure the device's copy bandwidth and matmul peak again instead of using the cache.", "--remeasure-peaks"
        ),
    ] = False,
    resume: Resume = False,
) -> None:
    """Per-stage times of one Lighthouse call (forward and backward), with bytes, FLOPs and distance to the
    device's measured floor; writes profile.csv, machine.json and a stacked-bar chart. Options not given: --seq 16k
    --topk 1024 (one point or a few), --impl triton on CUDA and torch on the CPU, --sdpa-backend math on the CPU."""
    from .harness.options import OptionError, parse_choices, parse_option
    from .harness.outdir import default_out
    from .harness.points import make_points
    from dataclasses import asdict

    from .bench.profile import StageTiming, run_profile
    from .harness.device import device_option, kernels_unavailable_reason
    from .sdpa import BACKENDS, CUDA_ONLY

    point_text = {"seq": "16k", "topk": "1024", **{k: v for k, v in point.items() if v is not None}, "rope": rope}
    try:  # the same parsers, ranges and messages as `sweep` (lighthouse.harness.options)
        dev = device_option(device)
        given = (("warmup", warmup), ("rep", rep), ("max_seconds", max_seconds))
        timing = StageTiming(**{key: parse_option(key, value) for key, value in given if value is not None})
        seed = parse_option("seed", seed)
        impls = parse_option("impl", impl) if impl else ["triton" if dev.type == "cuda" else "torch"]
        if len(impls) != 1:
            raise OptionError(f"--impl: profile takes one implementation, torch or triton, got {impl!r}")
        impl_name = impls[0]
        reason = kernels_unavailable_reason(dev) if impl_name == "triton" else None
        if reason:
            raise OptionError(f"--impl triton cannot run here: {reason}; use --impl torch")
        backend = parse_choices(
            sdpa_backend or ("cudnn" if dev.type == "cuda" else "math"), "--sdpa-backend", ("auto", *BACKENDS)
        )
        if len(backend) != 1:
            raise OptionError(f"--sdpa-backend: one backend, got {sdpa_backend!r}")
        backend = None if backend[0] == "auto" else backend[0]
        if backend in CUDA_ONLY and dev.type != "cuda":
            raise OptionError(
                f"--sdpa-backend {backend} cannot run on {dev.type}: it needs a CUDA device; use math or auto"
            )
        points = make_points([point_text], dev.type)
        for point in points:
            point.config(impl_name, backend)  # names a bad parameter now, before anything runs
        if resume and out is None:
            raise OptionError("--resume needs --out: the folder of the profile to continue")
        out = out or default_out("profile")
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    options = {
        **{k: v for k, v in point_text.items() if v is not None},
        "impl": impl_name,
        "sdpa_backend": backend or "auto",
        "device": dev.type,
        **asdict(timing),
        "seed": seed,
        "trace": trace,
        "remeasure_peaks": remeasure_peaks,
    }
    try:
        code = run_profile(
            points,
            impl_name,
            dev,
            out,
            sdpa_backend=backend,
            trace_calls=trace,
            remeasure_peaks=remeasure_peaks,
            argv=sys.argv,
            options=options,
            resume=resume,
            seed=seed,
            timing=timing,
        )
    except ValueError as err:  # --out in the way (an existing profile without --resume), a --resume of another run
        raise typer.BadParameter(str(err)) from None
    raise typer.Exit(code)


@app.command()
@grid_options
def validate(
    point: dict,
    device: Device = None,
    seed: Seed = 0,
    out: Out = None,
    resume: Resume = False,
) -> None:
    """Correctness of the Triton path on this device: per point, forward and backward against the PyTorch path
    on the same inputs (identical selection, relative errors within the dtype's tolerance), a bitwise repeat and
    a run with poisoned output buffers; writes validate.csv and machine.json. Exit 0: every point holds; 1: one
    does not (or failed); 2: bad options or nothing could run. Options not given: on CUDA --seq 32k,128k
    --topk 1024,4096 --kv-heads 8,2 --dtype bf16,fp32 (L=3, p=4, Hq=8, D=128); on the CPU --seq 512 --topk 128
    --levels 2 --pooling 2 --heads 2 --head-dim 32 --dtype fp32 (the kernels interpreted: TRITON_INTERPRET=1)."""
    from .bench.validate import DEFAULTS, run_validate
    from .harness.device import device_option, kernels_unavailable_reason
    from .harness.options import OptionError
    from .harness.outdir import default_out
    from .harness.points import make_points

    try:  # the same parsers, ranges and messages as `sweep` (lighthouse.harness.options)
        dev = device_option(device)
        reason = kernels_unavailable_reason(dev)
        if reason:
            raise OptionError(f"--device {dev.type}: validate runs the Triton path, which cannot run here: {reason}")
        point_text = {**DEFAULTS[dev.type], **{k: v for k, v in point.items() if v is not None}}
        points = make_points([point_text], dev.type)
        for point in points:
            point.config()  # names a bad parameter now, before anything runs
        if resume and out is None:
            raise OptionError("--resume needs --out: the folder of the validation to continue")
        out = out or default_out("validate")
        options = {**point_text, "device": dev.type, "seed": seed}
        code = run_validate(points, dev, out, seed=seed, resume=resume, options=options, argv=sys.argv)
    except ValueError as err:  # a bad option, --out in the way, a --resume of another run
        raise typer.BadParameter(str(err)) from None
    raise typer.Exit(code)


@app.command()
def report(
    results: Annotated[List[Path], arg("RESULTS")],
    out: Out = None,
    title: Annotated[
        Optional[str], _opt("Title of the report. Default: from the runs.", "--title", metavar="TEXT")
    ] = None,
) -> None:
    """One self-contained report (report.md with charts beside it, and a single-file report.html) from one or
    more sweeps and profiles: the headline, the tables, the charts, the machine info of every run, and a
    side-by-side when given exactly two sweeps. Each RESULTS is a folder (or CSV) of a sweep or a profile:
    results.csv or profile.csv with machine.json beside it."""
    from .report.build import build_report
    from .harness.outdir import default_out
    from .harness.tables import torn_note

    out = out or default_out("report")
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
            typer.echo(
                f"{run.get('label')}: {run['speedup']:.2f}x {run.get('baseline')} at N={run.get('n')} "
                f"(best configuration there: {config}), crossover N={run.get('crossover_n')}{noisy}"
            )
    typer.echo(f"report: {files.markdown}")
    typer.echo(f"report: {files.html}")


@app.command()
def check(
    baseline: Annotated[
        str,
        _opt(
            "Baseline CSV (written by --record), or auto: reports/baselines/<GPU model>.csv, the model of this GPU "
            "(of the results' machine.json with --results), e.g. nvidia-h200.csv. Default auto.",
            "--baseline",
            metavar="FILE|auto",
        ),
    ] = "auto",
    results: Annotated[
        Optional[List[Path]],
        _opt(
            "A results.csv (or its folder) to judge instead of running the suite; parity is then skipped. With "
            "--record it may be repeated, one per run.",
            "--results",
            metavar="PATH",
        ),
    ] = None,
    tolerance: Annotated[
        float,
        _opt(
            "Least allowed relative change of each gated figure, in (0, 1); a figure whose baseline runs spread wider "
            "gets its spread. Default 0.06.",
            "--tolerance",
            metavar="FRACTION",
        ),
    ] = 0.06,
    record: Annotated[
        bool,
        _opt("Write --baseline from the results (measuring first without --results) instead of judging.", "--record"),
    ] = False,
    runs: Annotated[
        Optional[int],
        _opt(
            "With --record: runs of the suite whose median (and spread) the baseline holds. Default 3.",
            "--runs",
            metavar="N",
        ),
    ] = None,
    out: Out = None,
    suite: Suite = "ci",
) -> None:
    """Regression gate: the ci suite's speedups over dense cuDNN and over plain PyTorch SDPA and its time over the
    SDPA-on-S floor against a recorded baseline, plus Triton-vs-PyTorch parity. Exit 0 all hold, 1 a regression,
    2 could not measure or write. --out holds the run, check.csv and check.md; --suite is what it runs when it
    measures."""
    from .bench.check import run_check

    try:
        code = run_check(
            baseline,
            (results[0] if len(results) == 1 else results) if results else None,
            tolerance,
            record,
            suite,
            out,
            runs=runs,
        )
    except ValueError as err:  # a bad tolerance, --runs or suite name
        raise typer.BadParameter(str(err)) from None
    raise typer.Exit(code)


@app.command()
def suites() -> None:
    """List the sweep presets and what they are for."""
    from .harness.options import load_suite, suite_names

    for name in suite_names():
        desc = load_suite(name)["top"].get("description", "")
        typer.echo(f"{name:8s} {desc}")


@app.command()
@quiet_transformers()
def train(
    preset: Annotated[
        str, _opt("Model preset: paper-530m, mid, small, tiny. Shape flags override it.", "--preset")
    ] = "tiny",
    seq: Annotated[Optional[str], _opt(f"Sequence lengths N (default: the preset's). {LIST}", "--seq")] = None,
    attention: Annotated[
        str, _opt("Attentions to measure: dense, lighthouse (comma-separated).", "--attention")
    ] = "dense,lighthouse",
    recipe: Annotated[
        str,
        _opt(
            "throughput (time optimizer steps per point) or two-stage (train Lighthouse then dense against dense "
            "all the way, on the stdlib's bytes).",
            "--recipe",
        ),
    ] = "throughput",
    steps: Annotated[
        Optional[int],
        _opt(
            "Timed optimizer steps per point (default 3); with --recipe two-stage, the steps of each arm "
            "(default 200).",
            "--steps",
        ),
    ] = None,
    warmup: Annotated[
        int, _opt("Untimed steps after the first (which is timed alone as first_step_s).", "--warmup")
    ] = 1,
    batch: Annotated[Optional[int], _opt("Sequences per step.", "--batch")] = None,
    hidden: Annotated[Optional[int], _opt("Hidden size.", "--hidden")] = None,
    layers: Annotated[Optional[int], _opt("Decoder layers.", "--layers")] = None,
    ffn: Annotated[Optional[int], _opt("MLP intermediate size.", "--ffn")] = None,
    heads: Annotated[Optional[int], _opt("Query heads.", "--heads")] = None,
    kv_heads: Annotated[Optional[int], _opt("KV heads (GQA).", "--kv-heads")] = None,
    head_dim: Annotated[Optional[int], _opt("Head dimension.", "--head-dim")] = None,
    vocab: Annotated[
        Optional[int], _opt("Vocabulary size (the recipe's data is bytes: keep >= 256).", "--vocab")
    ] = None,
    topk: Annotated[Optional[int], _opt("Lighthouse budget k (a multiple of 128).", "--topk")] = None,
    levels: Annotated[Optional[int], _opt("Lighthouse pyramid levels L.", "--levels")] = None,
    pooling: Annotated[Optional[int], _opt("Lighthouse pooling factor p.", "--pooling")] = None,
    scorer: Annotated[Optional[str], _opt("Lighthouse scorer: norm, dilated, gla.", "--scorer")] = None,
    rope: Annotated[
        Optional[str],
        _opt(
            "Where the Lighthouse layers apply RoPE (docs/rope.md): pre, post, comma-separated (one Lighthouse "
            "point each; the two-stage recipe takes one). Default: the preset's (pre).",
            "--rope",
            metavar="NAMES",
        ),
    ] = None,
    dense_layers: Annotated[
        Optional[str],
        _opt("Layers that stay dense SDPA, e.g. 0,1,-2,-1 (negative from the end), or none.", "--dense-layers"),
    ] = None,
    lr: Annotated[Optional[float], _opt("Peak learning rate of AdamW.", "--lr")] = None,
    dtype: Annotated[
        Optional[str],
        _opt(
            "mixed (fp32 master weights and AdamW state, bf16 autocast), bf16 (everything in bf16), fp16, fp32. "
            "Default: mixed on CUDA, fp32 on CPU.",
            "--precision",
        ),
    ] = None,
    clip: Annotated[
        float, _opt("Gradient clipping: the global gradient norm is scaled down to this (0 = off).", "--clip")
    ] = 1.0,
    schedule: Annotated[
        str,
        _opt(
            "Two-stage: learning-rate schedule: constant (warm-up then flat, the paper's), wsd (warm-up, stable, "
            "linear decay over the last --decay-fraction in both arms), cosine.",
            "--schedule",
        ),
    ] = "constant",
    warmup_steps: Annotated[
        Optional[int], _opt("Two-stage: warm-up steps (default 5% of the steps).", "--warmup-steps")
    ] = None,
    decay_fraction: Annotated[float, _opt("Two-stage, wsd: share of the run that decays.", "--decay-fraction")] = 0.2,
    corpus_root: CorpusRoot = None,
    device: Device = None,
    cpu_threads: Annotated[
        int,
        _opt(
            "Intra-op threads on the CPU (the small presets' ops are too small to gain from more, and a busy "
            "machine makes extra threads spin).",
            "--cpu-threads",
        ),
    ] = 1,
    impl: Annotated[str, _opt("Lighthouse path: auto (Triton on CUDA), torch, triton.", "--impl")] = "auto",
    sdpa_backend: SdpaBackend = None,
    loss: Annotated[
        str,
        _opt(
            "Cross-entropy without full logits: auto (liger-kernel's fused one on CUDA when installed, else "
            "chunked), liger, chunked.",
            "--loss",
        ),
    ] = "auto",
    loss_chunk: Annotated[int, _opt("Tokens per chunk of the chunked cross-entropy.", "--loss-chunk")] = 8192,
    checkpointing: Annotated[
        bool,
        typer.Option("--checkpointing/--no-checkpointing", help="Activation checkpointing of every decoder layer."),
    ] = True,
    recompute: Annotated[
        bool,
        typer.Option(
            "--recompute/--no-recompute",
            help="Lighthouse layers keep only q, k, v for backward and run their forward again there (saves their "
            "sub-sequence tensors under checkpointing; costs one Lighthouse forward per layer).",
        ),
    ] = True,
    seed: Seed = 0,
    peak_tflops: Annotated[
        Optional[float], _opt("Device bf16 peak for MFU (default: the datasheet value of known GPUs).", "--peak-tflops")
    ] = None,
    dense_from: Annotated[
        float,
        _opt("Two-stage: fraction of the steps trained with Lighthouse before the switch to dense.", "--dense-from"),
    ] = 0.9,
    eval_every: Annotated[
        int, _opt("Two-stage: validation loss every this many steps (and at the switch and the end).", "--eval-every")
    ] = 25,
    val_windows: Annotated[int, _opt("Two-stage: batches of held-out windows per validation.", "--val-windows")] = 8,
    arm_minutes: Annotated[
        Optional[float],
        _opt(
            "Two-stage: choose --steps so that the dense arm trains about this many minutes (timed on 5 steps first).",
            "--arm-minutes",
        ),
    ] = None,
    save: Annotated[
        Optional[Path],
        _opt(
            "Two-stage: save each arm's final model (save_pretrained, Lighthouse settings in config.json) under "
            "this folder.",
            "--save",
        ),
    ] = None,
    out: Out = None,
    resume: Resume = False,
    plot: Plot = True,
) -> None:
    """Training-step benchmark of a Llama model (transformers, random init) with dense or Lighthouse attention:
    tokens/s, attention share, peak memory, MFU per point (train.csv); or the two-stage recipe (curve.csv)."""
    from .train import command

    try:
        if cpu_threads < 1:
            raise ValueError(f"--cpu-threads must be >= 1, got {cpu_threads}")
        run = command.plan(
            preset,
            seq,
            attention,
            steps=steps,
            warmup=warmup,
            device=device,
            dtype=dtype,
            impl=impl,
            sdpa_backend=sdpa_backend,
            loss=loss,
            loss_chunk=loss_chunk,
            checkpointing=checkpointing,
            recompute=recompute,
            seed=seed,
            peak_tflops=peak_tflops,
            recipe=recipe,
            clip=clip,
            dense_layers=dense_layers,
            batch=batch,
            hidden=hidden,
            layers=layers,
            ffn=ffn,
            heads=heads,
            kv_heads=kv_heads,
            head_dim=head_dim,
            vocab=vocab,
            topk=topk,
            levels=levels,
            pooling=pooling,
            scorer=scorer,
            lr=lr,
            rope=rope,
        )
        if run.options.device.type == "cpu":
            import torch

            torch.set_num_threads(cpu_threads)
        if run.recipe == "two-stage":
            from .train.recipe import RecipeOptions, run_recipe

            options = RecipeOptions(
                steps=steps or 200,
                dense_from=dense_from,
                eval_every=eval_every,
                val_windows=val_windows,
                arm_minutes=arm_minutes,
                schedule=schedule,
                warmup_steps=warmup_steps,
                decay_fraction=decay_fraction,
            )
            corpus = None
            if corpus_root:
                from .train.data import build_corpus

                corpus = build_corpus([r for r in corpus_root.split(",") if r])
            code = run_recipe(
                run.preset,
                run.options,
                options,
                out or command.default_out(run.recipe),
                save=save,
                argv=sys.argv,
                clip=clip,
                corpus=corpus,
                resume=resume,
            )
            raise typer.Exit(code)
        from .train.benchmark import run_points

        if save is not None or arm_minutes is not None:
            raise ValueError("--save and --arm-minutes apply to --recipe two-stage")
        code = run_points(
            run.points,
            run.options,
            out or command.default_out(run.recipe),
            resume=resume,
            plot=plot,
            argv=sys.argv,
            options={
                "preset": run.preset_options(),
                "rope": run.ropes,
                "steps": run.options.steps,
                "warmup": warmup,
                "loss": loss,
                "impl": impl,
                "sdpa_backend": run.options.sdpa_backend,
                "dtype": run.options.dtype,
                "clip": clip,
                "checkpointing": checkpointing,
                "recompute": recompute,
                "seed": seed,
            },
        )
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    raise typer.Exit(code)


@app.command()
def study(
    plan: Annotated[
        str,
        _opt(
            "A study plan: a name from suites/studies (paper, cpu) or a .toml file. Default: paper on CUDA, cpu "
            "on the CPU.",
            "--plan",
        ),
    ] = "",
    experiments: Annotated[
        Optional[str],
        _opt("Run only these experiments of the plan, comma-separated (e.g. E1,E2).", "--experiments", metavar="NAMES"),
    ] = None,
    seeds: Annotated[
        Optional[str], _opt("Seeds for every experiment, e.g. 0,1,2 (default: the plan's).", "--seeds", metavar="INTS")
    ] = None,
    concurrency: Annotated[
        int,
        _opt("Arms trained at once, each its own process (small presets leave a GPU mostly idle).", "--concurrency"),
    ] = 1,
    corpus_root: CorpusRoot = None,
    device: Device = None,
    sdpa_backend: SdpaBackend = None,
    deadline_minutes: Annotated[
        Optional[float],
        _opt(
            "Stop the jobs still running after this many minutes (finished jobs kept; --resume runs the rest).",
            "--deadline-minutes",
        ),
    ] = None,
    snapshots: Annotated[
        Optional[Path], _opt("Scratch folder for the trunks' snapshots (default OUT/snapshots).", "--snapshots")
    ] = None,
    clock: Annotated[
        bool,
        typer.Option(
            "--clock/--no-clock",
            help="Time solo steps of each experiment's modes before the jobs start (the clock of every wall-clock "
            "figure).",
        ),
    ] = True,
    out: Out = None,
    resume: Resume = False,
    dry_run: DryRun = False,
) -> None:
    """The two-stage study: experiments over seeds (two-stage, recovery curve, stage 1 by sparsity), trained the
    way the paper trains, several arms at once; means and 95% intervals in study.md, summary.csv and charts."""
    import torch

    from .train.study_plan import expand, load_plan
    from .train.study_run import StudyError, run_study

    try:
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA device is available")
        if concurrency < 1:
            raise ValueError(f"--concurrency must be >= 1, got {concurrency}")
        if deadline_minutes is not None and not deadline_minutes > 0:
            raise ValueError(f"--deadline-minutes must be > 0, got {deadline_minutes}")
        if sdpa_backend not in (None, "auto", "cudnn", "flash", "efficient", "math"):
            raise ValueError(f"--sdpa-backend must be one of cudnn, flash, efficient, math, auto, got {sdpa_backend!r}")
        seed_list = None
        if seeds:
            try:
                seed_list = [int(x) for x in seeds.split(",") if x.strip()]
            except ValueError:
                raise ValueError(f"--seeds must be comma-separated integers, got {seeds!r}") from None
            if not seed_list or any(x < 0 for x in seed_list):
                raise ValueError(f"--seeds must list integers >= 0, got {seeds!r}")
        chosen = load_plan(
            plan or ("paper" if dev.type == "cuda" else "cpu"),
            [x.strip() for x in experiments.split(",")] if experiments else None,
        )
        if dry_run:
            st = expand(chosen, seed_list)
            for job in st.jobs.values():
                typer.echo(
                    f"{job.job_id}: {job.plan.start} steps {job.plan.from_step}..{job.plan.steps}"
                    + (f", dense from {job.plan.switch_step}" if job.plan.switch_step is not None else "")
                    + (f", snapshots at {list(job.plan.snapshot_at)}" if job.plan.snapshot_at else "")
                    + f", N={job.preset.seq} B={job.preset.batch} k={job.preset.topk} {job.schedule.kind}"
                )
            typer.echo(f"{len(st.jobs)} jobs, {len(st.arms)} arms")
            return
        from datetime import datetime

        target = out or Path("out") / f"study-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
        code = run_study(
            chosen,
            target,
            device=dev,
            seeds=seed_list,
            concurrency=concurrency,
            corpus_root=[r for r in corpus_root.split(",") if r] if corpus_root else None,
            resume=resume,
            sdpa_backend=None
            if sdpa_backend == "auto"
            else (sdpa_backend or ("cudnn" if dev.type == "cuda" else None)),
            snapshots=snapshots,
            deadline_minutes=deadline_minutes,
            clock=clock,
            argv=sys.argv,
        )
    except (ValueError, StudyError) as err:
        raise typer.BadParameter(str(err)) from None
    raise typer.Exit(code)


@app.command()
@quiet_transformers()
@grid_options
def quality(
    point: dict,
    rope: Ropes = None,
    rope_theta: RopeTheta = None,
    device: Device = None,
    suite: Suite = None,
    inputs: Annotated[
        str,
        _opt(
            "Inputs: random, needle, needle-rope (needles planted in RoPE-rotated q, k: the placements can "
            "differ), checkpoint:PATH (a `train --save` folder), comma-separated. Default random,needle.",
            "--inputs",
        ),
    ] = "random,needle",
    needles: Annotated[
        int, _opt("Needles planted per depth bucket (10 buckets) in every batch row and head. Default 4.", "--needles")
    ] = 4,
    heldout: Annotated[
        Optional[Path],
        _opt(
            "Held-out text for checkpoint inputs: a .txt (the model's tokenizer) or a .pt tensor of token ids. "
            "Default: PATH/heldout_tokens.pt, else the held-out split of train's corpus.",
            "--heldout",
        ),
    ] = None,
    seed: Seed = None,
    out: Out = None,
    resume: Resume = False,
    plot: Plot = True,
    dry_run: DryRun = False,
) -> None:
    """What each configuration loses against dense causal attention: output error, per-token cosine, coverage
    and needle recall per point of the grid; writes quality.csv, machine.json and charts. The dense reference is
    always float32; --suite is read as `sweep` reads it (timing keys ignored), default quality on CUDA and quick
    on the CPU."""
    import torch

    from .harness.outdir import default_out
    from .quality.runner import describe, resolve, run

    flags = {**point, "rope": rope, "rope_theta": rope_theta, "device": device, "seed": seed}
    try:
        spec = resolve(
            suite,
            {k: v for k, v in flags.items() if v is not None},
            inputs,
            needles,
            heldout,
            torch.cuda.is_available(),
        )
        if dry_run:
            describe(spec)
            return
        if resume and out is None:
            raise ValueError("--resume needs --out: the folder of the run to continue")
        code = run(spec, out or default_out("quality"), resume=resume, plot=plot, argv=sys.argv)
    except ValueError as err:  # a bad option, --out in the way, a --resume of another run
        raise typer.BadParameter(str(err)) from None
    raise typer.Exit(code)


@app.command()
def recommend(
    results: Annotated[List[Path], arg("RESULTS")],
    seq: Annotated[
        str,
        _opt("The sequence length to recommend for, e.g. 96k (only rows measured at exactly this N count).", "--seq"),
    ] = "",
    min_needle_recall: Annotated[
        Optional[float], _opt("Bar: needle recall at least this (0..1), from needle inputs.", "--min-needle-recall")
    ] = None,
    max_out_err: Annotated[
        Optional[float], _opt("Bar: out_rel_err at most this, from random inputs.", "--max-out-err")
    ] = None,
    inputs: Annotated[
        Optional[str],
        _opt("Read the bar's figure from these quality inputs instead (random, needle, checkpoint:PATH).", "--inputs"),
    ] = None,
    passes: Annotated[
        str, _opt("Sweep pass whose speedup ranks the configurations: fwd, bwd, fwdbwd. Default fwdbwd.", "--pass")
    ] = "fwdbwd",
    baseline: Annotated[
        str, _opt("Dense baseline of the speedup: cudnn, flash, efficient, math, flex. Default cudnn.", "--baseline")
    ] = "cudnn",
    runners_up: Annotated[int, _opt("Runners-up to list. Default 5.", "--runners-up")] = 5,
    rope: Annotated[
        Optional[str],
        _opt(
            "RoPE placements to choose among: pre, post, comma-separated. Default: every one measured.",
            "--rope",
            metavar="NAMES",
        ),
    ] = None,
    out: Annotated[Optional[Path], _opt("Also write the recommendation (Markdown) to this file.", "--out")] = None,
) -> None:
    """The fastest measured configuration that meets a quality bar at one N, with runners-up, or which
    measurements are missing. Exit 0: a configuration meets the bar; 1: none does or nothing was measured.
    RESULTS: folders (searched recursively) or CSVs, sweep results.csv and quality quality.csv.
    """
    from .harness.options import parse_option, parse_size
    from .harness.outdir import writable_file
    from .harness.tables import BASELINES, PASSES
    from .quality.recommend import Bar, load, recommend as choose, render

    try:
        if not seq:
            raise ValueError("--seq is required, e.g. --seq 96k")
        n = parse_size(seq, "--seq")
        if (min_needle_recall is None) == (max_out_err is None):
            raise ValueError("give exactly one bar: --min-needle-recall X or --max-out-err X")
        if runners_up < 0:
            raise ValueError(f"--runners-up must be >= 0, got {runners_up}")
        ropes = parse_option("rope", rope) if rope is not None else None
        if out is not None:
            writable_file(out)
        if passes not in PASSES:
            raise ValueError(f"--pass must be one of {', '.join(PASSES)}, got {passes!r}")
        if baseline not in BASELINES:
            raise ValueError(f"--baseline must be one of {', '.join(BASELINES)}, got {baseline!r}")
        if min_needle_recall is not None:
            if not 0 <= min_needle_recall <= 1:
                raise ValueError(f"--min-needle-recall must be in [0, 1], got {min_needle_recall}")
            bar = Bar("needle_recall", min_needle_recall, inputs or "needle")
        else:
            if max_out_err < 0:
                raise ValueError(f"--max-out-err must be >= 0, got {max_out_err}")
            bar = Bar("out_rel_err", max_out_err, inputs or "random")
        sweep_rows, quality_rows = load(results)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    rec = choose(sweep_rows, quality_rows, n, bar, passes, BASELINES[baseline], ropes)
    text = render(rec, runners_up)
    typer.echo(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    raise typer.Exit(0 if rec.chosen else 1)


@app.command()
@quiet_transformers()
def passkey(
    models: Annotated[List[Path], arg("MODELS")],
    lengths: Annotated[
        Optional[str],
        _opt(
            "Prompt lengths in bytes, at most the models' trained context, e.g. 2k,8k,16k. Default: the trained "
            "context and four halvings.",
            "--lengths",
            metavar="SIZES",
        ),
    ] = None,
    depths: Annotated[
        str,
        _opt(
            "Depths of the passkey in percent of the filler, 0 (first) to 100 (just before the question). "
            "Default 0,10,...,100.",
            "--depths",
            metavar="PERCENTS",
        ),
    ] = "0,10,20,30,40,50,60,70,80,90,100",
    attention: Annotated[
        str,
        _opt(
            "Attention to evaluate each model with: saved (as config.json says), dense (dense switch on), "
            "lighthouse (switch off), comma-separated. Default saved.",
            "--attention",
            metavar="NAMES",
        ),
    ] = "saved",
    digits: Annotated[int, _opt("Digits of the passkey (1..20). Default 5.", "--digits")] = 5,
    trials: Annotated[
        int, _opt("Prompts (different passkeys and filler) per depth and length. Default 10.", "--trials")
    ] = 10,
    batch: Annotated[int, _opt("Prompts per forward pass. Default 8.", "--batch")] = 8,
    filler: Annotated[
        str,
        _opt(
            "Filler text: heldout (held-out stdlib bytes of train's corpus) or sentence (one neutral line "
            "repeated). Default heldout.",
            "--filler",
        ),
    ] = "heldout",
    device: Device = None,
    dtype: Annotated[
        Optional[str], _opt("Model dtype: bf16, fp16, fp32. Default bf16 on CUDA, fp32 on the CPU.", "--dtype")
    ] = None,
    seed: Seed = 0,
    out: Out = None,
    resume: Resume = False,
    plot: Plot = True,
) -> None:
    """Passkey retrieval of trained byte-level models: exact-match accuracy per depth and length, scored by
    teacher-forced argmax; writes passkey.csv, summary.md (with the chance verdict) and heatmaps. MODELS: model
    folders, `train --save DIR` arms (DIR/lighthouse-then-dense, DIR/dense)."""
    from .harness.outdir import default_out
    from .quality.passkey_command import resolve, run as run_passkey

    try:
        if device is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        spec = resolve(models, lengths, depths, attention, digits, trials, batch, filler, seed, device, dtype)
        if resume and out is None:
            raise ValueError("--resume needs --out: the folder of the run to continue")
        code = run_passkey(spec, out or default_out("passkey"), resume=resume, plot=plot, argv=sys.argv)
    except ValueError as err:  # a bad option (PasskeyError), --out in the way, a --resume of another run
        raise typer.BadParameter(str(err)) from None
    raise typer.Exit(code)


def main(argv: Optional[List[str]] = None) -> None:  # pragma: no cover - `python -m lighthouse.cli`
    app(argv)


if __name__ == "__main__":  # pragma: no cover
    main()
