"""One GPU call that checks and times the Triton path (issue 2 and 4 acceptance on the H200): the lab notebook
behind reports/h200/validate. Its correctness part is the product command `lighthouse-bench validate`; the
timings are `lighthouse-bench sweep` and `profile`.

    python reports/h200/tools/gpu_validate.py --out DIR [--quick]

Writes DIR/validate.csv (one row per check or timing) and DIR/validate.json (machine info, ceilings) and
prints a table. Correctness: torch path bf16 vs float32; Triton vs torch in bf16 and float32 up to
N=131072; selection equality; bitwise determinism; poisoned outputs. Timing: CUDA events, warm-up,
L2 flush, median of repetitions; dense cuDNN SDPA at N and at S (the floor) measured in the same run;
a per-stage breakdown of the Triton forward and backward.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
from pathlib import Path

import torch

import lighthouse
from lighthouse import LighthouseConfig
from lighthouse.bench import parity
from lighthouse.harness.timing import measure
from lighthouse.kernels import alloc
from lighthouse.kernels import layer as tl_layer
from lighthouse.kernels.gather import gather_rows
from lighthouse.kernels.scatter import pull_rows
from lighthouse.plan import make_plan, plan_for
from lighthouse.sdpa import causal_sdpa

DEV = "cuda"
ROWS = []


def rel(a, b):
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


def record(**row):
    ROWS.append(row)
    print(" | ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)


def bench(fn, *, warmup=3, rep=20, budget_s=2.0, leaves=(), grad=None):
    """Median / p20 / p80 ms and repetitions, through the sweep's timer (CUDA events, L2 flush).

    With `grad`, times forward + backward of `fn`'s output, the .grad of `leaves` cleared each time."""
    t = measure(
        fn,
        "fwd" if grad is None else "fwdbwd",
        list(leaves),
        grad,
        device=torch.device(DEV),
        warmup=warmup,
        rep=rep,
        min_rep=3,
        max_seconds=budget_s,
    )
    return t.median_ms, t.p20_ms, t.p80_ms, len(t.samples_ms)


def qkv(n, dtype, h=8, hkv=8, d=128, seed=0, grad=False):
    g = torch.Generator(device=DEV).manual_seed(seed)

    def mk(heads):
        return torch.randn(1, heads, n, d, device=DEV, dtype=dtype, generator=g).requires_grad_(grad)

    return mk(h), mk(hkv), mk(hkv)


def fwd_bwd(fn, q, k, v, go):
    for x in (q, k, v):
        x.grad = None
    out = fn(q, k, v)
    out.backward(go)
    return out.detach(), q.grad, k.grad, v.grad


def check_torch_bf16():
    """Issue 2: the torch path in bf16 against its own float32 result on the same (bf16-rounded) inputs."""
    n, cfg = 32768, LighthouseConfig(levels=3, pooling=4, topk=1024, impl="torch")
    q, k, v = qkv(n, torch.bfloat16)
    o16 = lighthouse.lighthouse_attention(q, k, v, config=cfg)
    o32 = lighthouse.lighthouse_attention(q.float(), k.float(), v.float(), config=cfg)
    same = torch.equal(
        lighthouse.select(q, k, v, config=cfg), lighthouse.select(q.float(), k.float(), v.float(), config=cfg)
    )
    record(check="torch_bf16_vs_fp32", n=n, rel_err=rel(o16, o32), selection_equal=same, ok=rel(o16, o32) <= 1e-2)
    n = 131072
    q, k, v = qkv(n, torch.bfloat16, grad=True)
    torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    out, dq, dk, dv = fwd_bwd(
        lambda a, b, c: lighthouse.lighthouse_attention(a, b, c, config=cfg), q, k, v, torch.randn_like(q)
    )
    torch.cuda.synchronize()
    fin = all(bool(torch.isfinite(x).all()) for x in (out, dq, dk, dv))
    record(
        check="torch_bf16_runs",
        n=n,
        seconds=time.time() - t0,
        finite=fin,
        peak_gib=torch.cuda.max_memory_allocated() / 2**30,
        ok=fin,
    )


def check_parity(n, dtype, tol, hkv=8, topk=1024):
    cfg = LighthouseConfig(levels=3, pooling=4, topk=topk)
    q, k, v = qkv(n, dtype, hkv=hkv, seed=n, grad=True)
    go = torch.randn_like(q)
    sel_t = lighthouse.select(q, k, v, config=cfg.replace(impl="triton"))
    sel_r = lighthouse.select(q, k, v, config=cfg.replace(impl="torch"))
    frac = float((sel_t == sel_r).float().mean())
    alloc.POISON = True
    got = parity.run_path("triton", q, k, v, go, cfg)
    alloc.POISON = False
    again = parity.run_path("triton", q, k, v, go, cfg)
    want = parity.run_path("torch", q, k, v, go, cfg)
    errs = {name.removeprefix("rel_"): err for name, err in parity.relative_errors(got, want).items()}
    bitwise = all(torch.equal(a, b) for a, b in zip(got, again))
    finite = all(bool(torch.isfinite(a).all()) for a in got)
    record(
        check="triton_vs_torch",
        n=n,
        dtype=str(dtype).split(".")[-1],
        hkv=hkv,
        selection_equal_frac=frac,
        **{f"rel_{k}": v for k, v in errs.items()},
        bitwise_repeat=bitwise,
        poisoned_finite=finite,
        ok=frac == 1.0 and max(errs.values()) <= tol and bitwise and finite,
    )


def check_determinism(n=32768, topk=1024):
    """Two fwd+bwd runs bitwise equal? Our kernels have no atomics; the SDPA backend's backward may."""
    q, k, v = qkv(n, torch.bfloat16, seed=3, grad=True)
    go = torch.randn_like(q)
    for backend in (None, "cudnn", "flash", "efficient"):
        for det in (False, True):
            cfg = LighthouseConfig(levels=3, pooling=4, topk=topk, impl="triton", sdpa_backend=backend)

            def f(a, b, c, cfg=cfg):
                return lighthouse.lighthouse_attention(a, b, c, config=cfg)

            torch.use_deterministic_algorithms(det, warn_only=False)
            try:
                r1, r2 = fwd_bwd(f, q, k, v, go), fwd_bwd(f, q, k, v, go)
                same = {name: torch.equal(a, b) for name, a, b in zip(("out", "dq", "dk", "dv"), r1, r2)}
                record(check="determinism", n=n, sdpa_backend=str(backend), deterministic_algorithms=det, **same)
            except Exception as err:
                record(
                    check="determinism",
                    n=n,
                    sdpa_backend=str(backend),
                    deterministic_algorithms=det,
                    error=str(err)[:200],
                )
            finally:
                torch.use_deterministic_algorithms(False)
    # the same inputs through our kernels alone (no SDPA backward): must always be bitwise equal
    cfg = LighthouseConfig(levels=3, pooling=4, topk=topk)
    plan = make_plan(cfg, q, k, v)
    with torch.no_grad():
        a, _ = tl_layer.run_selection(q, k, v, plan)
        b, _ = tl_layer.run_selection(q, k, v, plan)
        ga = [gather_rows(x, a.lm_idx, a.lm_pos, plan) for x in (q, k, v, go)]
        gb = [gather_rows(x, b.lm_idx, b.lm_pos, plan) for x in (q, k, v, go)]
        pa = [pull_rows(x, a.inv, plan, scatter=s) for x in ga[:3] for s in (True, False)]
        pb = [pull_rows(x, b.inv, plan, scatter=s) for x in gb[:3] for s in (True, False)]
    ok = torch.equal(a.indices, b.indices) and all(torch.equal(x, y) for x, y in zip(ga + pa, gb + pb))
    record(check="determinism_own_kernels", n=n, bitwise=ok, ok=ok)
    bad = q.detach().clone()
    bad[0, 3, 1234, 5] = float("nan")
    try:
        lighthouse.lighthouse_attention(bad, k.detach(), v.detach(), config=cfg.replace(impl="triton"))
        record(check="nan_refused", ok=False)
    except ValueError as err:
        record(check="nan_refused", ok="position 1234" in str(err), message=str(err)[:160])


def time_point(n, topk, with_dense=True, with_torch=True):
    cfg = LighthouseConfig(levels=3, pooling=4, topk=topk, sdpa_backend="cudnn")
    s = plan_for(cfg, 1, 8, 8, n, 128).selected_len
    q, k, v = qkv(n, torch.bfloat16, seed=1, grad=True)
    go = torch.randn_like(q)
    impls = {"triton": cfg.replace(impl="triton")}
    if with_torch:
        impls["torch"] = cfg.replace(impl="torch")
    res = {}
    for name, c in impls.items():

        def f(c=c):
            return lighthouse.lighthouse_attention(q, k, v, config=c)

        with torch.no_grad():
            res[f"{name}_fwd"] = bench(f)
        torch.cuda.reset_peak_memory_stats()
        res[f"{name}_fwdbwd"] = bench(f, leaves=(q, k, v), grad=go)
        res[f"{name}_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    res.update(floor_times(s))  # the floor: dense cuDNN SDPA at S (its inputs freed on return)
    if with_dense:

        def d():
            return causal_sdpa(q, k, v, "cudnn")

        with torch.no_grad():
            res["dense_fwd"] = bench(d, rep=5, warmup=1)
        torch.cuda.reset_peak_memory_stats()
        res["dense_fwdbwd"] = bench(d, leaves=(q, k, v), grad=go, rep=5, warmup=1)
        res["dense_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    row = dict(check="timing", n=n, topk=topk, s=s)
    for key, val in res.items():
        row[key] = val if isinstance(val, float) else val[0]
    if with_dense:
        row["speedup_fwdbwd"] = res["dense_fwdbwd"][0] / res["triton_fwdbwd"][0]
        row["mem_ratio"] = res["triton_peak_gib"] / res["dense_peak_gib"]
    row["floor_ratio_fwdbwd"] = res["triton_fwdbwd"][0] / res["floor_fwdbwd"][0]
    record(**row)
    stages(n, topk, q, k, v, go, cfg.replace(impl="triton"))


def floor_times(s):
    """floor_fwd, floor_fwdbwd: dense cuDNN SDPA on S tokens, the time Lighthouse's own attention cannot beat."""
    qs, ks, vs = qkv(s, torch.bfloat16, seed=2, grad=True)
    gs = torch.randn_like(qs)

    def fl():
        return causal_sdpa(qs, ks, vs, "cudnn")

    with torch.no_grad():
        fwd = bench(fl)
    return {"floor_fwd": fwd, "floor_fwdbwd": bench(fl, leaves=(qs, ks, vs), grad=gs)}


def stages(n, topk, q, k, v, go, cfg):
    """Per-stage times of the Triton path: the layer's own stage functions, each timed alone on its real inputs."""
    plan = make_plan(cfg, q, k, v)
    with torch.no_grad():
        scores = tl_layer.run_scores(q, k, v, plan)
        sel = tl_layer.run_select(scores, plan)
        subs = tl_layer.run_gather(q, k, v, sel, plan)
        out_sub = tl_layer.run_sdpa(*subs, plan)
        t = {
            "scores": bench(lambda: tl_layer.run_scores(q, k, v, plan))[0],
            "select": bench(lambda: tl_layer.run_select(scores, plan))[0],
            "gather_qkv": bench(lambda: tl_layer.run_gather(q, k, v, sel, plan))[0],
            "sdpa_fwd": bench(lambda: tl_layer.run_sdpa(*subs, plan))[0],
            "scatter_pull": bench(lambda: tl_layer.run_scatter(out_sub, sel, plan))[0],
            "fanin_gather": bench(lambda: tl_layer.run_fan_in(go, sel, plan))[0],
            "pool_bwd_pull_x3": bench(lambda: tl_layer.run_pool_bwd(subs, sel, plan))[0],
        }
    bytes_tok = q.numel() * q.element_size()
    record(
        check="stages",
        n=n,
        topk=topk,
        **t,
        qkv_read_floor_ms=3 * bytes_tok / 4.3e9,
        out_write_floor_ms=bytes_tok / 4.3e9,
    )


def ceilings():
    """Copy bandwidth and bf16 matmul rate of this GPU (the buffers freed on return)."""
    x = torch.empty(2 * 1024**3 // 2, dtype=torch.bfloat16, device=DEV)
    y = torch.empty_like(x)
    ms = bench(lambda: y.copy_(x), rep=10)[0]
    a = torch.randn(8192, 8192, device=DEV, dtype=torch.bfloat16)
    b = torch.randn_like(a)
    mm = bench(lambda: a @ b, rep=10)[0]
    return {"copy_tb_s": 2 * x.numel() * 2 / ms / 1e9, "bf16_mm_tflops": 2 * 8192**3 / mm / 1e9}


def _gla_recurrent(a, b, c, log_gate, scale):
    """Plain recurrent simple GLA on (B, H, N, D) in float64: S_t = exp(g_t) S_{t-1} + b_t^T c_t,
    o_t = scale a_t S_t."""
    a, b, c, log_gate = a.double(), b.double(), c.double(), log_gate.double()
    state = torch.zeros(*a.shape[:2], a.shape[-1], c.shape[-1], dtype=torch.float64, device=a.device)
    out = torch.empty(*a.shape[:3], c.shape[-1], dtype=torch.float64, device=a.device)
    for t in range(a.shape[2]):
        state = torch.exp(log_gate[:, :, t])[..., None, None] * state + b[:, :, t, :, None] * c[:, :, t, None, :]
        out[:, :, t] = scale * torch.einsum("bhd,bhde->bhe", a[:, :, t], state)
    return out


def check_gla(n=1024, hq=4, hkv=2, d=64, tol=1e-3):
    """The gla scorer with the real fla kernel against a recurrent simple GLA (tests/test_gla_scorer.py does
    the same on the CPU with fla substituted): sq, sk per kv head, and the selection of both paths."""
    try:
        import fla.ops.simple_gla  # noqa: F401
    except ImportError as err:
        record(check="gla", ok=None, message=f"skipped: flash-linear-attention not importable ({err})")
        return
    from lighthouse.reference.scores import token_scores

    g = torch.Generator(device="cuda").manual_seed(7)
    q = torch.randn(1, hq, n, d, device="cuda", generator=g)
    k = torch.randn(1, hkv, n, d, device="cuda", generator=g)
    v = torch.randn(1, hkv, n, d, device="cuda", generator=g)
    gate = torch.nn.functional.logsigmoid(torch.randn(1, hq, n, device="cuda", generator=g) + 2.0)
    cfg = LighthouseConfig(levels=2, pooling=4, topk=128, scorer="gla", impl="torch")
    plan = make_plan(cfg, q, k, v, gate)
    sq, sk = token_scores(q, k, v, plan, gate)
    grp = hq // hkv
    k_rep, v_rep = k.repeat_interleave(grp, 1), v.repeat_interleave(grp, 1)
    want_q = _gla_recurrent(q, k_rep, v_rep, gate, d**-0.5).norm(dim=-1).view(1, hkv, grp, n).amax(2)
    want_k = _gla_recurrent(k_rep, q, v_rep, gate, d**-0.5).norm(dim=-1).view(1, hkv, grp, n).amax(2)
    err_q, err_k = rel(sq[..., :n], want_q), rel(sk[..., :n], want_k)
    same = bool(
        torch.equal(
            lighthouse.select(q, k, v, gate=gate, config=cfg),
            lighthouse.select(q, k, v, gate=gate, config=cfg.replace(impl="triton")),
        )
    )
    record(
        check="gla",
        n=n,
        hkv=hkv,
        rel_sq=err_q,
        rel_sk=err_k,
        selection_equal_frac=1.0 if same else 0.0,
        ok=err_q <= tol and err_k <= tol and same,
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="out/validate")
    ap.add_argument("--quick", action="store_true", help="correctness and two timing points only")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: torch,determinism,parity,gla,timing")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import triton

    info = dict(
        gpu=torch.cuda.get_device_name(),
        torch=torch.__version__,
        triton=triton.__version__,
        cuda=torch.version.cuda,
        cudnn=torch.backends.cudnn.version(),
        python=platform.python_version(),
        argv=sys.argv,
    )
    info.update(ceilings())
    torch.cuda.empty_cache()
    print(info, flush=True)
    skip = set(args.skip.split(","))
    parts = []
    if "torch" not in skip:
        parts.append(check_torch_bf16)
    if "determinism" not in skip:
        parts.append(check_determinism)
    if "parity" not in skip:
        parts += [
            lambda: check_parity(32768, torch.float32, 1e-5),
            lambda: check_parity(32768, torch.bfloat16, 1e-2),
            lambda: check_parity(32768, torch.bfloat16, 1e-2, hkv=2),
            lambda: check_parity(131072, torch.bfloat16, 1e-2, topk=4096),
            lambda: check_parity(131072, torch.float32, 1e-5, topk=4096),
        ]
    if "gla" not in skip:
        parts.append(check_gla)
    if "timing" not in skip:
        pts = (
            [(16384, 1024), (98304, 1536), (262144, 4096)]
            if args.quick
            else [(16384, 1024), (65536, 4096), (98304, 1536), (131072, 4096), (262144, 4096), (524288, 4096)]
        )
        parts += [lambda n=n, kk=kk: time_point(n, kk, with_torch=n <= 262144) for n, kk in pts]
    for part in parts:
        try:
            part()
        except Exception as err:  # keep going: one failure must not hide the rest
            import traceback

            traceback.print_exc()
            record(check="exception", error=f"{type(err).__name__}: {err}"[:300])
        torch.cuda.empty_cache()
    (out / "validate.json").write_text(json.dumps(info, indent=2))
    keys = sorted({k for r in ROWS for k in r})
    with open(out / "validate.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(ROWS)


if __name__ == "__main__":
    main()
