"""One kernel launch, described before it is made, and made without Triton's per-call dispatch once compiled.

Each wrapper builds its Launch (kernel, grid, arguments, compile-time arguments) and then makes it; the layer's
`planned_launches` builds the same Launches on stand-in tensors, so that kernels/precompile.py compiles exactly
what the call will launch, before it launches anything.

Why a launch path of our own (`launch` below): on the lent H200's host a warm `kernel[grid](...)` of Triton 3.6 runs
Python that has nothing left to decide once the kernel is compiled: it reads its knobs, binds and specialises every
argument, builds a cache key (a `str` of the options), looks the kernel up, checks the globals it used, builds a
launch-metadata dict for the (empty) launch hooks and calls the launcher, which calls those hooks. The layer makes
three such launches between its entry and the sub-sequence SDPA, while the GPU waits (reports/PERF_NOTES.md, step
23). So the first launch of each specialisation goes through Triton (which compiles or loads it, and hands back
the compiled kernel), and later launches of the same specialisation call the compiled kernel's launcher directly,
with the same arguments Triton would pass. Triton's public API offers no such entry (`CompiledKernel[grid]` still
builds the metadata and calls the hooks); torch inductor does the same for its kernels.

What decides a specialisation, and so what a cached launcher is keyed by: the kernel, the device, each tensor
argument's dtype and whether its address is 16-byte aligned, every other argument's type and value (Triton
specialises integers on their value: 1, divisible by 16, 32 or 64 bits), except for `do_not_specialize` integers,
where only their width counts, and the compile-time arguments. The key is finer than Triton's own, never coarser.
Triton's path is kept wherever this one could differ from it: the interpreter (CPU tests), a kernel whose `run`
is replaced (instrumentation, stubs), launch hooks set (profilers), LIGHTHOUSE_DIRECT_LAUNCH=0. Triton's
process-wide switches (TRITON_DEBUG, its instrumentation mode) are read when a specialisation is first launched.
"""

from __future__ import annotations

import inspect
import operator
import os
from typing import Callable, NamedTuple

import torch

#: LIGHTHOUSE_DIRECT_LAUNCH=0 (or ENABLED = False) launches every kernel through Triton's own dispatch.
ENABLED = os.environ.get("LIGHTHOUSE_DIRECT_LAUNCH", "1") not in ("", "0")
#: Launches made directly since the process started (the tests read it to see the path taken).
DIRECT_LAUNCHES = [0]
#: Cached launchers at most; the cache is emptied when full (a workload whose specialisations never repeat).
MAX_CACHED = 4096

_CACHE: dict = {}
_NO_DIRECT = object()  # a specialisation Triton's dispatch must keep (its launch handed back no compiled kernel)
_KERNEL_INFO: dict = {}  # id(kernel) -> _kernel_info
_LAYOUTS: dict = {}  # (id(kernel), argument types) -> _Layout
_TUPLE_KINDS: dict = {}  # the element types of a tuple argument -> "ints", "tensors" or "mixed"


class Launch(NamedTuple):
    kernel: object  # a @triton.jit function
    grid: tuple
    args: tuple
    kwargs: dict  # the compile-time arguments and launch options (num_warps)

    def __call__(self):
        return launch(self.kernel, self.grid, self.args, self.kwargs)


def stand_in(x: torch.Tensor) -> torch.Tensor:
    """A meta tensor (no memory) with x's shape, strides, dtype and address modulo 16 bytes: what Triton's
    launcher specialises a tensor argument on (its dtype and whether its address is 16-byte aligned)."""
    offset = (x.data_ptr() % 16) // x.element_size()
    extent = 1 + sum((n - 1) * s for n, s in zip(x.shape, x.stride()))
    return torch.empty(offset + extent, dtype=x.dtype, device="meta").as_strided(x.shape, x.stride(), offset)


# ------------------------------------------------------------------------------------------- direct launches
try:
    from triton import knobs as _knobs
    from triton.runtime.jit import JITFunction as _JITFunction

    _JIT_RUN = _JITFunction.run
except Exception:  # pragma: no cover - no triton, or one without knobs: Triton's dispatch only
    _JIT_RUN = None


def _plain(kernel) -> bool:
    """A compiled (not interpreted) Triton kernel whose `run` nobody replaced."""
    return _JIT_RUN is not None and getattr(type(kernel), "run", None) is _JIT_RUN and "run" not in vars(kernel)


def _hooks_idle() -> bool:
    """No launch hook is set (a profiler's would be skipped by a direct launch). Triton 3.6 keeps them as chains
    that are never None; older versions as None."""
    runtime = _knobs.runtime
    hooks = (runtime.launch_enter_hook, runtime.launch_exit_hook)
    return all(h is None or not getattr(h, "calls", True) for h in hooks)


def int_width(value: int) -> str:
    """The type Triton gives an integer it does not specialise on its value (triton.runtime.jit)."""
    if -(2**31) <= value < 2**31:
        return "i32"
    if 2**63 <= value < 2**64:
        return "u64"
    return "i64"


def _kernel_info(kernel):
    """(do_not_specialize positions, [(name, default)] of the parameters, the kernel): by id, as every key here (a
    JITFunction's own hash is Python code), the kernel kept alive with it so that its id is never reused."""
    info = _KERNEL_INFO.get(id(kernel))
    if info is None:
        dns = frozenset(p.num for p in kernel.params if p.do_not_specialize)
        params = [(p.name, p.default) for p in kernel.params]
        info = _KERNEL_INFO[id(kernel)] = (dns, params, kernel)
    return info


class _Layout(NamedTuple):
    """Where a kernel's positional arguments of given types put their tensors, their tuples (of tensors and sizes:
    Triton specialises each element), their do_not_specialize integers and the rest (itemgetters: the key is then
    built in C, not argument by argument in Python)."""

    tensors: Callable
    tuples: Callable
    widths: Callable
    values: Callable


def _getter(positions: list) -> Callable:
    if not positions:
        return lambda args: ()
    if len(positions) == 1:
        (i,) = positions
        return lambda args: (args[i],)
    return operator.itemgetter(*positions)


def _layout(kernel, types: tuple) -> _Layout:
    layout = _LAYOUTS.get((id(kernel), types))
    if layout is None:
        dns = _kernel_info(kernel)[0]
        tensors = [i for i, t in enumerate(types) if issubclass(t, torch.Tensor)]
        tuples = [i for i, t in enumerate(types) if issubclass(t, tuple)]
        widths = [i for i, t in enumerate(types) if i in dns and t is int]
        values = [i for i in range(len(types)) if i not in tensors + tuples + widths]
        layout = _Layout(_getter(tensors), _getter(tuples), _getter(widths), _getter(values))
        _LAYOUTS[(id(kernel), types)] = layout
    return layout


def _element(x):
    """One element of a tuple argument, as the key holds it: a tensor by dtype and alignment, a tuple element by
    element, anything else by type and value. Tuples of plain tensors or plain ints (the gather's tensors and
    strides) take one pass each, as their element types say."""
    if isinstance(x, torch.Tensor):
        return x.dtype, x.data_ptr() % 16
    if not isinstance(x, tuple):
        return type(x), x
    types = tuple(map(type, x))
    kind = _TUPLE_KINDS.get(types)
    if kind is None:
        if len(_TUPLE_KINDS) >= MAX_CACHED:
            _TUPLE_KINDS.clear()
        plain = set(types)
        kind = _TUPLE_KINDS[types] = "ints" if plain == {int} else "tensors" if plain == {torch.Tensor} else "mixed"
    if kind == "ints":
        return x
    if kind == "tensors":
        return tuple([(t.dtype, t.data_ptr() % 16) for t in x])
    return tuple([_element(y) for y in x])


def specialisation(kernel, args: tuple) -> tuple:
    """What Triton's specialisation of these positional arguments depends on (a superset of it): their types,
    each tensor's dtype and address modulo 16 (in a tuple too), each do_not_specialize integer's width, every
    other value."""
    types = tuple(map(type, args))
    layout = _layout(kernel, types)
    tensors = tuple([(t.dtype, t.data_ptr() % 16) for t in layout.tensors(args)])
    tuples = tuple([_element(t) for t in layout.tuples(args)])
    widths = tuple([int_width(w) for w in layout.widths(args)])
    return types, tensors, tuples, widths, layout.values(args)


def _entry(kernel, compiled, args: tuple, kwargs: dict):
    """(launcher, function handle, packed metadata, the arguments after the positional ones, compiled) of a kernel
    Triton just launched, or _NO_DIRECT. The trailing arguments are what Triton binds: each remaining parameter's
    keyword value or its default, in the signature's order (constants of the key, so computed once)."""
    function = getattr(compiled, "function", None)
    packed = getattr(compiled, "packed_metadata", None)
    if function is None or packed is None:
        return _NO_DIRECT
    params = _kernel_info(kernel)[1]
    tail = []
    for name, default in params[len(args) :]:
        if name in kwargs:
            tail.append(kwargs[name])
        elif default is not inspect.Parameter.empty:
            tail.append(default)
        else:
            return _NO_DIRECT
    return compiled.run, function, packed, tuple(tail), compiled


def launch(kernel, grid: tuple, args: tuple, kwargs: dict):
    """kernel[grid](*args, **kwargs), through Triton the first time a specialisation is seen, then directly."""
    if not (ENABLED and _plain(kernel) and _hooks_idle()):
        return kernel[grid](*args, **kwargs)
    device = torch.cuda.current_device()
    key = (id(kernel), device, specialisation(kernel, args), tuple(kwargs.items()))
    try:
        entry = _CACHE.get(key)
    except TypeError:  # an unhashable argument: Triton's dispatch decides
        return kernel[grid](*args, **kwargs)
    if entry is None:
        compiled = kernel[grid](*args, **kwargs)
        if len(_CACHE) >= MAX_CACHED:
            _CACHE.clear()
        _CACHE[key] = _entry(kernel, compiled, args, kwargs)
        return compiled
    if entry is _NO_DIRECT:
        return kernel[grid](*args, **kwargs)
    run, function, packed, tail, compiled = entry
    n = len(grid)
    stream = torch._C._cuda_getCurrentRawStream(device)
    # the launcher's arguments as JITFunction.run passes them: no launch metadata, no hooks (none are set)
    run(
        grid[0],
        grid[1] if n > 1 else 1,
        grid[2] if n > 2 else 1,
        stream,
        function,
        packed,
        None,
        None,
        None,
        *args,
        *tail,
    )
    DIRECT_LAUNCHES[0] += 1
    return compiled
