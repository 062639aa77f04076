//! `eigrad bench`: per matrix size, the median time per call (and throughput in matrices per
//! second) of the forward eigendecomposition, the eigenvalues-only path and the VJP, on the GPU
//! and the CPU; tables on stdout and optionally the same results as JSON (`--json FILE`).
//!
//! Two modes:
//! - **end to end** (`end_to_end`): from host memory to host memory through the host-memory
//!   API. On the GPU that includes upload and readback; on the CPU it is the only mode (data
//!   already lives where the work runs, so "resident" would be the same number).
//! - **device-resident** (`resident`, GPU only): inputs already on the device, outputs left
//!   there, each call timed until the GPU has finished ([`GpuContext::wait`]); pipelines are
//!   compiled by a warm-up call first, and outputs go back to the buffer pool after each call
//!   ([`GpuContext::recycle`]), so steady state creates no buffers. Ops: `eigh`, `eigvalsh`,
//!   `vjp` (the reverse rule alone, given a resident forward) and `eigh+vjp` (both, as a
//!   training step runs them).
//!
//! For the GPU it also times plain host↔device copies of the bytes each end-to-end call moves
//! (upload of its inputs, readback of its outputs, as buffers of the same sizes), so the ratio
//! end-to-end / copy can be read off (the performance issue's target is ≤ 1.5). The copies are a
//! best case: uploads through the pooled staging buffers then one wait, readbacks into host
//! memory allocated (and touched) once, outside the timing.
//!
//! The GPU's `vjp` end to end calls [`GpuContext::eigh_vjp`] on the f32 data directly (the
//! library's host-memory entry point), so no conversion copy of the command line's is timed.
//!
//! Every timing is the median of up to 10 timed calls after one warm-up call.
//!
//! With `EIGRAD_GPU_TUNE=1` each GPU size is first tuned ([`GpuContext::tune`], with that
//! size's batch): the candidates' times and the choice are printed, and the size is then timed
//! with the tuned kernels.

use super::args::{unique_sizes, BenchArgs};
use super::device::{Devices, Eig, Engine};
use super::error::{CliError, CliResult};
use super::memory;
use super::npy::{self, Floats, Outputs};
use super::progress;
use eigrad::gpu::{EigvalshKernel, ForwardKernel, GpuContext, GpuTensor, TuneReport, MAX_N};
use eigrad::samples::{self, Rng};
use eigrad::{Degeneracy, EighOptions, Vectors};
use std::process::ExitCode;
use std::time::Instant;

/// The environment variable that makes `bench` tune each GPU size first: `1`, or `0` (the
/// default) for the context's own choices.
const TUNE_ENV: &str = "EIGRAD_GPU_TUNE";

fn tune_wanted() -> CliResult<bool> {
    match std::env::var(TUNE_ENV) {
        Err(_) => Ok(false),
        Ok(v) if v.is_empty() || v == "0" => Ok(false),
        Ok(v) if v == "1" => Ok(true),
        Ok(v) => Err(CliError(format!("{TUNE_ENV}={v:?}: expected 0 or 1"))),
    }
}

/// What tuning measured at one size, as two lines: the eigendecompositions, then eigenvalues
/// only, each candidate's best time in milliseconds and the choice.
fn tune_lines(r: &TuneReport) -> String {
    let mut out = format!("tuned n = {} (batch {}):", r.n, r.batch);
    for vectors in [Vectors::Yes, Vectors::No] {
        let timed: Vec<String> = (r.timings.iter())
            .filter(|t| t.vectors == vectors)
            .map(|t| {
                let name = match (vectors, t.choice.forward) {
                    (Vectors::No, _) => t.choice.eigvalsh.name().to_string(),
                    (_, ForwardKernel::Tridiagonal) => {
                        format!("tridiagonal@{}", t.choice.tridiagonal_workgroup)
                    }
                    (_, k) => k.name().to_string(),
                };
                let ms = t.seconds.map_or("failed".into(), |s| ms(s, 0));
                format!("{name} {ms}")
            })
            .collect();
        let (what, chosen) = match vectors {
            Vectors::Yes => ("eigh", r.chosen.forward.name()),
            Vectors::No => ("eigvalsh", r.chosen.eigvalsh.name()),
        };
        if !timed.is_empty() {
            out += &format!("\n  {what}: {} -> {chosen}", timed.join(", "));
        }
    }
    out
}

/// The operations timed end to end, in table order.
const E2E_OPS: [&str; 3] = ["eigh", "eigvalsh", "vjp"];
/// The operations timed device-resident (GPU only), in table order.
const RESIDENT_OPS: [&str; 4] = ["eigh", "eigvalsh", "vjp", "eigh+vjp"];
/// Bytes per element on the device (f32 and u32).
const WORD: u64 = 4;

/// How a time was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// From host memory, including upload and readback on the GPU.
    EndToEnd,
    /// Inputs and outputs on the device (GPU only).
    Resident,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::EndToEnd => "end_to_end",
            Mode::Resident => "resident",
        }
    }
}

/// One timing.
struct Sample {
    /// `cpu` or `gpu`.
    device: &'static str,
    /// The GPU adapter's name, if on the GPU.
    adapter: Option<String>,
    /// The GPU eigendecomposition kernel at this size (`one-sided`, refined above
    /// `ONE_SIDED_REFINE_ABOVE`, or `two-sided`; see `ForwardKernel`), or `tridiagonal` for an
    /// eigenvalues-only row that ran that kernel (`EigvalshKernel`), if on the GPU.
    kernel: Option<&'static str>,
    /// Matrix size.
    n: usize,
    /// Matrices per call.
    batch: usize,
    /// One of [`E2E_OPS`] or [`RESIDENT_OPS`].
    op: &'static str,
    /// How it was taken.
    mode: Mode,
    /// Timed repetitions.
    reps: usize,
    /// Median seconds per call.
    median_s: f64,
    /// Median device seconds inside the kernels per call, from timestamp queries (resident GPU
    /// rows on a device that has them).
    kernel_s: Option<f64>,
    /// The same per kernel (entry point), in the order the call dispatches them.
    kernels: Vec<(&'static str, f64)>,
}

impl Sample {
    /// Matrices per second at the median.
    fn rate(&self) -> f64 {
        self.batch as f64 / self.median_s.max(1e-12)
    }
}

/// The host↔device copies of one end-to-end GPU operation, timed as plain transfers.
struct Transfer {
    /// The GPU adapter's name.
    adapter: String,
    /// Matrix size.
    n: usize,
    /// Matrices per call.
    batch: usize,
    /// One of [`E2E_OPS`].
    op: &'static str,
    /// Bytes uploaded by one end-to-end call.
    upload_bytes: u64,
    /// Bytes read back by one end-to-end call.
    readback_bytes: u64,
    /// Timed repetitions (each of upload and readback).
    reps: usize,
    /// Median seconds of the upload (until the device has the data).
    upload_s: f64,
    /// Median seconds of the readback (until the data is in host memory).
    readback_s: f64,
    /// Median seconds of the end-to-end call, for the ratio.
    end_to_end_s: f64,
}

impl Transfer {
    /// Upload plus readback.
    fn copy_s(&self) -> f64 {
        self.upload_s + self.readback_s
    }

    /// End to end over copy time: 1 means the computation is completely hidden or free.
    fn ratio(&self) -> f64 {
        self.end_to_end_s / self.copy_s().max(1e-12)
    }
}

/// The buffers (in f32/u32 elements) that one end-to-end call of `op` uploads and reads back
/// through the host-memory API: (uploads, readbacks).
fn transfer_words(op: &str, n: usize, batch: usize) -> (Vec<usize>, Vec<usize>) {
    let (b, nn) = (batch, n * n);
    match op {
        // A in; λ, V, status out.
        "eigh" => (vec![b * nn], vec![b * n, b * nn, b]),
        // A in; λ, status out.
        "eigvalsh" => (vec![b * nn], vec![b * n, b]),
        // λ, V, status, λ̄, V̄ in; Ā out.
        _ => (vec![b * n, b * nn, b, b * n, b * nn], vec![b * nn]),
    }
}

/// The f64 batch-sized arrays a size's benchmark holds at once, about (the inputs, their f32
/// copies, the outputs and cotangents): what [`memory::check_fits`] budgets.
const BENCH_COPIES: u64 = 6;

/// The default batch for a device and size: about 2^22/n² matrices on the GPU (1024..=2^20),
/// 2^18/n² on the CPU (64..=65536), so that each call does a comparable amount of work.
fn default_batch(engine: Engine<'_>, n: usize) -> usize {
    let (budget, lo, hi) = match engine {
        Engine::Gpu(_) => (1usize << 22, 1024, 1 << 20),
        Engine::Cpu => (1 << 18, 64, 1 << 16),
    };
    (budget / n.saturating_mul(n).max(1)).clamp(lo, hi)
}

/// Timed calls when the first timed call took `first_s`: 10, or fewer for slow calls (5 above
/// a quarter of a second, 3 above a second).
fn reps_after(first_s: f64) -> usize {
    if first_s > 1.0 {
        3
    } else if first_s > 0.25 {
        5
    } else {
        10
    }
}

/// The median of `times` (sorted in place).
fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Runs `f` once to warm up (pipeline compilation, pool buffers), then times it: the first
/// timed call decides how many there are ([`reps_after`]). Returns the median seconds and the
/// number of timed calls.
fn median_time(mut f: impl FnMut() -> CliResult<()>) -> CliResult<(f64, usize)> {
    f()?;
    let mut timed = || -> CliResult<f64> {
        let t = Instant::now();
        f()?;
        Ok(t.elapsed().as_secs_f64())
    };
    let first = timed()?;
    let reps = reps_after(first);
    let mut times = Vec::with_capacity(reps);
    times.push(first);
    for _ in 1..reps {
        times.push(timed()?);
    }
    Ok((median(&mut times), reps))
}

/// A JSON string literal.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The JSON report.
fn to_json(samples: &[Sample], transfers: &[Transfer]) -> String {
    let rows: Vec<String> = samples
        .iter()
        .map(|s| {
            format!(
                "    {{\"device\": {}, \"adapter\": {}, \"kernel\": {}, \"n\": {}, \"batch\": {}, \
                 \"op\": {}, \"mode\": {}, \"reps\": {}, \"median_seconds\": {:e}, \
                 \"matrices_per_second\": {:e}, \"kernel_seconds\": {}, \"kernels\": {}}}",
                json_str(s.device),
                s.adapter.as_deref().map_or("null".into(), json_str),
                s.kernel.map_or("null".into(), json_str),
                s.n,
                s.batch,
                json_str(s.op),
                json_str(s.mode.name()),
                s.reps,
                s.median_s,
                s.rate(),
                s.kernel_s.map_or("null".into(), |k| format!("{k:e}")),
                kernels_json(&s.kernels)
            )
        })
        .collect();
    let copies: Vec<String> = transfers
        .iter()
        .map(|t| {
            format!(
                "    {{\"device\": \"gpu\", \"adapter\": {}, \"n\": {}, \"batch\": {}, \"op\": {}, \
                 \"upload_bytes\": {}, \"readback_bytes\": {}, \"reps\": {}, \
                 \"upload_seconds\": {:e}, \"readback_seconds\": {:e}, \"copy_seconds\": {:e}, \
                 \"end_to_end_seconds\": {:e}, \"end_to_end_over_copy\": {:e}}}",
                json_str(&t.adapter),
                t.n,
                t.batch,
                json_str(t.op),
                t.upload_bytes,
                t.readback_bytes,
                t.reps,
                t.upload_s,
                t.readback_s,
                t.copy_s(),
                t.end_to_end_s,
                t.ratio()
            )
        })
        .collect();
    let block = |rows: &[String]| {
        if rows.is_empty() {
            "[]".to_string()
        } else {
            format!("[\n{}\n  ]", rows.join(",\n"))
        }
    };
    format!(
        "{{\n  \"tool\": \"eigrad bench\",\n  \"version\": {},\n  \"unit\": \"matrices_per_second\",\n  \
         \"statistic\": \"median of up to 10 timed calls after one warm-up call\",\n  \
         \"mode_note\": \"end_to_end = from host memory, including upload and readback on the GPU; \
         resident = inputs already on the device, outputs left there, timed until the GPU has \
         finished (GPU only: on the CPU resident equals end_to_end, so only end_to_end rows are \
         written); vjp = the reverse rule alone given a forward result, eigh+vjp = both; \
         kernel_seconds = median over 5 further calls of the device time inside eigrad's \
         compute passes (timestamp queries; null where not measured), kernels = the same per \
         kernel entry point\",\n  \
         \"transfers_note\": \"plain host-to-device upload and device-to-host readback of \
         buffers of the sizes one end-to-end call moves; end_to_end_over_copy = \
         end_to_end_seconds / copy_seconds\",\n  \
         \"results\": {},\n  \"transfers\": {}\n}}\n",
        json_str(env!("CARGO_PKG_VERSION")),
        block(&rows),
        block(&copies)
    )
}

/// The data of one size: f32 matrices and cotangents.
struct Inputs {
    n: usize,
    batch: usize,
    a: Floats,
    gw: Floats,
    gv: Floats,
}

impl Inputs {
    fn new(n: usize, batch: usize) -> Inputs {
        let mut rng = Rng::new(7 + n as u64);
        let a = Floats::rounded_f32(&samples::random_symmetric(&mut rng, n, batch));
        let gw = Floats::rounded_f32(&(0..batch * n).map(|_| rng.normal()).collect::<Vec<_>>());
        let gv = Floats::rounded_f32(&(0..batch * n * n).map(|_| rng.normal()).collect::<Vec<_>>());
        Inputs {
            n,
            batch,
            a,
            gw,
            gv,
        }
    }

    fn sample(&self, engine: Engine<'_>, op: &'static str, mode: Mode, t: (f64, usize)) -> Sample {
        Sample {
            device: engine.kind(),
            adapter: match engine {
                Engine::Gpu(ctx) => Some(ctx.adapter_name().to_string()),
                Engine::Cpu => None,
            },
            kernel: match engine {
                Engine::Gpu(ctx)
                    if op == "eigvalsh"
                        && ctx.eigvalsh_kernel_for(self.n) == EigvalshKernel::Tridiagonal =>
                {
                    Some(EigvalshKernel::Tridiagonal.name())
                }
                Engine::Gpu(ctx) => Some(ctx.forward_kernel_for(self.n).name()),
                Engine::Cpu => None,
            },
            n: self.n,
            batch: self.batch,
            op,
            mode,
            reps: t.1,
            median_s: t.0,
            kernel_s: None,
            kernels: Vec::new(),
        }
    }
}

/// Times the end-to-end operations ([`E2E_OPS`]) on either device.
fn bench_end_to_end(
    engine: Engine<'_>,
    inp: &Inputs,
    pb: &indicatif::ProgressBar,
) -> CliResult<Vec<Sample>> {
    let opts = bench_options();
    let n = inp.n;
    let mut out = Vec::with_capacity(E2E_OPS.len());
    for op in E2E_OPS {
        pb.set_message(format!("{} n = {n} {op} end to end", engine.kind()));
        let t = match op {
            "eigh" => median_time(|| engine.eigh(&inp.a, n, &opts, Vectors::Yes).map(drop))?,
            "eigvalsh" => median_time(|| engine.eigh(&inp.a, n, &opts, Vectors::No).map(drop))?,
            _ => {
                let eig = engine.eigh(&inp.a, n, &opts, Vectors::Yes)?;
                match (engine, &eig, &inp.gw, &inp.gv) {
                    (Engine::Gpu(ctx), Eig::F32(e), Floats::F32(gw), Floats::F32(gv)) => {
                        median_time(|| {
                            ctx.eigh_vjp(e, Some(gw), Some(gv), Degeneracy::default())?;
                            Ok(())
                        })?
                    }
                    _ => median_time(|| {
                        engine
                            .vjp(&eig, Some(&inp.gw), Some(&inp.gv), Degeneracy::default())
                            .map(drop)
                    })?,
                }
            }
        };
        out.push(inp.sample(engine, op, Mode::EndToEnd, t));
        pb.inc(1);
    }
    Ok(out)
}

/// The options every benchmarked call uses: the defaults, except that the environment variable
/// `EIGRAD_BENCH_MAX_SWEEPS` (a diagnostic) caps the sweeps, so that timings at caps 1, 2, …
/// give the cost of one sweep (the capped results are not converged; only their time counts).
fn bench_options() -> EighOptions {
    let cap = std::env::var("EIGRAD_BENCH_MAX_SWEEPS")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|&c| c > 0);
    match cap {
        Some(max_sweeps) => EighOptions {
            max_sweeps,
            ..EighOptions::default()
        },
        None => EighOptions::default(),
    }
}

/// Times the device-resident operations ([`RESIDENT_OPS`]) on the GPU.
fn bench_resident(
    ctx: &GpuContext,
    inp: &Inputs,
    pb: &indicatif::ProgressBar,
) -> CliResult<Vec<Sample>> {
    let opts = bench_options();
    let policy = Degeneracy::default();
    let n = inp.n;
    let a = ctx.upload(&inp.a.to_f32());
    let gw = ctx.upload(&inp.gw.to_f32());
    let gv = ctx.upload(&inp.gv.to_f32());
    let fwd = ctx.eigh_resident(&a, n, &opts, Vectors::Yes)?;
    ctx.wait()?;
    let engine = Engine::Gpu(ctx);
    let mut out = Vec::with_capacity(RESIDENT_OPS.len());
    for op in RESIDENT_OPS {
        pb.set_message(format!("gpu n = {n} {op} resident"));
        let mut call = || -> CliResult<()> {
            match op {
                "eigh" | "eigvalsh" => {
                    let vectors = if op == "eigh" {
                        Vectors::Yes
                    } else {
                        Vectors::No
                    };
                    let r = ctx.eigh_resident(&a, n, &opts, vectors)?;
                    ctx.wait()?;
                    ctx.recycle_eigh(r);
                }
                "vjp" => {
                    let g = ctx.eigh_vjp_resident(&fwd, Some(&gw), Some(&gv), policy)?;
                    ctx.wait()?;
                    ctx.recycle(g);
                }
                _ => {
                    let f = ctx.eigh_resident(&a, n, &opts, Vectors::Yes)?;
                    let g = ctx.eigh_vjp_resident(&f, Some(&gw), Some(&gv), policy)?;
                    ctx.wait()?;
                    ctx.recycle(g);
                    ctx.recycle_eigh(f);
                }
            }
            Ok(())
        };
        let t = median_time(&mut call)?;
        let mut sample = inp.sample(engine, op, Mode::Resident, t);
        if ctx.has_timestamps() {
            let (total, kernels) = median_kernel_time(ctx, &mut call)?;
            sample.kernel_s = Some(total);
            sample.kernels = kernels;
        }
        out.push(sample);
        pb.inc(1);
    }
    ctx.recycle_eigh(fwd);
    for t in [a, gw, gv] {
        ctx.recycle(t);
    }
    Ok(out)
}

/// Profiled calls per resident GPU operation for its kernel time.
const PROFILED_CALLS: usize = 5;

/// The median over [`PROFILED_CALLS`] calls of `call` of the device time inside its kernels
/// (the sum over its dispatches, from timestamp queries), and the median of each kernel's share
/// (summed over its chunks), by entry point in dispatch order.
fn median_kernel_time(
    ctx: &GpuContext,
    mut call: impl FnMut() -> CliResult<()>,
) -> CliResult<(f64, Vec<(&'static str, f64)>)> {
    let mut totals = Vec::with_capacity(PROFILED_CALLS);
    let mut each: Vec<(&'static str, Vec<f64>)> = Vec::new();
    for _ in 0..PROFILED_CALLS {
        let (result, kernels) = ctx.profile(|| Ok(call()))?;
        result?;
        totals.push(kernels.iter().map(|k| k.seconds).sum());
        let mut this_call: Vec<(&'static str, f64)> = Vec::new();
        for k in kernels {
            *entry(&mut this_call, k.kernel) += k.seconds;
        }
        for (name, t) in this_call {
            entry(&mut each, name).push(t);
        }
    }
    let each = (each.into_iter())
        .map(|(name, mut ts)| (name, median(&mut ts)))
        .collect();
    Ok((median(&mut totals), each))
}

/// The value kept for `name` in `list` (a new default one at the end when there is none), so
/// that entries keep the order in which names first appear.
fn entry<'a, T: Default>(list: &'a mut Vec<(&'static str, T)>, name: &'static str) -> &'a mut T {
    let i = match list.iter().position(|(n, _)| *n == name) {
        Some(i) => i,
        None => {
            list.push((name, T::default()));
            list.len() - 1
        }
    };
    &mut list[i].1
}

/// Per-kernel times as a JSON object (`{}` when none).
fn kernels_json(kernels: &[(&str, f64)]) -> String {
    let fields: Vec<String> = (kernels.iter())
        .map(|(name, t)| format!("{}: {t:e}", json_str(name)))
        .collect();
    format!("{{{}}}", fields.join(", "))
}

/// Times plain uploads and readbacks of the buffers each end-to-end operation moves.
fn bench_transfers(
    ctx: &GpuContext,
    inp: &Inputs,
    e2e: &[Sample],
    pb: &indicatif::ProgressBar,
) -> CliResult<Vec<Transfer>> {
    let (n, batch) = (inp.n, inp.batch);
    // The largest buffer any op moves is B·n² words (or B·n, or B, for n = 1).
    let longest = batch * (n * n).max(n).max(1);
    let zeros = vec![0f32; longest];
    let mut out = Vec::with_capacity(E2E_OPS.len());
    for (op, sample) in E2E_OPS.iter().zip(e2e) {
        pb.set_message(format!("gpu n = {n} {op} copies"));
        let (up, down) = transfer_words(op, n, batch);
        let bytes = |w: &[usize]| w.iter().map(|&x| x as u64 * WORD).sum::<u64>();
        let (upload_s, reps) = median_time(|| {
            let ts: Vec<GpuTensor> = up.iter().map(|&w| ctx.upload(&zeros[..w])).collect();
            ctx.wait()?;
            for t in ts {
                ctx.recycle(t);
            }
            Ok(())
        })?;
        let on_device: Vec<GpuTensor> = down.iter().map(|&w| ctx.upload(&zeros[..w])).collect();
        ctx.wait()?;
        // Host memory for the readbacks, allocated and touched once: a best-case plain copy.
        let mut host: Vec<Vec<f32>> = down.iter().map(|&w| vec![1f32; w]).collect();
        let (readback_s, _) = median_time(|| {
            for (t, h) in on_device.iter().zip(&mut host) {
                ctx.download_into(t, h)?;
            }
            Ok(())
        })?;
        for t in on_device {
            ctx.recycle(t);
        }
        out.push(Transfer {
            adapter: ctx.adapter_name().to_string(),
            n,
            batch,
            op,
            upload_bytes: bytes(&up),
            readback_bytes: bytes(&down),
            reps,
            upload_s,
            readback_s,
            end_to_end_s: sample.median_s,
        });
        pb.inc(1);
    }
    Ok(out)
}

/// Milliseconds with four significant digits, right-aligned in `w` columns.
fn ms(seconds: f64, w: usize) -> String {
    let x = seconds * 1e3;
    let digits = if x >= 1000.0 {
        0
    } else if x >= 100.0 {
        1
    } else if x >= 10.0 {
        2
    } else if x >= 1.0 {
        3
    } else {
        4
    };
    format!("{x:>w$.digits$}")
}

/// The headers of the time table, in column order.
const TIME_COLUMNS: [&str; 7] = [
    "eigh e2e",
    "eigvalsh e2e",
    "vjp e2e",
    "eigh res",
    "eigvalsh res",
    "vjp res",
    "eigh+vjp res",
];

/// What a table cell shows.
#[derive(Clone, Copy)]
enum Column {
    /// Median milliseconds per call.
    Ms,
    /// Matrices per second at the median.
    Rate,
}

/// One table row: end-to-end then resident columns (`-` where not measured).
fn table_row(device: &str, n: usize, batch: usize, row: &[Sample], col: Column) -> String {
    let mut line = format!("{device:<6} {n:>4} {batch:>8} ");
    for (mode, ops) in [
        (Mode::EndToEnd, &E2E_OPS[..]),
        (Mode::Resident, &RESIDENT_OPS[..]),
    ] {
        for op in ops {
            line += &match (row.iter().find(|s| s.mode == mode && s.op == *op), col) {
                (Some(s), Column::Ms) => format!(" {}", ms(s.median_s, 12)),
                (Some(s), Column::Rate) => format!(" {:>12.3e}", s.rate()),
                (None, _) => format!(" {:>12}", "-"),
            };
        }
    }
    line
}

/// `eigrad bench`.
pub fn bench(args: &BenchArgs) -> CliResult<ExitCode> {
    if let Some(path) = &args.json {
        // Before the (long) run, not after it.
        npy::check_dest(path).map_err(|e| CliError(format!("--json: {}", e.0)))?;
    }
    let tune = tune_wanted()?;
    let sizes = unique_sizes(&args.n);
    let devices = Devices::open(args.device, &sizes)?;
    let mut plan: Vec<(Engine<'_>, usize)> = Vec::new();
    if let Some(ctx) = devices.gpu() {
        plan.extend(
            sizes
                .iter()
                .filter(|&&n| n <= MAX_N)
                .map(|&n| (Engine::Gpu(ctx), n)),
        );
    }
    if devices.cpu_wanted() {
        plan.extend(sizes.iter().map(|&n| (Engine::Cpu, n)));
    }
    // Every size's workload is checked before the first runs.
    for &(engine, n) in &plan {
        let batch = args.batch.unwrap_or_else(|| default_batch(engine, n));
        memory::check_fits(
            &format!("batch {batch} with n = {n}"),
            n,
            batch,
            BENCH_COPIES,
        )?;
    }
    println!("eigrad bench: median milliseconds per call (up to 10 timed calls after a warm-up)");
    println!("  e2e = end to end from host memory (on the GPU: upload, compute, read back)");
    println!("  res = device-resident (GPU only): inputs on the device, outputs left there, timed");
    println!(
        "        until the GPU finishes; on the CPU resident = end to end, so it is left blank"
    );
    println!("  vjp = the reverse rule alone (given a forward result); eigh+vjp = both");
    println!();
    let mut header = format!("{:<6} {:>4} {:>8} ", "device", "n", "batch");
    for c in TIME_COLUMNS {
        header += &format!(" {c:>12}");
    }
    println!("{header}");
    let steps: usize = plan
        .iter()
        .map(|(e, _)| match e {
            Engine::Gpu(_) => 2 * E2E_OPS.len() + RESIDENT_OPS.len(),
            Engine::Cpu => E2E_OPS.len(),
        })
        .sum();
    let pb = progress::bar(steps as u64, "bench");
    let mut rows: Vec<Vec<Sample>> = Vec::new();
    let mut transfers = Vec::new();
    for (engine, n) in plan {
        let batch = args.batch.unwrap_or_else(|| default_batch(engine, n));
        pb.set_message(format!(
            "{} n = {n}: generating {batch} matrices",
            engine.kind()
        ));
        if let (true, Engine::Gpu(ctx)) = (tune, engine) {
            pb.set_message(format!("gpu n = {n}: tuning"));
            let report = ctx.tune(n, batch)?;
            pb.suspend(|| println!("{}", tune_lines(&report)));
        }
        let inp = Inputs::new(n, batch);
        let mut row = bench_end_to_end(engine, &inp, &pb)?;
        if let Engine::Gpu(ctx) = engine {
            transfers.extend(bench_transfers(ctx, &inp, &row, &pb)?);
            row.extend(bench_resident(ctx, &inp, &pb)?);
        }
        pb.suspend(|| println!("{}", table_row(engine.kind(), n, batch, &row, Column::Ms)));
        rows.push(row);
    }
    pb.finish_and_clear();

    println!();
    println!("throughput, matrices per second:");
    println!("{header}");
    for row in &rows {
        let s = &row[0];
        println!("{}", table_row(s.device, s.n, s.batch, row, Column::Rate));
    }

    if !transfers.is_empty() {
        println!();
        println!(
            "GPU host↔device copies of the bytes one end-to-end call moves (plain upload of its"
        );
        println!("inputs + readback of its outputs), and end to end / copy (target ≤ 1.5):");
        println!(
            "{:>4} {:>8} {:<9} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8}",
            "n", "batch", "op", "up MB", "down MB", "up ms", "down ms", "e2e ms", "e2e/copy"
        );
        for t in &transfers {
            println!(
                "{:>4} {:>8} {:<9} {:>10.3} {:>10.3} {} {} {} {:>8.2}",
                t.n,
                t.batch,
                t.op,
                t.upload_bytes as f64 / 1e6,
                t.readback_bytes as f64 / 1e6,
                ms(t.upload_s, 10),
                ms(t.readback_s, 10),
                ms(t.end_to_end_s, 10),
                t.ratio()
            );
        }
    }
    let profiled: Vec<&Sample> = (rows.iter().flatten())
        .filter(|s| s.kernel_s.is_some())
        .collect();
    if !profiled.is_empty() {
        println!();
        println!("GPU time inside the kernels (timestamp queries, median of {PROFILED_CALLS} more calls), device-resident:");
        println!("wall = the median above; wall / kernels above 1 is submission, synchronisation and host time");
        println!(
            "{:>4} {:>8} {:<9} {:>10} {:>10} {:>12}  per kernel, ms",
            "n", "batch", "op", "wall ms", "kernels ms", "wall/kernels"
        );
        for s in profiled {
            let k = s.kernel_s.unwrap_or(0.0);
            let each: Vec<String> = (s.kernels.iter())
                .map(|(name, t)| format!("{name} {}", ms(*t, 0)))
                .collect();
            println!(
                "{:>4} {:>8} {:<9} {} {} {:>12.2}  {}",
                s.n,
                s.batch,
                s.op,
                ms(s.median_s, 10),
                ms(k, 10),
                s.median_s / k.max(1e-12),
                each.join(" + ")
            );
        }
    }
    if let Some(name) = devices.gpu().map(GpuContext::adapter_name) {
        let lower = name.to_lowercase();
        if lower.contains("llvmpipe") || lower.contains("swiftshader") || lower.contains("lavapipe")
        {
            println!();
            println!("note: {name} is a software rasteriser on the CPU; its timings say nothing about GPU speed");
        }
    }

    if let Some(path) = &args.json {
        let mut out = Outputs::new();
        let all: Vec<Sample> = rows.into_iter().flatten().collect();
        out.bytes(path, to_json(&all, &transfers).as_bytes())?;
        out.commit()?;
        eprintln!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_accumulate_by_name_in_order_of_first_appearance() {
        let mut list: Vec<(&'static str, f64)> = Vec::new();
        *entry(&mut list, "b") += 1.0;
        *entry(&mut list, "a") += 2.0;
        *entry(&mut list, "b") += 3.0;
        assert_eq!(list, [("b", 4.0), ("a", 2.0)]);
    }

    #[test]
    fn per_kernel_times_are_a_json_object() {
        assert_eq!(kernels_json(&[]), "{}");
        assert_eq!(
            kernels_json(&[("hestenes_eigh", 0.5), ("eigh_refine", 0.25)]),
            "{\"hestenes_eigh\": 5e-1, \"eigh_refine\": 2.5e-1}"
        );
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }

    #[test]
    fn default_batches_shrink_with_n_within_bounds() {
        assert_eq!(default_batch(Engine::Cpu, 8), 4096);
        assert_eq!(default_batch(Engine::Cpu, 64), 64);
        assert_eq!(default_batch(Engine::Cpu, 1), 65536);
    }

    #[test]
    fn transfers_count_what_the_host_api_moves() {
        // n = 3, B = 2: A is 18 words; λ 6, V 18, status 2.
        assert_eq!(transfer_words("eigh", 3, 2), (vec![18], vec![6, 18, 2]));
        assert_eq!(transfer_words("eigvalsh", 3, 2), (vec![18], vec![6, 2]));
        assert_eq!(
            transfer_words("vjp", 3, 2),
            (vec![6, 18, 2, 6, 18], vec![18])
        );
    }

    #[test]
    fn milliseconds_keep_four_significant_digits() {
        assert_eq!(ms(0.0012346, 8), "   1.235");
        assert_eq!(ms(0.00012346, 8), "  0.1235");
        assert_eq!(ms(1.5, 8), "    1500");
        assert_eq!(ms(0.0225, 8), "   22.50");
    }

    #[test]
    fn fewer_repetitions_for_slow_calls() {
        assert_eq!(reps_after(0.01), 10);
        assert_eq!(reps_after(0.5), 5);
        assert_eq!(reps_after(2.0), 3);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
    }
}
