#!/usr/bin/env bash
# GPU check of the CUDA backend: build the extension in place, run the CUDA tests (and the CPU op tests where
# present), then time the paths against the baselines (benchmarks/bench_gpu.py). Needs a CUDA GPU, nvcc and a
# CUDA build of PyTorch; no network. Run from the repository root:
#     bash benchmarks/gpu_check.sh
# Writes build.log, ptxas.txt, pytest.log, bench.log and bench_gpu.json under $OUT (default benchmarks/results);
# the timing table is the last thing it prints. Exit status: 1 if the build fails, else the tests' status.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
export RATE_RNN_CUDA=1                                  # setup.py: the CUDA extension is required, not optional
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-8.0;9.0}"  # the same targets as setup.py's -gencode flags
export PYTHONUNBUFFERED=1
unset RATE_RNN_CUDA_PATH RATE_RNN_BACKEND
# torch derives CUDA_HOME from the nvcc on PATH, which may be a wrapper script outside the toolkit: point it at the
# toolkit itself. (setup.py links cuBLAS and cudart from torch's pip CUDA wheels where they are, so this only
# matters for headers and where those wheels are absent.)
if [ -z "${CUDA_HOME:-}" ]; then
  for d in /usr/local/cuda /usr/local/cuda-*; do
    if [ -x "$d/bin/nvcc" ]; then export CUDA_HOME="$d"; break; fi
  done
fi

echo "== build: MAX_JOBS=$MAX_JOBS CUDA_HOME=${CUDA_HOME:-unset} TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST"
if ! "$PY" -c "import ninja" 2>/dev/null && ! command -v ninja >/dev/null; then
  echo "ninja not found: torch's BuildExtension falls back to its serial (slower) build"
fi
t0=$(date +%s)
if ! timeout "${BUILD_TIMEOUT_S:-300}" "$PY" setup.py build_ext --inplace >"$OUT/build.log" 2>&1; then
  echo "BUILD FAILED (see $OUT/build.log):"
  grep -E "error|Error" "$OUT/build.log" | head -20
  tail -20 "$OUT/build.log"
  exit 1
fi
echo "build: $(($(date +%s) - t0)) s"

# Registers and spills of every kernel (-Xptxas -v), the persistent ones summarised.
"$PY" - "$OUT/build.log" >"$OUT/ptxas.txt" <<'EOF'
import re, shutil, subprocess, sys
rows, cur = [], None
for line in open(sys.argv[1], errors="replace"):
    m = re.search(r"Compiling entry function '(\S+)' for '(sm_\d+)'", line)
    if m:
        cur = {"name": m.group(1), "arch": m.group(2), "spill": 0}
        continue
    m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
    if m and cur:
        cur["spill"] = int(m.group(1)) + int(m.group(2))
    m = re.search(r"Used (\d+) registers", line)
    if m and cur:
        cur["regs"] = int(m.group(1))
        rows.append(cur)
        cur = None
names = [r["name"] for r in rows]
if shutil.which("c++filt") and names:
    names = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True).stdout.split("\n")
for r, n in zip(rows, names):
    r["name"] = n.replace("rate_rnn::", "").replace("cuda::", "")
for arch in sorted({r["arch"] for r in rows}):
    pk = [r for r in rows if r["arch"] == arch and "persistent::" in r["name"]]
    if pk:
        regs = [r["regs"] for r in pk]
        spills = [r for r in pk if r["spill"]]
        print(f"{arch}: {len(pk)} persistent kernels, registers {min(regs)}..{max(regs)}, "
              f"{'spills in ' + str(len(spills)) + ' kernels' if spills else 'no spills'}")
print()
for r in rows:
    print(f"{r['arch']} regs {r.get('regs', '?'):>3} spill {r['spill']:>5}  {r['name']}")
EOF
head -3 "$OUT/ptxas.txt"

echo "== tests"
tests=(tests/test_cuda.py)
[ -f tests/test_op.py ] && tests+=(tests/test_op.py)
timeout 240 "$PY" -m pytest -q -p no:cacheprovider "${tests[@]}" >"$OUT/pytest.log" 2>&1
test_status=$?
grep -E "^(FAILED|ERROR)" "$OUT/pytest.log" | head -20
tail -3 "$OUT/pytest.log"
[ $test_status -eq 124 ] && echo "tests: timed out"

echo "== benchmark"
timeout 200 "$PY" benchmarks/bench_gpu.py --out "$OUT" --budget-s 120 2>&1 | tee "$OUT/bench.log"
bench_status=$?
[ $bench_status -ne 0 ] && echo "benchmark exited with status $bench_status"
exit $test_status
