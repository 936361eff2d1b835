#!/usr/bin/env bash
# The GPU check in one call: each script on CUDA for a short while on SMAX 3m at its default (paper) settings, and the
# rates it reaches (env steps/s and updates/s from its progress lines; GPU memory from nvidia-smi). Issue 13 asks for
# mazero.py's paper settings on a GPU: give it the longest window.
#
#   bash benchmarks/device_check.sh                      # fop=60 fsv=60 mag=60 mazero=360: about 9.5 minutes
#   bash benchmarks/device_check.sh mazero=540           # one script, its window in seconds
#
# Progress lines come every 30 s, so a window under ~90 s gives one line and a rate since the start (start-up and the
# step-0 evaluation included); longer windows give the rate between the first and last lines after learning began.
# Writes <script>.log (timestamped console), gpu.log (nvidia-smi every 5 s) and summary.txt to $OUT (else
# ./device_check_out). Exit 0 even when a script fails: summary.txt says which and shows its last lines.
#
# A GPU image without this project's pure-Python packages: download them where pip works, into .whl/ (ignored), e.g.
#   echo /.whl/ >> .git/info/exclude
#   python -m pip download --no-deps -d .whl tyro docstring-parser typeguard jaxmarl==0.2.0 gymnax gymnasium \
#       farama-notifications
# and carry .whl: this script installs what it finds there into /tmp/site first.
set -uo pipefail
cd "$(dirname "$0")/.."
PLAN=("$@")
[ ${#PLAN[@]} -gt 0 ] || PLAN=(fop=60 fsv=60 mag=60 mazero=360)
for item in "${PLAN[@]}"; do
  case "$item" in
    mazero=[0-9]*|mag=[0-9]*|fop=[0-9]*|fsv=[0-9]*) ;;
    *) echo "error: $item: give script=seconds, script one of mazero mag fop fsv" >&2; exit 2 ;;
  esac
done
OUT_DIR=${OUT:-device_check_out}
mkdir -p "$OUT_DIR"
PY=$(command -v python3 || command -v python)

if compgen -G ".whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
"$PY" - <<'EOF' | tee "$OUT_DIR/summary.txt"
import torch
print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}"
      + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""))
EOF

(while true; do nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu --format=csv,noheader 2>/dev/null \
   || echo "no nvidia-smi"; sleep 5; done) > "$OUT_DIR/gpu.log" 2>&1 &
SMI=$!

run() {  # run <seconds> <script> <flags...>: the script's console with a time stamp on every line
  local seconds=$1 script=$2; shift 2
  echo "== $script $*" > "$OUT_DIR/$script.log"
  PYTHONUNBUFFERED=1 timeout "$seconds" "$PY" "$script.py" --map 3m "$@" 2>&1 \
    | while IFS= read -r line; do printf '%s %s\n' "$(date +%s.%N)" "$line"; done >> "$OUT_DIR/$script.log"
}
for item in "${PLAN[@]}"; do
  run "${item#*=}" "${item%%=*}"
done
kill $SMI 2>/dev/null

"$PY" - "$OUT_DIR" "${PLAN[@]%%=*}" <<'EOF' | tee -a "$OUT_DIR/summary.txt"
import re, sys
out = sys.argv[1]
line = re.compile(r"^(\S+) step ([\d,]+)/[\d,]+ \([^)]*\) \| ([\d.]+) env steps/s \| ([\d,]+) updates")
for script in sys.argv[2:]:
    text = open(f"{out}/{script}.log").read().splitlines()
    start = float(text[1].split(" ", 1)[0]) if len(text) > 1 else 0.0  # the script's first console line
    lines = [(float(m[1]), int(m[2].replace(",", "")), float(m[3]), int(m[4].replace(",", "")))
             for m in map(line.match, text) if m]
    pts = [p for p in lines if p[3] > 0]  # from the first progress line with an update: learning has started
    device = next((l.split("device ")[-1] for l in text if "; device " in l), "not printed")
    if len(pts) >= 2:
        (t0, s0, _, u0), (t1, s1, _, u1) = pts[0], pts[-1]
        print(f"{script}: {(s1 - s0) / (t1 - t0):.1f} env steps/s, {(u1 - u0) / (t1 - t0):.2f} updates/s over "
              f"{t1 - t0:.0f} s between progress lines (steps {s0:,}-{s1:,}, updates {u0:,}-{u1:,}); device {device}")
    elif lines:
        t1, s1, sps, u1 = lines[-1]
        print(f"{script}: under two progress lines after learning began: {sps:.1f} env steps/s as printed, "
              f"{u1 / (t1 - start):.2f} updates/s since the first console line ({u1:,} updates in "
              f"{t1 - start:.0f} s, start-up and evaluation included); device {device}")
    else:
        print(f"{script}: no progress line in its window; last lines: "
              + " / ".join(l.split(" ", 1)[-1] for l in text[-3:]))
EOF
exit 0
