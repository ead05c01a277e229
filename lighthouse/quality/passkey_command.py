"""`lighthouse-bench passkey`: passkey accuracy of trained models over depth x length, into passkey.csv,
one heatmap per (model, attention), and a summary that says when a model is at chance everywhere.

One row per (model folder, attention, length, depth), written as it finishes by the harness's row loop
(--out, --resume, Ctrl-C and failures as in every command). A cell is "above chance" when guessing
(1/10 per digit among the ten digits, 10^-digits per exact match) would do as well with probability below
ALPHA (one-sided binomial tail; per digit on the digit-only argmax, see lighthouse/quality/passkey_prompts.py);
a model with no cell above chance gets the line "at chance in every cell: cannot learn the task within this
budget" and no heatmap (a chart of noise would invite reading patterns into it).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..harness.chart_text import fit
from ..harness.failures import classify
from ..harness.loop import Item, RowLoop
from ..harness.tables import PASSKEY, read_rows
from . import passkey_prompts as pk

PASSKEY_FILE, SUMMARY_FILE = "passkey.csv", "summary.md"
ATTENTIONS = ("saved", "dense", "lighthouse")
ALPHA = 1e-3
TRAIN_INFO = "lighthouse-train.json"
#: predict(tokens (B, N) int64, keep) -> (B, keep) argmax byte ids at the last `keep` positions.
Predict = Callable[..., object]


class PasskeyError(ValueError):
    """A bad option value (the message names the option)."""


@dataclass
class PasskeySpec:
    models: List[Path]
    lengths: List[int]
    depths: List[float]  # percent, 0..100
    attentions: List[str] = field(default_factory=lambda: ["saved"])
    digits: int = 5
    trials: int = 10
    batch: int = 8
    filler: str = "heldout"
    seed: int = 0
    device: str = "cpu"
    dtype: str = "fp32"

    def options(self) -> dict:
        return {
            "models": [str(m) for m in self.models],
            "lengths": self.lengths,
            "depths": self.depths,
            "attention": self.attentions,
            "digits": self.digits,
            "trials": self.trials,
            "batch": self.batch,
            "filler": self.filler,
            "seed": self.seed,
            "device": self.device,
            "dtype": self.dtype,
        }


def trained_context(model_dir: Path) -> int:
    """The sequence length the folder's model was trained at: lighthouse-train.json's preset seq, else the
    config's max_position_embeddings."""
    model_dir = Path(model_dir)
    info = model_dir / TRAIN_INFO
    if info.exists():
        seq = json.loads(info.read_text()).get("preset", {}).get("seq")
        if seq:
            return int(seq)
    cfg = model_dir / "config.json"
    if not cfg.exists():
        raise PasskeyError(f"MODELS: {model_dir} is not a save_pretrained folder (no config.json)")
    text = json.loads(cfg.read_text())
    text = text.get("text_config", text)
    return int(text["max_position_embeddings"])


def parse_depths(text: str) -> List[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise PasskeyError(f"--depths: {text!r} is not a comma-separated list of percentages, e.g. 0,50,100") from None
    bad = [v for v in values if not 0 <= v <= 100]
    if not values or bad:
        raise PasskeyError(f"--depths must be percentages in 0..100, got {text!r}")
    return sorted(set(values))


def resolve(
    models: Sequence[Path],
    lengths: Optional[str],
    depths: str,
    attention: str,
    digits: int,
    trials: int,
    batch: int,
    filler: str,
    seed: int,
    device: str,
    dtype: Optional[str],
) -> PasskeySpec:
    """Check every option against the models (before any model is loaded)."""
    from ..harness.options import parse_size

    if not models:
        raise PasskeyError("MODELS: give at least one model folder (a `train --save` arm folder)")
    for m in models:
        if not Path(m).is_dir():
            raise PasskeyError(f"MODELS: no such folder {m}")
    if not 1 <= digits <= pk.MAX_DIGITS:
        raise PasskeyError(f"--digits must be in 1..{pk.MAX_DIGITS}, got {digits}")
    if trials < 1:
        raise PasskeyError(f"--trials must be >= 1, got {trials}")
    if batch < 1:
        raise PasskeyError(f"--batch must be >= 1, got {batch}")
    if filler not in pk.FILLERS:
        raise PasskeyError(f"--filler must be one of {', '.join(pk.FILLERS)}, got {filler!r}")
    attentions = [a.strip() for a in attention.split(",") if a.strip()]
    if not attentions or any(a not in ATTENTIONS for a in attentions):
        raise PasskeyError(f"--attention must be a list of {', '.join(ATTENTIONS)}, got {attention!r}")
    if dtype is not None and dtype not in ("bf16", "fp16", "fp32"):
        raise PasskeyError(f"--dtype must be one of bf16, fp16, fp32, got {dtype!r}")
    context = min(trained_context(m) for m in models)
    floor = pk.fixed_bytes(digits)
    if lengths:
        sizes = sorted({parse_size(x.strip(), "--lengths") for x in lengths.split(",") if x.strip()})
    else:  # the trained context and four halvings above the prompt's fixed parts
        sizes = sorted({context >> i for i in range(5) if context >> i >= floor})
    for n in sizes:
        if n > context:
            raise PasskeyError(f"--lengths: {n} is above the trained context of the models ({context} bytes)")
        if n < floor:
            raise PasskeyError(
                f"--lengths: {n} is below the prompt's fixed parts ({floor} bytes: needle, "
                f"question and {digits} digits)"
            )
    if not sizes:
        raise PasskeyError("--lengths: no length given")
    return PasskeySpec(
        [Path(m) for m in models],
        sizes,
        parse_depths(depths),
        attentions,
        digits,
        trials,
        batch,
        filler,
        seed,
        device,
        dtype or ("bf16" if device.startswith("cuda") else "fp32"),
    )


def load_predict(model_dir: Path, attention: str, device, dtype: str) -> Predict:
    """A predict function for one saved model: "saved" runs it as config.json says; "dense" / "lighthouse"
    set the dense switch of a Lighthouse model (lighthouse.hf.set_dense). A folder without a lighthouse entry
    runs with transformers' SDPA and only as "saved" or "dense"."""
    import torch
    from transformers import AutoModelForCausalLM

    from .. import hf

    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    has_lighthouse = hf.CONFIG_KEY in cfg
    if attention == "lighthouse" and not has_lighthouse:
        raise ValueError(f"--attention lighthouse: {model_dir} has no Lighthouse settings (a dense model)")
    torch_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype]
    if has_lighthouse:
        hf.register()
    model = (
        AutoModelForCausalLM.from_pretrained(
            model_dir, attn_implementation="lighthouse" if has_lighthouse else "sdpa", dtype=torch_dtype
        )
        .to(device)
        .eval()
    )
    if has_lighthouse:
        hf.configure_loaded(model)  # rope='post' layers need their hooks again (not saved in the folder)
        if attention != "saved":
            hf.set_dense(model, attention == "dense")

    @torch.no_grad()
    def predict(tokens, keep: int):
        """(argmax over all bytes, argmax over the ten digit bytes) at the last `keep` positions."""
        logits = model(input_ids=tokens.to(device), use_cache=False, logits_to_keep=keep).logits[:, -keep:]
        lo, hi = pk.DIGIT_BYTES
        return logits.argmax(-1).cpu(), (logits[..., lo:hi].argmax(-1) + lo).cpu()

    return predict


def measure_cell(predict: Predict, length: int, depth_pct: float, spec: PasskeySpec, heldout: Optional[bytes]) -> dict:
    """Run the trials of one (length, depth) in batches; returns the figures of its row."""
    import torch

    prompts = [
        pk.build_prompt(
            length, depth_pct / 100, digits=spec.digits, seed=spec.seed, trial=t, filler=spec.filler, heldout=heldout
        )
        for t in range(spec.trials)
    ]
    hits = exact = digit_only = 0
    for i in range(0, len(prompts), spec.batch):
        chunk = prompts[i : i + spec.batch]
        tail, digits_tail = predict(torch.tensor([p.tokens for p in chunk], dtype=torch.long), spec.digits + 1)
        for p, row, drow in zip(chunk, tail.tolist(), digits_tail.tolist()):
            right = pk.score(row, p)
            hits += right
            exact += right == spec.digits
            digit_only += pk.score(drow, p)
    total = spec.trials * spec.digits
    c_digit, c_exact = pk.chance(spec.digits)
    # Guessing among the ten digits is the fair null per digit (the free argmax may rarely emit a digit at all).
    p_value = min(pk.above_chance_p(digit_only, total, c_digit), pk.above_chance_p(exact, spec.trials, c_exact))
    return {
        "exact_acc": exact / spec.trials,
        "digit_acc": hits / total,
        "digit_hits": hits,
        "chance_digit": c_digit,
        "chance_exact": c_exact,
        "p_chance": p_value,
        "above_chance": int(p_value < ALPHA),
        "digit_only_acc": digit_only / total,
        "digit_only_hits": digit_only,
    }


def _heldout_text() -> bytes:
    from ..train.data import build_corpus, decode

    return decode(build_corpus().val)


def run(
    spec: PasskeySpec,
    out: Path,
    *,
    resume: bool = False,
    plot: bool = True,
    argv=None,
    console=None,
    loader: Callable[..., Predict] = load_predict,
) -> int:
    """Every (model, attention, length, depth) into out/passkey.csv through the harness's row loop, then
    summary.md and heatmaps. Returns the exit code (0; 130 on Ctrl-C, finished rows kept; 1 nothing ok)."""
    import torch

    loop = RowLoop(
        "passkey",
        out,
        PASSKEY,
        PASSKEY_FILE,
        resume=resume,
        options=spec.options(),
        argv=argv,
        console=console,
        show=_row_line,
    )
    unscored = []

    def scored(row: dict) -> bool:  # ok rows written before digit_only_* existed are measured again
        fresh = not (row.get("status") == "ok" and not str(row.get("digit_only_hits", "")).strip())
        if not fresh:
            unscored.append(row)
        return fresh

    done = set(loop.prepare(keep=scored))
    if unscored:
        loop.console.print(
            f"--resume: {len(unscored)} ok rows have no digit-only score (written before it existed): measured again"
        )
    loop.begin()
    heldout = _heldout_text() if spec.filler == "heldout" else None
    device = torch.device(spec.device)
    items = []
    for model_dir in spec.models:
        for attention in spec.attentions:
            base = {
                "model": str(model_dir),
                "attention": attention,
                "digits": spec.digits,
                "trials": spec.trials,
                "filler": spec.filler,
                "device": spec.device,
                "dtype": spec.dtype,
                "seed": spec.seed,
            }
            cells = [
                (n, d)
                for n in spec.lengths
                for d in spec.depths
                if loop.key({**base, "length": n, "depth": d}) not in done
            ]
            if cells:
                items.append(
                    Item(
                        f"{model_dir} ({attention})",
                        lambda m=model_dir, a=attention, b=base, c=cells: _model_rows(
                            m, a, b, c, spec, heldout, device, loader
                        ),
                        weight=len(cells),
                    )
                )
    outcome = loop.run(items, total=sum(i.weight for i in items), device=device)

    def summary(rows):
        lines = summarize(rows)
        text = "# Passkey retrieval\n\n" + "\n".join(f"- {line}" for line in lines) + "\n"
        (Path(out) / SUMMARY_FILE).write_text(text)
        for line in lines:
            loop.console.print(line, highlight=False, markup=False)

    def charts(path: Path):
        return heatmaps(read_rows(path, PASSKEY)[0], Path(out)) if plot else []

    return loop.finish(outcome, summary=summary, charts=charts)


def _row_line(row: dict) -> str:
    return (
        f"{row['model']} ({row['attention']}) length={row['length']} depth={row['depth']:g}%: {row['status']} "
        f"exact={row.get('exact_acc', '-')}"
    )


def _model_rows(model_dir: Path, attention: str, base: dict, cells, spec: PasskeySpec, heldout, device, loader):
    """The rows of one (model, attention): the model loaded once; a model that cannot load gives every cell
    its failure (one bad folder never ends the run)."""
    from ..harness.device import free_memory

    try:
        predict, load_error = loader(model_dir, attention, device, spec.dtype), None
    except Exception as exc:  # noqa: BLE001 - the rows say why
        predict, load_error = None, classify(exc)
    for n, d in cells:
        t0 = time.perf_counter()
        row = {**base, "length": n, "depth": d}
        if load_error:
            row.update(status=load_error[0], reason=load_error[1])
        else:
            try:
                row.update(measure_cell(predict, n, d, spec, heldout), status="ok")
            except Exception as exc:  # noqa: BLE001 - the row records it; the run goes on
                row["status"], row["reason"] = classify(exc)
                free_memory(device)
        row["seconds"] = time.perf_counter() - t0
        yield row
    predict = None
    free_memory(device)


def _groups(rows: Sequence[dict]) -> Dict[Tuple[str, str], List[dict]]:
    groups: Dict[Tuple[str, str], List[dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["attention"]), []).append(r)
    return groups


def at_chance(rows: Sequence[dict]) -> bool:
    """True when the model has ok cells and none of them is above chance."""
    ok = [r for r in rows if r.get("status") == "ok"]
    return bool(ok) and not any(str(r.get("above_chance")) == "1" for r in ok)


def summarize(rows: Sequence[dict]) -> List[str]:
    """One line per (model, attention): its mean exact-match accuracy against chance, or the at-chance verdict."""
    lines = []
    for (model, attention), group in _groups(rows).items():
        ok = [r for r in group if r.get("status") == "ok"]
        if not ok:
            lines.append(f"{model} ({attention}): no finished cell ({len(group)} rows not ok)")
            continue
        exact = [float(r["exact_acc"]) for r in ok]
        digit = [float(r["digit_acc"]) for r in ok]
        chance = f"chance {float(ok[0]['chance_digit']):g} per digit, {float(ok[0]['chance_exact']):g} exact"
        only = [float(r["digit_only_acc"]) for r in ok if str(r.get("digit_only_acc", "")).strip()]
        only_txt = f", best digit-only accuracy {max(only):.3g}" if only else ""
        if at_chance(group):
            lines.append(
                f"{model} ({attention}): at chance in every cell ({len(ok)} cells; best exact-match "
                f"{max(exact):.3g}, best digit accuracy {max(digit):.3g}{only_txt}; {chance}): cannot "
                f"learn the task within this budget"
            )
        else:
            above = sum(str(r["above_chance"]) == "1" for r in ok)
            only_mean = f", mean digit-only accuracy {sum(only) / len(only):.3g}" if only else ""
            lines.append(
                f"{model} ({attention}): mean exact-match {sum(exact) / len(exact):.3g}, mean digit "
                f"accuracy {sum(digit) / len(digit):.3g}{only_mean}{only_txt} ({chance}); {above} of "
                f"{len(ok)} cells above chance"
            )
    return lines


def _slug(model: str, attention: str) -> str:
    parts = Path(model).parts[-2:]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "_".join(parts)) + f"_{attention}"


def heatmaps(rows: Sequence[dict], out: Path) -> List[Path]:
    """passkey_<model>_<attention>.png: accuracy, depth (rows) x length (columns), for each model not at
    chance everywhere: exact match (greedy decoding's) when any cell has one, else the digit-only accuracy
    (a model may be above chance among the digits while never writing the whole passkey)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    written = []
    for (model, attention), group in _groups(rows).items():
        ok = [r for r in group if r.get("status") == "ok"]
        if not ok or at_chance(group):
            continue
        lengths = sorted({int(r["length"]) for r in ok})
        depths = sorted({float(r["depth"]) for r in ok})
        use_exact = any(float(r["exact_acc"]) > 0 for r in ok) or not all(
            str(r.get("digit_only_acc", "")).strip() for r in ok
        )
        figure = "exact_acc" if use_exact else "digit_only_acc"
        grid = np.full((len(depths), len(lengths)), np.nan)
        for r in ok:
            grid[depths.index(float(r["depth"])), lengths.index(int(r["length"]))] = float(r[figure])
        fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(lengths), 1.2 + 0.4 * len(depths)))
        im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto", origin="upper")
        ax.set_xticks(range(len(lengths)), [str(n) for n in lengths])
        ax.set_yticks(range(len(depths)), [f"{d:g}%" for d in depths])
        ax.set_xlabel("length (bytes)")
        ax.set_ylabel("passkey depth")
        for (i, j), v in np.ndenumerate(grid):
            if not np.isnan(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="w" if v < 0.5 else "k")
        if use_exact:
            title = f"exact-match accuracy (chance {float(ok[0]['chance_exact']):g})"
        else:
            title = f"digit-only accuracy, no exact match anywhere (chance {float(ok[0]['chance_digit']):g})"
        # wrapped to the figure's width: a one-length heatmap is 2 inches wide (its title was cut at the edges)
        ax.set_title(fit(f"{Path(model).name} ({attention}): {title}", fig.get_figwidth(), 9), fontsize=9)
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        target = out / f"passkey_{_slug(model, attention)}.png"
        fig.savefig(target, dpi=120, bbox_inches="tight")
        written.append(target)
        plt.close(fig)
    return written
