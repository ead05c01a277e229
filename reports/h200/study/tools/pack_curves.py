"""Pack a finished study's per-step curves for committing: curves/<job>.csv -> curves/<job>.csv.gz.

    python reports/h200/study/tools/pack_curves.py reports/h200/study/seeds678 [more study folders]

Why: the curves are what the intervals and the charts are computed from, so they are committed; as plain CSV they
were 0.8 of the 1.2 MiB of three seeds of E2-500 and E5-post, against the 30 MiB budget of reports/README.md.
gzip packs them about 4x, and every reader takes either form (lighthouse.train.study_curves).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lighthouse.train.study_curves import pack_curves  # noqa: E402


def main(argv=None) -> int:
    folders = [Path(a) for a in (sys.argv[1:] if argv is None else argv)]
    if not folders:
        raise SystemExit(__doc__)
    for study in folders:
        if not (study / "study.json").is_file():
            raise SystemExit(f"{study} is not a study folder (no study.json)")
        print(f"{study}: {pack_curves(study)} curves packed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
