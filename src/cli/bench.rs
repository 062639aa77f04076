//! `eigrad bench`: throughput (matrices per second, median of several runs) of the forward
//! eigendecomposition, the eigenvalues-only path and the VJP, per matrix size, on the GPU and the
//! CPU; a table on stdout and optionally the same results as JSON (`--json FILE`).
//!
//! Every timing is end to end from host memory: on the GPU it includes upload and readback, the
//! only mode the GPU API offers for now (device-resident timings need a device-buffer API). The
//! columns and the JSON `mode` field say so.

use super::args::BenchArgs;
use super::device::{Devices, Engine};
use super::error::{fail, CliResult};
use super::npy::{Floats, Outputs};
use super::progress;
use eigrad::gpu::MAX_N;
use eigrad::samples::{self, Rng};
use eigrad::{Degeneracy, EighOptions, Vectors};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

/// The operations timed, in table order: (JSON name, column header).
const OPS: [(&str, &str); 3] = [
    ("eigh", "eigh e2e"),
    ("eigvalsh", "eigvalsh e2e"),
    ("vjp", "vjp e2e"),
];

/// One measurement.
struct Sample {
    /// `cpu` or `gpu`.
    device: &'static str,
    /// The GPU adapter's name, if on the GPU.
    adapter: Option<String>,
    /// Matrix size.
    n: usize,
    /// Matrices per call.
    batch: usize,
    /// One of the names in [`OPS`].
    op: &'static str,
    /// Timed repetitions.
    reps: usize,
    /// Median seconds per call.
    median_s: f64,
}

impl Sample {
    /// Matrices per second at the median.
    fn rate(&self) -> f64 {
        self.batch as f64 / self.median_s.max(1e-12)
    }
}

/// The default batch for a device and size: about 2^22/n² matrices on the GPU (1024..=2^20),
/// 2^18/n² on the CPU (64..=65536), so that each call does a comparable amount of work.
fn default_batch(engine: Engine<'_>, n: usize) -> usize {
    let (budget, lo, hi) = match engine {
        Engine::Gpu(_) => (1usize << 22, 1024, 1 << 20),
        Engine::Cpu => (1 << 18, 64, 1 << 16),
    };
    (budget / (n * n)).clamp(lo, hi)
}

/// Runs `f` once to warm up, then 5 times (3 when one run takes over a second); returns the
/// median seconds and the number of timed runs.
fn median_time(mut f: impl FnMut() -> CliResult<()>) -> CliResult<(f64, usize)> {
    let t = Instant::now();
    f()?;
    let reps = if t.elapsed().as_secs_f64() > 1.0 {
        3
    } else {
        5
    };
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok((times[reps / 2], reps))
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
fn to_json(samples: &[Sample]) -> String {
    let rows: Vec<String> = samples
        .iter()
        .map(|s| {
            format!(
                "    {{\"device\": {}, \"adapter\": {}, \"n\": {}, \"batch\": {}, \"op\": {}, \
                 \"mode\": \"end_to_end\", \"reps\": {}, \"median_seconds\": {:e}, \
                 \"matrices_per_second\": {:e}}}",
                json_str(s.device),
                s.adapter.as_deref().map_or("null".into(), json_str),
                s.n,
                s.batch,
                json_str(s.op),
                s.reps,
                s.median_s,
                s.rate()
            )
        })
        .collect();
    format!(
        "{{\n  \"tool\": \"eigrad bench\",\n  \"version\": {},\n  \"unit\": \"matrices_per_second\",\n  \
         \"mode_note\": \"end_to_end = from host memory, including upload and readback on the GPU\",\n  \
         \"results\": [\n{}\n  ]\n}}\n",
        json_str(env!("CARGO_PKG_VERSION")),
        rows.join(",\n")
    )
}

/// Times the three operations for one device and size.
fn bench_one(
    engine: Engine<'_>,
    n: usize,
    batch: usize,
    pb: &indicatif::ProgressBar,
) -> CliResult<Vec<Sample>> {
    let opts = EighOptions::default();
    let mut rng = Rng::new(7 + n as u64);
    let a = Floats::rounded_f32(&samples::random_symmetric(&mut rng, n, batch));
    let gw = Floats::rounded_f32(&(0..batch * n).map(|_| rng.normal()).collect::<Vec<_>>());
    let gv = Floats::rounded_f32(&(0..batch * n * n).map(|_| rng.normal()).collect::<Vec<_>>());
    let mut out = Vec::with_capacity(OPS.len());
    for (op, _) in OPS {
        pb.set_message(format!("{} n = {n} {op}", engine.kind()));
        let (median_s, reps) = match op {
            "eigh" => median_time(|| engine.eigh(&a, n, &opts, Vectors::Yes).map(drop))?,
            "eigvalsh" => median_time(|| engine.eigh(&a, n, &opts, Vectors::No).map(drop))?,
            _ => {
                let eig = engine.eigh(&a, n, &opts, Vectors::Yes)?;
                median_time(|| {
                    engine
                        .vjp(&eig, Some(&gw), Some(&gv), Degeneracy::default())
                        .map(drop)
                })?
            }
        };
        out.push(Sample {
            device: engine.kind(),
            adapter: match engine {
                Engine::Gpu(ctx) => Some(ctx.adapter_name().to_string()),
                Engine::Cpu => None,
            },
            n,
            batch,
            op,
            reps,
            median_s,
        });
        pb.inc(1);
    }
    Ok(out)
}

/// `eigrad bench`.
pub fn bench(args: &BenchArgs) -> CliResult<ExitCode> {
    if let Some(path) = &args.json {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if !dir.is_dir() {
            fail!(
                "--json {}: directory {} does not exist",
                path.display(),
                dir.display()
            );
        }
    }
    let devices = Devices::open(args.device, &args.n)?;
    let mut plan: Vec<(Engine<'_>, usize)> = Vec::new();
    if let Some(ctx) = devices.gpu() {
        plan.extend(
            args.n
                .iter()
                .filter(|&&n| n <= MAX_N)
                .map(|&n| (Engine::Gpu(ctx), n)),
        );
    }
    if devices.cpu_wanted() {
        plan.extend(args.n.iter().map(|&n| (Engine::Cpu, n)));
    }
    println!("eigrad bench: matrices per second (median of several runs)");
    println!("  e2e = end to end from host memory (on the GPU: upload, compute, read back); device-resident");
    println!("  timings are not available yet (the GPU API has no device-buffer entry points)");
    println!();
    println!(
        "{:<6} {:>4} {:>8}  {:>14} {:>14} {:>14}",
        "device", "n", "batch", OPS[0].1, OPS[1].1, OPS[2].1
    );
    let pb = progress::bar((plan.len() * OPS.len()) as u64, "bench");
    let mut samples = Vec::new();
    for (engine, n) in plan {
        let batch = args.batch.unwrap_or_else(|| default_batch(engine, n));
        let row = bench_one(engine, n, batch, &pb)?;
        pb.suspend(|| {
            println!(
                "{:<6} {n:>4} {batch:>8}  {:>14.3e} {:>14.3e} {:>14.3e}",
                engine.kind(),
                row[0].rate(),
                row[1].rate(),
                row[2].rate()
            )
        });
        samples.extend(row);
    }
    pb.finish_and_clear();
    if let Some(path) = &args.json {
        let mut out = Outputs::new();
        out.bytes(path, to_json(&samples).as_bytes())?;
        out.commit()?;
        eprintln!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
