#!/usr/bin/env bash
# The whole GPU comparison in one run: eigrad's correctness check and benchmark table next to the
# JAX anchor (cuSOLVER) on the same card, then the ratios the performance issue asks for.
#
# It runs on a machine with an NVIDIA GPU, from the repository root, with what it needs carried
# there (nothing is built or fetched on that machine):
#   target/release/eigrad      the release binary, built beforehand on an x86-64 machine
#   .gl/*.deb                  the Vulkan/GL loader packages (unpacked into / here)
#   .device/jax_eigh_bench.py  the anchor script, a copy of ../shared/anchors/jax_eigh_bench.py
#   .device/shader_stats       optional: benches/shader_stats's binary, for the driver's own compile
#                              statistics of each kernel (registers, local memory; .device/shader_stats_baseline
#                              the same built against GPU_COMPARE_BASELINE's commit)
# (.gl/ and .device/ are ignored by git; target/ too.)
#
# Companion step, on the development machine, in the repository root:
#   cargo build --release
#   mkdir -p .device && cp ../shared/anchors/jax_eigh_bench.py .device/ && git rev-parse HEAD >.device/commit
#   cargo build --release --manifest-path benches/shader_stats/Cargo.toml
#   cp benches/shader_stats/target/release/eigrad-shader-stats .device/shader_stats
#   # once, the loader packages (see the device README):
#   mkdir -p .gl /tmp/amd64/partial; o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
#   apt-get $o update; (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
# then one device call:
#   command: bash benches/gpu_compare.sh
#   carry:   .gl  .device  target/release/eigrad
#   timeout: 600 s (the script keeps itself within GPU_COMPARE_BUDGET, 540 s by default)
#
# Steps: nvidia-smi -L; the driver's compile statistics of the kernels (where .device/shader_stats is there and
# the driver reports them); `eigrad check --device gpu` and `eigrad bench --device gpu` (which also times the
# kernels alone with timestamp queries where the device has them; batch 65536 for
# n = 4, 8, 16, 32 and 8192 for n = 64) with each forward kernel (the anchor's batch // 8 for n > 32), one process
# per n so that a timeout loses one size only; the anchor with the same sizes and batch; a ratio
# table (JAX ms / eigrad device-resident ms per n and op, and eigrad's own targets).
#
# Output, everything also on stdout: $OUT/log.txt (the whole run), $OUT/eigrad.json (the bench
# reports of all sizes merged), $OUT/jax.txt (the anchor's lines), $OUT/ratios.txt, and
# $OUT/shader_stats*.txt (the compile statistics), $OUT/ir*/ (what the driver gives of the kernels'
# internal representations) and $OUT/phases.txt (the host path's phase log of the end-to-end calls
# at n = 8 and 32). Without $OUT
# (outside the device tool) it writes to ./gpu_compare_out.
#
# Knobs (environment): GPU_COMPARE_BATCH (65536), GPU_COMPARE_N (4,8,16,32,64),
# GPU_COMPARE_FORWARD (registers,one-sided,one-sided:jacobi,tridiagonal,tridiagonal@128,tridiagonal@64: the
# forward kernels to check and time, through EIGRAD_GPU_FORWARD; two-sided, measured in every run up to run 4 and
# now only the fallback where the one-sided kernel does not fit, runs only when named; `kernel:eigvalsh` also
# sets EIGRAD_GPU_EIGVALSH for that run, e.g. `one-sided:jacobi` times eigenvalues only through the one-sided
# sweeps instead of the default tridiagonal kernel; `kernel@wg` sets the workgroup knobs EIGRAD_GPU_WG_TARGET and
# EIGRAD_GPU_TRIDIAGONAL_WG to wg, e.g. `tridiagonal@64` runs the tridiagonal eigendecomposition with 64
# invocations per workgroup instead of 256; `registers` is timed only at n <= 8, eigrad::gpu::REGISTERS_MAX_N,
# above which it is the one-sided kernel again; `tuned` runs `auto` with EIGRAD_GPU_TUNE=1, so that each size is
# tuned first (GpuContext::tune: every kernel timed, the log shows the times and the choice) and timed with the
# tuned choice; not in the default list, it costs about one more kernel's run),
# GPU_COMPARE_BUDGET (540 s for the whole script), GPU_COMPARE_BASELINE (the
# path of a second eigrad binary, e.g. an earlier commit's carried in .device/: its one-sided kernel
# is benchmarked too, as kernel `baseline-one-sided`, so two kernel versions are compared on the
# same card in the same run).
#
# Expected duration on an H200: about 2 to 4 minutes (the eigrad kernels take milliseconds per call
# at these batches by the prior measurements in ../shared/JACOBI.md; most of the time goes to
# generating the inputs, host↔device copies of up to 512 MB per end-to-end call, JAX's start-up
# and its compilations). Every step has a timeout, so a hung step costs its cap, never the call.

set -u -o pipefail

cd "$(dirname "$0")/.." || exit 2
BIN=target/release/eigrad
ANCHOR=.device/jax_eigh_bench.py
OUT=${OUT:-$PWD/gpu_compare_out}
BATCH=${GPU_COMPARE_BATCH:-65536}
NS=${GPU_COMPARE_N:-4,8,16,32,64}
FORWARD=${GPU_COMPARE_FORWARD:-registers,one-sided,one-sided:jacobi,tridiagonal,tridiagonal@128,tridiagonal@64}
BUDGET=${GPU_COMPARE_BUDGET:-540}
BASELINE=${GPU_COMPARE_BASELINE:-}
START=$SECONDS

die() {
    echo "gpu_compare: $*" >&2
    exit 2
}

[ -x "$BIN" ] || die "no $BIN: build it with 'cargo build --release' on an x86-64 machine and carry target/release/eigrad"
compgen -G ".gl/*.deb" >/dev/null || die "no .gl/*.deb: download the Vulkan loader packages into .gl/ (see this script's header) and carry .gl"
[ -z "$BASELINE" ] || [ -x "$BASELINE" ] || die "GPU_COMPARE_BASELINE=$BASELINE is not an executable file"
[ -f "$ANCHOR" ] || die "no $ANCHOR: copy ../shared/anchors/jax_eigh_bench.py to .device/ and carry .device"
command -v python3 >/dev/null || die "no python3 on this machine (the anchor and the ratio table need it)"
mkdir -p "$OUT" || die "cannot create $OUT"
SCRATCH=$(mktemp -d /tmp/gpu_compare.XXXXXX) || die "cannot create a scratch folder in /tmp"

# Seconds for a step: at most `cap`, leaving `reserve` seconds of the budget for later steps.
step_timeout() {
    local cap=$1 reserve=$2
    local t=$((BUDGET - (SECONDS - START) - reserve))
    ((t > cap)) && t=$cap
    ((t < 15)) && t=15
    echo "$t"
}

main() {
    echo "== gpu_compare: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -m), budget ${BUDGET} s"
    [ -f .device/commit ] && echo "eigrad commit: $(cat .device/commit)"
    echo "batch $BATCH (n > 32: $((BATCH / 8))), n = $NS"

    echo "== Vulkan loader"
    for f in .gl/*.deb; do dpkg -x "$f" / || echo "warning: could not unpack $f"; done
    ldconfig
    local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    if [ -f "$icd" ]; then
        export VK_DRIVER_FILES=$icd
    else
        echo "warning: $icd not found; leaving VK_DRIVER_FILES unset"
    fi
    ldconfig -p | grep -m1 'libvulkan\.so' || echo "warning: no libvulkan after unpacking .gl"
    export WGPU_BACKEND=vulkan RUST_LOG=eigrad=info

    echo "== GPU"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi -L
        nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader || true
    else
        echo "(no nvidia-smi)"
    fi

    # The driver's own compile statistics (registers, local memory, ...) of the kernels eigrad runs:
    # seconds, and they say whether a kernel keeps its columns in registers on this compiler.
    local stats=RegistersEigh,RegistersEigvalsh,RegistersVjp,HestenesEigh,HestenesEigvalsh,TridiagonalEigvalsh,TridiagonalEigh,EighVjp,EighRefine,JacobiEigh
    if [ -x .device/shader_stats ]; then
        echo "== compile statistics: .device/shader_stats --device system --n $NS"
        timeout "$(step_timeout 60 400)" .device/shader_stats --device system --kernels "$stats" --n "$NS" \
            | tee "$OUT/shader_stats.txt"
        echo "shader_stats: exit $?"
        # What the driver gives of the kernels' internal representations (if anything; NVIDIA's
        # SASS would show local-memory loads and stores) for the one-sided and the tridiagonal
        # kernels at n = 8, 32 and the register kernel at n = 8, into $OUT/ir.
        timeout "$(step_timeout 30 390)" .device/shader_stats --device system \
            --kernels HestenesEigh,TridiagonalEigh --n 8,32 --ir "$OUT/ir" >/dev/null &&
            timeout "$(step_timeout 30 390)" .device/shader_stats --device system --kernels RegistersEigh \
                --n 8 --ir "$OUT/ir" >/dev/null
        echo "shader_stats --ir: exit $?; $(ls "$OUT/ir" 2>/dev/null | wc -l) file(s) in $OUT/ir"
    fi
    if [ -x .device/shader_stats_baseline ]; then
        echo "== compile statistics of the baseline: .device/shader_stats_baseline --device system --n $NS"
        timeout "$(step_timeout 60 380)" .device/shader_stats_baseline --device system \
            --kernels HestenesEigh,HestenesEigvalsh,EighVjp --n "$NS" | tee "$OUT/shader_stats_baseline.txt"
        echo "shader_stats_baseline: exit $?"
        timeout "$(step_timeout 30 370)" .device/shader_stats_baseline --device system --kernels HestenesEigh \
            --n 8,32 --ir "$OUT/ir_baseline" >/dev/null
        echo "shader_stats_baseline --ir: exit $?; $(ls "$OUT/ir_baseline" 2>/dev/null | wc -l) file(s) in $OUT/ir_baseline"
    fi

    # Runs to make: "label binary forward-kernel" (the label names the kernel in the tables).
    local runs=() n b fk label bin
    for fk in ${FORWARD//,/ }; do
        runs+=("$fk $BIN $fk")
    done
    [ -n "$BASELINE" ] && runs+=("baseline-one-sided $BASELINE one-sided")

    # "kernel[:eigvalsh][@wg]" runs `kernel` with EIGRAD_GPU_EIGVALSH=eigvalsh (auto otherwise)
    # and, with @wg, the workgroup knobs EIGRAD_GPU_WG_TARGET (one-sided) and
    # EIGRAD_GPU_TRIDIAGONAL_WG (tridiagonal eigh) set to wg. Sets fk and knobs (the environment).
    local knobs=() wg ev
    parse_run() {
        read -r label bin fk <<<"$1"
        if [[ $fk == tuned ]]; then
            knobs=("EIGRAD_GPU_FORWARD=auto" "EIGRAD_GPU_EIGVALSH=auto" "EIGRAD_GPU_TUNE=1")
            return
        fi
        wg=
        [[ $fk == *@* ]] && wg=${fk#*@} && fk=${fk%%@*}
        ev=auto
        [[ $fk == *:* ]] && ev=${fk#*:} && fk=${fk%%:*}
        knobs=("EIGRAD_GPU_FORWARD=$fk" "EIGRAD_GPU_EIGVALSH=$ev")
        [ -n "$wg" ] && knobs+=("EIGRAD_GPU_WG_TARGET=$wg" "EIGRAD_GPU_TRIDIAGONAL_WG=$wg")
    }
    for run in "${runs[@]}"; do
        parse_run "$run"
        # `check` does not tune: the tuned kernels are each checked under their own names.
        [[ $fk == tuned ]] && continue
        echo "== $label: ${knobs[*]} $bin check --device gpu (f32 GPU results against the f64 CPU reference)"
        env "${knobs[@]}" timeout "$(step_timeout 60 330)" "$bin" check --device gpu
        echo "check $label: exit $?"
    done

    for run in "${runs[@]}"; do
        parse_run "$run"
        for n in ${NS//,/ }; do
            # The register kernel runs up to n = 8 (REGISTERS_MAX_N) only.
            [[ $fk == registers ]] && ((n > 8)) && continue
            b=$BATCH
            ((n > 32)) && b=$((BATCH / 8))
            echo "== $label: ${knobs[*]} $bin bench --device gpu --n $n --batch $b"
            env "${knobs[@]}" timeout "$(step_timeout 120 160)" "$bin" bench --device gpu \
                --n "$n" --batch "$b" --json "$SCRATCH/eigrad_${label}_n$n.json"
            echo "bench $label n = $n: exit $?"
        done
    done

    # Where the end-to-end time goes (upload, submissions, waits, copy-out per call, and how much
    # of it overlapped): the host path's phase log at debug level, default kernels, n = 8 and 32
    # (the sizes whose end-to-end target was missed most), into $OUT/phases.txt.
    for n in 8 32; do
        [[ ",$NS," == *",$n,"* ]] || continue
        echo "== phases: RUST_LOG=eigrad=debug $BIN bench --device gpu --n $n --batch $BATCH"
        RUST_LOG=eigrad=debug timeout "$(step_timeout 60 200)" "$BIN" bench --device gpu --n "$n" \
            --batch "$BATCH" 2>&1 >/dev/null | grep 'round(s)' | tee -a "$OUT/phases.txt" | tail -4
        echo "phases n = $n: exit ${PIPESTATUS[0]}"
    done

    echo "== JAX anchor: $ANCHOR --n $NS --batch $BATCH --no-torch"
    XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1 \
        timeout "$(step_timeout 180 10)" python3 "$ANCHOR" --n "$NS" --batch "$BATCH" --no-torch \
        | tee "$OUT/jax.txt"
    echo "anchor: exit $?"

    echo "== ratios"
    python3 - "$SCRATCH" "$OUT" <<'PY' | tee "$OUT/ratios.txt"
import glob, json, re, sys

scratch, out = sys.argv[1], sys.argv[2]
jax = {}
try:
    for line in open(f"{out}/jax.txt"):
        m = re.match(r"anchor=jax n=(\d+) batch=(\d+) op=(\S+) ms=([0-9.eE+-]+)", line)
        if m:
            jax[(int(m[1]), m[3])] = (int(m[2]), float(m[4]))
except OSError:
    pass
merged = {"tool": "eigrad bench (merged by benches/gpu_compare.sh)", "kernels": {}}
by_kernel = {}
speedup_target = {4: 10, 8: 10, 16: 5, 32: 3, 64: 3}
for fk in sorted({p.split("/")[-1].split("_")[1] for p in glob.glob(f"{scratch}/eigrad_*_n*.json")}):
    results, transfers, adapters = [], [], set()
    for path in sorted(glob.glob(f"{scratch}/eigrad_{fk}_n*.json")):
        with open(path) as f:
            rep = json.load(f)
        results += rep["results"]
        transfers += rep["transfers"]
        adapters |= {r["adapter"] for r in rep["results"] if r.get("adapter")}
    merged["kernels"][fk] = {"adapters": sorted(adapters), "results": results, "transfers": transfers}
    res = {(r["n"], r["op"], r["mode"]): r for r in results if r["device"] == "gpu"}
    by_kernel[fk] = res
    cp = {(t["n"], t["op"]): t for t in transfers}
    ns = sorted({k[0] for k in res} | {k[0] for k in jax})
    used = sorted({(r["n"], r.get("kernel")) for r in results if r["device"] == "gpu"})
    print(f"== forward kernel {fk}: eigrad on {', '.join(sorted(adapters)) or '(no eigrad results)'}; device-resident medians")
    print("kernel per n: " + ", ".join(f"n = {n}: {k}" for n, k in used))
    print()
    print("JAX ms / eigrad ms (above 1: eigrad faster); target from the performance issue;")
    print("kernels ms = eigrad's device time inside its kernels (timestamp queries), the rest of eigrad ms is")
    print("submission, synchronisation and host time")
    print(f"{'n':>3} {'batch':>6} {'op':<9} {'JAX ms':>9} {'eigrad ms':>10} {'ratio':>7} {'target':>7} {'kernels ms':>10}")
    for n in ns:
        for op in ("eigh", "eigvalsh", "eigh+vjp"):
            j, e = jax.get((n, op)), res.get((n, op, "resident"))
            jb, jms = j if j else (None, None)
            ems = e["median_seconds"] * 1e3 if e else None
            eb = e["batch"] if e else None
            batch = eb or jb
            note = "" if not (jb and eb) or jb == eb else f"  (batches differ: JAX {jb}, eigrad {eb})"
            ratio = f"{jms / ems:7.3g}" if jms and ems else f"{'-':>7}"
            tgt = f"{'>=' + str(speedup_target.get(n, '')):>7}" if op == "eigh" and n in speedup_target else f"{'':>7}"
            js = f"{jms:9.3f}" if jms else f"{'-':>9}"
            es = f"{ems:10.3f}" if ems else f"{'-':>10}"
            kern = e.get("kernel_seconds") if e else None
            ks = f"{kern * 1e3:10.3f}" if kern else f"{'-':>10}"
            print(f"{n:>3} {batch or '-':>6} {op:<9} {js} {es} {ratio} {tgt} {ks}{note}")
    print()
    print("eigrad's own ratios: eigh+vjp / eigh (target <= 1.3), eigh / eigvalsh (target >= 1.5 at n >= 16),")
    print("end to end / copy time of the bytes moved, for eigh (target <= 1.5)")
    print(f"{'n':>3} {'(eigh+vjp)/eigh':>16} {'eigh/eigvalsh':>14} {'vjp ms':>9} {'e2e ms':>9} {'copy ms':>9} {'e2e/copy':>9}")
    for n in ns:
        def ms(op, mode="resident"):
            r = res.get((n, op, mode))
            return r["median_seconds"] * 1e3 if r else None
        f, v, fv, vj = ms("eigh"), ms("eigvalsh"), ms("eigh+vjp"), ms("vjp")
        t = cp.get((n, "eigh"))
        a = f"{fv / f:16.3g}" if f and fv else f"{'-':>16}"
        b = f"{f / v:14.3g}" if f and v else f"{'-':>14}"
        d = f"{vj:9.3f}" if vj else f"{'-':>9}"
        c = (f"{t['end_to_end_seconds'] * 1e3:9.3f} {t['copy_seconds'] * 1e3:9.3f} {t['end_to_end_over_copy']:9.3g}"
             if t else f"{'-':>9} {'-':>9} {'-':>9}")
        print(f"{n:>3} {a} {b} {d} {c}")
    print()
# Side by side: each kernel run's device-resident median per n and op, the fastest marked with *
# (the evidence for the choices of `Auto`; a run whose check failed above must not be chosen).
labels = sorted(by_kernel)
if labels:
    print("== side by side: device-resident medians in ms, fastest marked *; JAX's for reference")
    for op in ("eigh", "eigvalsh", "eigh+vjp", "vjp"):
        ns = sorted({k[0] for res in by_kernel.values() for k in res if k[1] == op})
        if not ns:
            continue
        print(f"{op}:")
        print(f"{'n':>3} " + " ".join(f"{l:>20}" for l in labels) + f" {'JAX':>9}")
        for n in ns:
            ms = {l: by_kernel[l].get((n, op, "resident")) for l in labels}
            ms = {l: r["median_seconds"] * 1e3 for l, r in ms.items() if r}
            best = min(ms, key=ms.get) if ms else None
            cells = [f"{ms[l]:19.3f}{'*' if l == best else ' '}" if l in ms else f"{'-':>20}" for l in labels]
            j = jax.get((n, op))
            print(f"{n:>3} " + " ".join(cells) + (f" {j[1]:9.3f}" if j else f" {'-':>9}"))
    print()
with open(f"{out}/eigrad.json", "w") as f:
    json.dump(merged, f, indent=1)
PY
    echo "ratios: exit $?"
    echo "== done in $((SECONDS - START)) s; files in $OUT"
}

main 2>&1 | tee "$OUT/log.txt"
rm -rf "$SCRATCH"
