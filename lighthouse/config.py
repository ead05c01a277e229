"""The parameters of a Lighthouse layer, validated once, where the user sets them."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

#: Entries refined per tile at every level: the spec's top-64 by query score + top-64 by key score.
TILE = 128
HALF_TILE = TILE // 2

SCORERS = ("norm", "dilated", "gla")
IMPLS = ("auto", "torch", "triton")
SDPA_BACKENDS = ("auto", "cudnn", "flash", "efficient", "math")


def _check_int(name: str, value, minimum: int, extra: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer >= {minimum}{extra}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}{extra}, got {value}")


@dataclass(frozen=True)
class LighthouseConfig:
    """Everything that defines a Lighthouse layer except the tensors.

    levels:  pyramid levels L (>= 2); level 1 is the token level.
    pooling: pooling factor p (>= 2); a level-l entry spans p**(l-1) tokens.
    topk:    budget k, a positive multiple of 128 (one tile of 128 refined entries per 128).
    scorer:  "norm", "dilated" or "gla" (the parameter-free selection scores).
    dilation: stride d of the dilated scorer (>= 1).
    impl:    "torch" (the pure PyTorch reference), "triton" (fused kernels), "auto".
    sdpa_backend: backend of the dense SDPA on the sub-sequence (None or "auto": PyTorch decides).
    """

    levels: int = 3
    pooling: int = 4
    topk: int = 2048
    scorer: str = "norm"
    dilation: int = 4
    impl: str = "auto"
    sdpa_backend: Optional[str] = None

    def __post_init__(self) -> None:
        _check_int("levels", self.levels, 2)
        _check_int("pooling", self.pooling, 2)
        _check_int("topk", self.topk, TILE, f" and a multiple of {TILE}")
        if self.topk % TILE:
            lo = self.topk // TILE * TILE
            hint = f"{lo} or {lo + TILE}" if lo else f"{TILE}"
            raise ValueError(f"topk must be a positive multiple of {TILE} (one tile each), got {self.topk}; try {hint}")
        _check_int("dilation", self.dilation, 1)
        if self.scorer not in SCORERS:
            raise ValueError(f"scorer must be one of {', '.join(SCORERS)}, got {self.scorer!r}")
        if self.impl not in IMPLS:
            raise ValueError(f"impl must be one of {', '.join(IMPLS)}, got {self.impl!r}")
        if self.sdpa_backend is not None and self.sdpa_backend not in SDPA_BACKENDS:
            raise ValueError(
                f"sdpa_backend must be None or one of {', '.join(SDPA_BACKENDS)}, got {self.sdpa_backend!r}"
            )

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

    def padded_len(self, n: int) -> int:
        """The length the sequence is zero-padded to (the next multiple of `seq_multiple`)."""
        if n < self.min_seq_len:
            raise ValueError(
                f"sequence length N={n} is too short for levels={self.levels}, pooling={self.pooling}, "
                f"topk={self.topk}: need N >= topk * pooling**(levels-1) = {self.min_seq_len} "
                f"(each of the {self.tiles} tiles needs 128 coarsest entries); lower topk, levels or pooling"
            )
        m = self.seq_multiple
        return -(-n // m) * m

    def replace(self, **changes) -> "LighthouseConfig":
        return LighthouseConfig(**{**asdict(self), **changes})

    def as_dict(self) -> dict:
        return asdict(self)
