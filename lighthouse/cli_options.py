"""The options several `lighthouse-bench` commands share, each declared once: Typer `Annotated` aliases (a
command writes `out: Out = None`), and the options of one grid point as a group a command takes whole with
`@grid_options`. What a shared option defaults to per command is in the command's own text and docs/cli.md.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Annotated, Optional

import typer

LIST = "A list: 8k,96k,128k; a range doubles: 8k..256k; k = 1024, m = 1048576."


def opt(help_: str, *names: str, metavar: Optional[str] = None):
    """An option with its help and a metavar that says what to write (typer's own shows <str>, <int>)."""
    if metavar is None:  # say what to write: --seq SEQ rather than --seq <str> (flags ignore it)
        long = next((n for n in names if n.startswith("--")), names[0] if names else "")
        metavar = long.split("/")[0].lstrip("-").replace("-", "_").upper() or None
    return typer.Option(*names, help=help_, show_default=False, metavar=metavar)


def arg(metavar: str, **checks):
    """A positional argument, described in its command's docstring (hidden: click would list it apart from it)."""
    return typer.Argument(metavar=metavar, hidden=True, **checks)


#: One point of the grid (lighthouse.harness.points), option by option: what `@grid_options` adds.
GRID = {
    "seq": opt(f"Sequence lengths N. {LIST}", "--seq", metavar="SIZES"),
    "topk": opt("Budgets k (multiples of 128), e.g. 1024,4096 or 512..4096.", "--topk", metavar="SIZES"),
    "levels": opt("Pyramid levels L; a range steps by one: 2..4 = 2,3,4.", "--levels", metavar="INTS"),
    "pooling": opt("Pooling factors p, e.g. 2,4,8 (or 2..8).", "--pooling", metavar="INTS"),
    "scorer": opt(
        "Selection scorers: norm, dilated, gla (gla needs flash-linear-attention).", "--scorer", metavar="NAMES"
    ),
    "batch": opt("Batch sizes B.", "--batch", metavar="INTS"),
    "heads": opt("Query heads Hq.", "--heads", metavar="INTS"),
    "kv_heads": opt("KV heads Hkv (GQA); default: equal to --heads.", "--kv-heads", metavar="INTS"),
    "head_dim": opt("Head dims D.", "--head-dim", metavar="INTS"),
    "dtype": opt(
        "Dtypes of q, k, v: bf16, fp16, fp32 (default bf16 on CUDA, fp32 on the CPU).", "--dtype", metavar="NAMES"
    ),
}


def grid_options(command):
    """Give `command` the grid point's options (GRID, before its own, in the same order on every command); it
    receives their values as one dict, `point` (None where not given). Typer reads the signature set here."""
    own = inspect.signature(command, eval_str=True)
    grid = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[str], o])
        for name, o in GRID.items()
    ]
    rest = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own.parameters.values() if p.name != "point"]

    @functools.wraps(command)
    def with_grid(**options):
        return command(point={name: options.pop(name) for name in GRID}, **options)

    with_grid.__signature__ = own.replace(parameters=grid + rest)
    with_grid.__annotations__ = {p.name: p.annotation for p in grid + rest}
    return with_grid


Ropes = Annotated[
    Optional[str],
    opt(
        "Where RoPE is applied (docs/rope.md): pre (q, k arrive rotated), post (rotated after selection), "
        "comma-separated, e.g. pre,post. Default pre.",
        "--rope",
        metavar="NAMES",
    ),
]
RopeTheta = Annotated[
    Optional[float],
    opt(
        "RoPE base of the post rows (raw random q, k, rotated at positions 0..N-1) and of quality's needle-rope "
        "inputs. Default 10000.",
        "--rope-theta",
        metavar="BASE",
    ),
]
Device = Annotated[Optional[str], opt("cuda or cpu. Default: cuda when available.", "--device", metavar="cuda|cpu")]
Out = Annotated[Optional[Path], opt("Output folder. Default: out/<command>-<timestamp>.", "--out", metavar="DIR")]
Resume = Annotated[bool, opt("Continue the run in --out: keep what finished, run the rest (docs/cli.md).", "--resume")]
Plot = Annotated[bool, typer.Option("--plot/--no-plot", help="Draw the charts after the run.")]
DryRun = Annotated[bool, opt("Print what would run, and exit.", "--dry-run")]
Seed = Annotated[
    Optional[int],
    opt("Seed of everything random (inputs, needles, weights, data order). Default 0.", "--seed", metavar="N"),
]
Suite = Annotated[
    Optional[str],
    opt(
        "A preset (`lighthouse-bench suites` lists them) or a .toml file (a name without .toml or / is a preset); "
        "options given override it.",
        "--suite",
        metavar="PRESET|FILE",
    ),
]
Warmup = Annotated[Optional[int], opt("Untimed calls before timing (>= 1). Default 3.", "--warmup", metavar="N")]
Rep = Annotated[Optional[int], opt("Most timed repetitions. Default 20.", "--rep", metavar="N")]
MaxSeconds = Annotated[
    Optional[float],
    opt("Stop repeating after this many seconds (once the fewest are done).", "--max-seconds", metavar="SECONDS"),
]
SdpaBackend = Annotated[
    Optional[str],
    opt(
        "SDPA backend of Lighthouse's sub-sequence call (and, in train and study, preferred by dense layers): "
        "cudnn, flash, efficient, math, auto. Default: cudnn on CUDA.",
        "--sdpa-backend",
        metavar="NAME",
    ),
]
CorpusRoot = Annotated[
    Optional[str],
    opt(
        "Folders whose *.py files are the training corpus, comma-separated. Default: this interpreter's stdlib "
        "and site-packages.",
        "--corpus-root",
        metavar="DIRS",
    ),
]
