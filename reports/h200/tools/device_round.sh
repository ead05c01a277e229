#!/usr/bin/env bash
# How the committed H200 results were made: one call of the lent GPU machine runs several steps, each under
# its own time limit, so one failing or slow step never costs the others; each step's folder is packed into
# $OUT/<name>.tgz (the machine returns at most 8 files).
#   bash reports/h200/tools/device_round.sh NAME:SECONDS:'COMMAND' [NAME:SECONDS:'COMMAND' ...]
# A COMMAND writes under runs/NAME ($STEP_OUT). Carried wheels in .whl/ are installed first (liger-kernel, fla).
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site:$PWD"
fi
mkdir -p runs
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv,noheader || true
for step in "$@"; do
  name=${step%%:*}; rest=${step#*:}; secs=${rest%%:*}; cmd=${rest#*:}
  export STEP_OUT="runs/$name"; mkdir -p "$STEP_OUT"
  echo "=== $name (limit ${secs}s): $cmd"
  start=$(date +%s)
  timeout --signal=INT --kill-after=20 "$secs" bash -c "$cmd" 2>&1 | tee "$STEP_OUT/log.txt"
  echo "=== $name exit ${PIPESTATUS[0]} after $(( $(date +%s) - start ))s" | tee -a "$STEP_OUT/log.txt"
  if [ -n "${OUT:-}" ]; then tar czf "$OUT/$name.tgz" -C runs "$name"; fi
done
