"""Passkey retrieval as in the paper, for byte-level models: the prompt and how a model's answer is scored.

Prompt (bytes = token ids, vocabulary 256), exactly `length` bytes:

    filler[:at] + NEEDLE(passkey) + filler[at:] + QUESTION + passkey digits

written in Python, the language `lighthouse-bench train` trains on (a model that has only read the standard
library has never seen English instructions): the needle is the line `\\nPASSKEY = "71432"  # remember it\\n`
and the question `\\nassert PASSKEY == "`, whose continuation is the passkey. `at = round(depth * F)`, where F is
the filler budget `length - len(needle) - len(question) - digits`: depth 0 puts the needle first, depth 1 right
before the question. Filler: "heldout" = held-out stdlib bytes (lighthouse/train/data.py's validation split,
text the model never trained on, a window starting at a seeded offset; NUL file separators become newlines),
or "sentence" = one neutral comment line repeated (no corpus needed). The passkey's digits come from a
`random.Random` seeded by (seed, length, depth, trial), so a prompt is a pure function of its arguments.

Scoring: one forward pass over the whole prompt (answer digits included, teacher forcing); digit i is
predicted by the argmax over all 256 bytes of the logits at the position before it. Exact match (every digit
right) under teacher forcing is the same event as greedy decoding producing the passkey (each greedy step then
sees the true prefix), so exact-match accuracy equals greedy decoding's without re-running the forward
(Lighthouse refuses a KV cache). Per-digit accuracy is the teacher-forced one. Chance: 1/10 per digit,
10^-digits for an exact match.

Digit-only accuracy: the same positions scored by the argmax over the ten digit bytes alone. A model that
rarely emits a digit at all (a short-trained byte-level model) scores far below 1/10 per digit with the free
argmax, so 1/10 is not its chance level there; restricted to the digits, guessing is exactly 1/10, and a
model that knows something about the passkey beats it. The above-chance test uses the digit-only hits.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import List, Optional, Sequence

FILLERS = ("heldout", "sentence")
SENTENCE = b"# The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.\n"
QUESTION = b'\nassert PASSKEY == "'
MAX_DIGITS = 20


def needle(passkey: str) -> bytes:
    return f'\nPASSKEY = "{passkey}"  # remember it\n'.encode()


def fixed_bytes(digits: int) -> int:
    """Bytes of a prompt that are not filler: needle, question and answer."""
    return len(needle("0" * digits)) + len(QUESTION) + digits


def chance(digits: int) -> tuple:
    """(per-digit, exact-match) accuracy of guessing: 1/10 and 10^-digits."""
    return 0.1, 10.0**-digits


@dataclass(frozen=True)
class Prompt:
    tokens: List[int]  # `length` byte values
    passkey: str
    needle_at: int  # byte index where the needle starts
    answer_at: int  # byte index of the first answer digit


def make_passkey(seed: int, length: int, depth: float, trial: int, digits: int) -> str:
    rng = random.Random(f"passkey:{seed}:{length}:{depth:.6f}:{trial}")
    return "".join(str(rng.randrange(10)) for _ in range(digits))


def filler_bytes(kind: str, size: int, heldout: Optional[bytes], offset_seed: str) -> bytes:
    """`size` bytes of filler: the repeated sentence, or held-out text from a seeded offset (wrapping)."""
    if size <= 0:
        return b""
    if kind == "sentence":
        reps = size // len(SENTENCE) + 1
        return (SENTENCE * reps)[:size]
    if kind != "heldout":
        raise ValueError(f"--filler must be one of {', '.join(FILLERS)}, got {kind!r}")
    if not heldout:
        raise ValueError("--filler heldout: the held-out text is empty")
    text = heldout.replace(b"\x00", b"\n")
    start = random.Random(offset_seed).randrange(len(text))
    reps = (start + size) // len(text) + 1
    return (text * reps)[start : start + size]


def build_prompt(
    length: int,
    depth: float,
    *,
    digits: int = 5,
    seed: int = 0,
    trial: int = 0,
    filler: str = "sentence",
    heldout: Optional[bytes] = None,
) -> Prompt:
    """The prompt of one (length, depth, trial); depth in [0, 1]."""
    if not 1 <= digits <= MAX_DIGITS:
        raise ValueError(f"--digits must be in 1..{MAX_DIGITS}, got {digits}")
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"--depths must be in 0..100 (percent), got {depth * 100:g}")
    budget = length - fixed_bytes(digits)
    if budget < 0:
        raise ValueError(
            f"--lengths: {length} bytes is shorter than the prompt's fixed parts "
            f"({fixed_bytes(digits)} bytes: needle, question and {digits} digits)"
        )
    key = make_passkey(seed, length, depth, trial, digits)
    body = filler_bytes(filler, budget, heldout, f"filler:{seed}:{length}:{depth:.6f}:{trial}")
    at = round(depth * budget)
    data = body[:at] + needle(key) + body[at:] + QUESTION + key.encode()
    assert len(data) == length
    return Prompt(list(data), key, at, length - digits)


DIGIT_BYTES = (ord("0"), ord("9") + 1)  # [start, stop) of the ten digit bytes


def score(tail: Sequence[int], prompt: Prompt) -> int:
    """Digits right. `tail` holds the model's argmax byte at the last digits + 1 positions of the prompt
    (tail[i] is its guess after reading tokens[: answer_at + i]; the last entry predicts past the end)."""
    return sum(int(tail[i] == ord(c)) for i, c in enumerate(prompt.passkey))


def above_chance_p(hits: int, total: int, p: float) -> float:
    """One-sided binomial tail P(X >= hits) for X ~ Bin(total, p): how likely guessing does this well."""
    return sum(math.comb(total, k) * p**k * (1 - p) ** (total - k) for k in range(hits, total + 1))
