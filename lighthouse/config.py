"""The parameters of a Lighthouse layer, validated once, where the user sets them."""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Optional

#: Entries refined per tile at every level: the spec's top-64 by query score + top-64 by key score.
TILE = 128
HALF_TILE = TILE // 2

SCORERS = ("norm", "dilated", "gla")
IMPLS = ("auto", "torch", "triton")
SDPA_BACKENDS = ("auto", "cudnn", "flash", "efficient", "math")
#: Where RoPE is applied: "pre" (q, k arrive rotated, the paper's main branch) or "post" (after selection).
ROPE_PLACEMENTS = ("pre", "post")
#: transformers' rope types that the post placement reproduces, with the keys each one needs.
ROPE_TYPES = {
    "default": (),
    "linear": ("factor",),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
}

#: Longest sequence supported (and so the bound on topk * pooling**(levels-1), the shortest N a config can
#: run, and on dilation): the Triton path indexes the pyramid (< 2 N entries) with int32.
MAX_SEQ_LEN = 2**30
MAX_SEQ_LEN_TEXT = "2**30"


def _as_int(name: str, value, minimum: int, extra: str = "") -> int:
    """value as a plain int: any integral number (int, numpy or 0-dim torch integers) is accepted, never a
    bool, a float (2.0 included) or a string."""
    message = f"{name} must be an integer >= {minimum}{extra}"
    is_bool = isinstance(value, bool) or "bool" in type(value).__name__ or "bool" in str(getattr(value, "dtype", ""))
    try:
        number = None if is_bool else operator.index(value)
    except TypeError:
        number = None
    if number is None:
        raise ValueError(f"{message}, got {value!r}")
    if number < minimum:
        raise ValueError(f"{message}, got {number}")
    return number


def _as_number(name: str, value, where: str) -> float:
    """value as a finite float > 0 (any real number but a bool)."""
    is_bool = isinstance(value, bool) or "bool" in type(value).__name__
    try:
        number = None if is_bool or isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        number = None
    if number is None or not 0 < number < float("inf"):
        raise ValueError(f"{name} must be a finite number > 0{where}, got {value!r}")
    return number


def _rope_scaling(value) -> Optional[tuple]:
    """rope_scaling as transformers writes it (a dict with "rope_type" or "type", and that type's keys), or
    None, -> sorted (key, value) pairs (hashable, so the config stays a value), None for the default type."""
    if value is None:
        return None
    try:
        items = dict(value) if isinstance(value, (Mapping, tuple, list)) else None
    except (TypeError, ValueError):
        items = None
    types = ", ".join(ROPE_TYPES)
    if items is None:
        raise ValueError(f"rope_scaling must be None or a dict with rope_type in {types}, got {value!r}")
    rope_type = items.pop("rope_type", items.pop("type", "default"))
    if rope_type not in ROPE_TYPES:
        raise ValueError(
            f"rope_scaling: rope_type must be one of {types} (post placement reproduces these), got {rope_type!r}"
        )
    needed = ROPE_TYPES[rope_type]
    missing = [key for key in needed if key not in items]
    unknown = [key for key in items if key not in needed]
    if missing or unknown:
        raise ValueError(
            f"rope_scaling for rope_type={rope_type!r} takes exactly the keys {list(needed)}; "
            f"missing {missing}, unknown {unknown}"
        )
    if rope_type == "default":
        return None
    out = {"rope_type": rope_type}
    for key in needed:
        what = f" (rope_scaling, rope_type={rope_type!r})"
        if key == "original_max_position_embeddings":
            out[key] = _as_int(f"rope_scaling[{key!r}]", items[key], 1, what)
        else:
            out[key] = _as_number(f"rope_scaling[{key!r}]", items[key], what)
    if rope_type == "llama3" and not out["high_freq_factor"] > out["low_freq_factor"]:
        raise ValueError(
            f"rope_scaling['high_freq_factor'] must be > low_freq_factor={out['low_freq_factor']} "
            f"(rope_type='llama3'), got {out['high_freq_factor']}"
        )
    return tuple(sorted(out.items()))


def _check_pyramid_fits(levels: int, pooling: int, topk: int) -> None:
    """The shortest sequence a config can run, topk * pooling**(levels-1), must not pass MAX_SEQ_LEN. Checked
    without computing the power (levels=10**9 must fail at once, in a message of ordinary numbers)."""
    span_limit = MAX_SEQ_LEN // topk  # the largest pooling**(levels-1) that fits
    max_levels, span = 1, 1
    while span * pooling <= span_limit:
        span *= pooling
        max_levels += 1
        if max_levels >= levels:
            return
    what = f"with levels={levels}, pooling={pooling} and topk={topk}"
    if span_limit < 2:
        culprit, hint = (
            f"topk={topk} {what.replace(f' and topk={topk}', '')}",
            f"topk can be at most {MAX_SEQ_LEN // 2}",
        )
    elif max_levels < 2:
        culprit = f"pooling={pooling} with levels={levels} and topk={topk}"
        hint = f"pooling can be at most {span_limit} there"
    else:
        culprit = f"levels={levels} with pooling={pooling} and topk={topk}"
        hint = f"levels can be at most {max_levels} there"
    raise ValueError(
        f"{culprit} needs sequences longer than the {MAX_SEQ_LEN_TEXT} tokens supported "
        f"(N >= topk * pooling**(levels-1)); {hint}"
    )


@dataclass(frozen=True)
class LighthouseConfig:
    """Everything that defines a Lighthouse layer except the tensors.

    levels:  pyramid levels L (>= 2); level 1 is the token level.
    pooling: pooling factor p (>= 2); a level-l entry spans p**(l-1) tokens.
    topk:    budget k, a positive multiple of 128 (one tile of 128 refined entries per 128).
             topk * pooling**(levels-1), the shortest N the config runs, is at most 2**30.
    scorer:  "norm", "dilated" or "gla" (the parameter-free selection scores).
    dilation: stride d of the dilated scorer, 1 <= d <= N (a larger stride leaves one token per strided
             subsequence; checked against N when the dilated scorer runs).
    Integer parameters accept any integral number (numpy, 0-dim torch) and are stored as int.
    impl:    "torch" (the pure PyTorch reference), "triton" (fused kernels), "auto".
    sdpa_backend: backend of the dense SDPA on the sub-sequence (None or "auto": PyTorch decides).
    rope:    where RoPE is applied (docs/rope.md): "pre" (default; q and k arrive rotated and are used as they
             are) or "post" (q and k arrive un-rotated; scores and pooling use them raw, and each selected entry
             is rotated at the position of the last token it covers, after the gather).
    rope_theta: RoPE base of the post placement (the model's rope_theta; > 0). Unused by "pre".
    rope_scaling: the model's RoPE scaling in transformers' form, for "post": None (default), or a dict with
             rope_type "linear" (factor) or "llama3" (factor, low_freq_factor, high_freq_factor,
             original_max_position_embeddings). Stored as sorted (key, value) pairs; as_dict gives a dict.
    """

    levels: int = 3
    pooling: int = 4
    topk: int = 2048
    scorer: str = "norm"
    dilation: int = 4
    impl: str = "auto"
    sdpa_backend: Optional[str] = None
    rope: str = "pre"
    rope_theta: float = 10000.0
    rope_scaling: Optional[tuple] = None

    def __post_init__(self) -> None:
        for name, minimum, extra in (
            ("levels", 2, ""),
            ("pooling", 2, ""),
            ("topk", TILE, f" and a multiple of {TILE}"),
            ("dilation", 1, f" and <= {MAX_SEQ_LEN_TEXT} (and at most N)"),
        ):
            object.__setattr__(self, name, _as_int(name, getattr(self, name), minimum, extra))
        if self.topk % TILE:
            lo = self.topk // TILE * TILE
            hint = f"{lo} or {lo + TILE}" if lo else f"{TILE}"
            raise ValueError(f"topk must be a positive multiple of {TILE} (one tile each), got {self.topk}; try {hint}")
        if self.dilation > MAX_SEQ_LEN:
            raise ValueError(
                f"dilation must be an integer >= 1 and <= {MAX_SEQ_LEN_TEXT} (and at most N), got {self.dilation}"
            )
        _check_pyramid_fits(self.levels, self.pooling, self.topk)
        if self.scorer not in SCORERS:
            raise ValueError(f"scorer must be one of {', '.join(SCORERS)}, got {self.scorer!r}")
        if self.impl not in IMPLS:
            raise ValueError(f"impl must be one of {', '.join(IMPLS)}, got {self.impl!r}")
        if self.sdpa_backend is not None and self.sdpa_backend not in SDPA_BACKENDS:
            raise ValueError(
                f"sdpa_backend must be None or one of {', '.join(SDPA_BACKENDS)}, got {self.sdpa_backend!r}"
            )
        if self.rope not in ROPE_PLACEMENTS:
            raise ValueError(
                f"rope must be one of {', '.join(ROPE_PLACEMENTS)} (where RoPE is applied), got {self.rope!r}"
            )
        object.__setattr__(self, "rope_theta", _as_number("rope_theta", self.rope_theta, " (the RoPE base)"))
        object.__setattr__(self, "rope_scaling", _rope_scaling(self.rope_scaling))

    @property
    def tiles(self) -> int:
        """Independent selection tiles per (batch, kv head): k / 128."""
        return self.topk // TILE

    @property
    def coarsest_span(self) -> int:
        """Tokens covered by one entry of the coarsest level: p**(L-1)."""
        return self.pooling ** (self.levels - 1)

    @property
    def min_seq_len(self) -> int:
        """Shortest N at which every tile has the 128 coarsest entries it must choose from."""
        return TILE * self.tiles * self.coarsest_span

    @property
    def seq_multiple(self) -> int:
        """N must be a multiple of this for the tiles to cut the coarsest level evenly."""
        return self.tiles * self.coarsest_span

    def max_levels(self, n: int) -> int:
        """The most levels that fit a sequence of n tokens at this pooling and topk (1 when none do)."""
        levels, shortest = 1, self.topk
        while shortest * self.pooling <= n:
            shortest *= self.pooling
            levels += 1
        return levels

    def padded_len(self, n: int) -> int:
        """The length the sequence is zero-padded to (the next multiple of `seq_multiple`)."""
        if n > MAX_SEQ_LEN:
            raise ValueError(f"sequence length N={n} is longer than the {MAX_SEQ_LEN_TEXT} tokens supported")
        if n < self.min_seq_len:
            fits = self.max_levels(n)
            hint = (
                f"at N={n}, levels <= {fits} fits with pooling={self.pooling}, topk={self.topk}"
                if fits >= 2
                else "lower topk or pooling"
            )
            raise ValueError(
                f"sequence length N={n} is too short for levels={self.levels}, pooling={self.pooling}, "
                f"topk={self.topk}: need N >= topk * pooling**(levels-1) = {self.min_seq_len} "
                f"(each of the {self.tiles} tiles needs 128 coarsest entries); {hint}"
            )
        m = self.seq_multiple
        return -(-n // m) * m

    @property
    def rope_scaling_dict(self) -> Optional[dict]:
        """rope_scaling as transformers writes it (None for the default type)."""
        return None if self.rope_scaling is None else dict(self.rope_scaling)

    def replace(self, **changes) -> "LighthouseConfig":
        return LighthouseConfig(**{**asdict(self), **changes})

    def as_dict(self) -> dict:
        """The fields as plain JSON values (rope_scaling a dict)."""
        return {**asdict(self), "rope_scaling": self.rope_scaling_dict}


FIELDS = tuple(f.name for f in fields(LighthouseConfig))


def as_config(config) -> LighthouseConfig:
    """`config=` of the public functions: a LighthouseConfig, or a dict of its fields."""
    if isinstance(config, LighthouseConfig):
        return config
    if isinstance(config, Mapping):
        unknown = [key for key in config if key not in FIELDS]
        if unknown:
            raise ValueError(f"config has no field {unknown[0]!r}; its fields are {', '.join(FIELDS)}")
        return LighthouseConfig(**config)
    raise TypeError(
        f"config must be a LighthouseConfig or a dict of its fields ({', '.join(FIELDS)}), got {type(config).__name__}"
    )
