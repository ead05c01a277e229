"""One study job in its own process: `python -m lighthouse.train.worker JOB.json`.

The study runs its arms as separate processes so that several share one GPU (small presets leave an H200 mostly
idle). A worker reads its job (an arm plan, a preset, a learning-rate schedule, the precision), the corpus the
study built once (data.Corpus.load), trains with lighthouse.train.arm.train_arm and exits 0; any failure exits 1
after printing the traceback, which the study keeps in the job's log.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m lighthouse.train.worker JOB.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(args[0]).read_text())
    import torch

    from .arm import train_arm
    from .data import Corpus
    from .study_plan import Job

    job = Job.from_dict(spec["job"])
    device = torch.device(spec["device"])
    if device.type == "cpu":
        torch.set_num_threads(int(spec.get("cpu_threads", 1)))
    corpus = Corpus.load(spec["corpus"])
    train_arm(
        job.plan,
        job.preset,
        job.schedule,
        corpus,
        Path(spec["curve"]),
        device=device,
        precision=job.precision,
        clip=job.clip,
        impl=job.impl,
        loss=job.loss,
        sdpa_backend=spec.get("sdpa_backend"),
        snapshots=Path(spec["snapshots"]),
        name=job.job_id,
        wait_timeout_s=float(spec.get("wait_timeout_s", 3600)),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
