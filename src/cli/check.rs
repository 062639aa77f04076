//! `eigrad check`: per matrix size, the device's f32 results against the f64 CPU reference, with
//! pass/fail against the f32 tolerances of [`Tolerances`]; exit 1 if any size fails.
//!
//! The forward check mixes four families (random, repeated, clustered and graded spectra); the
//! VJP check uses well separated spectra, where the derivative is well conditioned. On the CPU
//! device the CPU path is checked with f32 input and f32 outputs against the f64 reference.

use super::args::{unique_sizes, CheckArgs};
use super::demo::WORK_COPIES;
use super::device::{Devices, Eig, Engine};
use super::error::CliResult;
use super::memory;
use super::metrics::{self, Forward, Tolerances};
use super::npy::Floats;
use super::progress;
use eigrad::gpu::EigvalshKernel;
use eigrad::samples::{self, Rng};
use eigrad::{cpu, Degeneracy, EighOptions, Vectors};
use std::process::ExitCode;

/// The matrices of the forward check: the families of [`samples`] in turn.
pub fn mixed_matrices(rng: &mut Rng, n: usize, batch: usize) -> Vec<f64> {
    let mut a = Vec::with_capacity(batch * n * n);
    for b in 0..batch {
        let m = match b % 4 {
            0 => samples::random_symmetric(rng, n, 1),
            1 => {
                let s = samples::repeated_spectrum(rng, n);
                samples::with_spectrum(rng, &s)
            }
            2 => {
                let s = samples::clustered_spectrum(rng, n, 1e-3);
                samples::with_spectrum(rng, &s)
            }
            _ => samples::graded(rng, n, 1, 1.0),
        };
        a.extend(m);
    }
    a
}

/// Matrices with well separated spectra (gaps of at least 3/4 of the unit spacing, times a random
/// power-of-two scale), for the VJP check.
pub fn separated_matrices(rng: &mut Rng, n: usize, batch: usize) -> Vec<f64> {
    let mut a = Vec::with_capacity(batch * n * n);
    for _ in 0..batch {
        let scale = 2f64.powi((rng.uniform() * 8.0) as i32 - 4);
        let spectrum: Vec<f64> = (0..n)
            .map(|k| {
                scale * (k as f64 - (n as f64 - 1.0) / 2.0 + 0.25 * (rng.uniform() - 0.5) + 0.5)
            })
            .collect();
        a.extend(samples::with_spectrum(rng, &spectrum));
    }
    a
}

/// `count` standard normal values.
pub fn normals(rng: &mut Rng, count: usize) -> Vec<f64> {
    (0..count).map(|_| rng.normal()).collect()
}

/// The device's decomposition as its f32 outputs hold it, widened to f64 for the comparison.
pub fn as_f32_outputs(e: &Eig) -> eigrad::Eigh<f64> {
    Eig::F32(e.to_f32().into_owned()).to_f64().into_owned()
}

/// Flips eigenvectors of `reference` to the device's signs. The VJP with a V̄ cotangent depends
/// on each eigenvector's sign; the sign gauge (largest component positive) is ill-conditioned
/// where the two largest components are within rounding of each other, so there the device's
/// f32 vector and the f64 reference may legitimately disagree. The forward checks and tests
/// hold the gauge itself where it is well determined.
fn align_signs(reference: &mut eigrad::Eigh<f64>, device: &eigrad::Eigh<f64>) {
    let n = reference.n;
    let (Some(r), Some(d)) = (
        reference.eigenvectors.as_mut(),
        device.eigenvectors.as_ref(),
    ) else {
        return;
    };
    for (rm, dm) in r.chunks_exact_mut(n * n).zip(d.chunks_exact(n * n)) {
        for j in 0..n {
            let dot: f64 = (0..n).map(|i| rm[i * n + j] * dm[i * n + j]).sum();
            if dot < 0.0 {
                for i in 0..n {
                    rm[i * n + j] = -rm[i * n + j];
                }
            }
        }
    }
}

/// The results of one size.
struct Row {
    /// Forward measures.
    forward: Forward,
    /// Worst eigenvalue error of the eigenvalues-only path.
    values_only: f64,
    /// Worst VJP relative error.
    vjp: f64,
}

/// Runs the forward and VJP checks for one size on `engine`.
fn check_size(engine: Engine<'_>, n: usize, batch: usize, seed: u64) -> CliResult<Row> {
    let opts = EighOptions::default();
    let mut rng = Rng::new(seed.wrapping_mul(0x100_0000_01B3).wrapping_add(n as u64));
    let nn = n * n;

    // Forward: the device gets f32 matrices; the reference decomposes exactly those in f64.
    let a = Floats::rounded_f32(&mixed_matrices(&mut rng, n, batch));
    let a_exact = a.to_f64();
    let reference = cpu::jacobi_eigh(&a_exact, n, &opts)?;
    let dev = engine.eigh(&a, n, &opts, Vectors::Yes)?;
    let forward = metrics::forward(&a_exact, &reference, &as_f32_outputs(&dev));
    // The eigenvalues-only path (on the GPU possibly a kernel of its own) of the same matrices.
    let dev = engine.eigh(&a, n, &opts, Vectors::No)?;
    let values_only = metrics::eigenvalues(&reference, &as_f32_outputs(&dev));

    // VJP on well separated spectra, with random f32 cotangents for both outputs.
    let s = Floats::rounded_f32(&separated_matrices(&mut rng, n, batch));
    let gw = Floats::rounded_f32(&normals(&mut rng, batch * n));
    let gv = Floats::rounded_f32(&normals(&mut rng, batch * nn));
    let mut reference = cpu::jacobi_eigh(&s.to_f64(), n, &opts)?;
    let dev = engine.eigh(&s, n, &opts, Vectors::Yes)?;
    align_signs(&mut reference, &as_f32_outputs(&dev));
    let expected = cpu::eigh_vjp(
        &reference,
        Some(&gw.to_f64()),
        Some(&gv.to_f64()),
        Degeneracy::default(),
    )?;
    let got = engine.vjp(&dev, Some(&gw), Some(&gv), Degeneracy::default())?;
    let got: Vec<f64> = got.to_f32().iter().map(|&x| x as f64).collect();
    let vjp = metrics::relative(&got, &expected, nn);
    Ok(Row {
        forward,
        values_only,
        vjp,
    })
}

/// The names of the measures of `row` that exceed their tolerance.
fn failures(row: &Row, tol: &Tolerances) -> Vec<&'static str> {
    let f = &row.forward;
    let mut out = Vec::new();
    if f.status_mismatches > 0 {
        out.push("status");
    }
    if !metrics::within(f.eigenvalue, tol.eigenvalue) {
        out.push("eigenvalues");
    }
    if !metrics::within(row.values_only, tol.eigenvalue) {
        out.push("eigenvalues only");
    }
    if !metrics::within(f.residual, tol.residual) {
        out.push("residual");
    }
    if !metrics::within(f.orthogonality, tol.orthogonality) {
        out.push("orthogonality");
    }
    if !metrics::within(row.vjp, tol.vjp) {
        out.push("vjp");
    }
    out
}

/// The GPU kernels that ran at size `n`: the eigendecomposition kernel, `+tri` when
/// eigenvalues only ran the tridiagonal kernel; `-` on the CPU.
fn kernel_label(engine: Engine<'_>, n: usize) -> String {
    match engine {
        Engine::Cpu => "-".into(),
        Engine::Gpu(ctx) => {
            let forward = ctx.forward_kernel_for(n).name();
            if ctx.eigvalsh_kernel_for(n) == EigvalshKernel::Tridiagonal {
                format!("{forward}+tri")
            } else {
                forward.into()
            }
        }
    }
}

/// `eigrad check`.
pub fn check(args: &CheckArgs) -> CliResult<ExitCode> {
    let sizes = unique_sizes(&args.n);
    for &n in &sizes {
        let what = format!("--batch {} with n = {n}", args.batch);
        memory::check_fits(&what, n, args.batch, WORK_COPIES)?;
    }
    let devices = Devices::open(args.device, &sizes)?;
    println!(
        "eigrad check: f32 results against the f64 CPU reference ({} matrices per size and check, seed {})",
        args.batch, args.seed
    );
    println!("  eig.err  = max|Δλ|/‖A‖₂      ≤ 8·n·eps    (tol.eig)");
    println!("  val.err  = the same for the eigenvalues-only path");
    println!("  residual = ‖AV − VΛ‖_F/‖A‖₂  ≤ 16·n·eps   (tol.vec)");
    println!("  orthog.  = ‖VᵀV − I‖_F       ≤ 16·n·eps   (tol.vec)");
    println!("  vjp.err  = ‖ΔĀ‖_F/‖Ā‖_F      ≤ 1e-4 on well separated spectra; eps = f32::EPSILON");
    println!("  kernel   = the GPU eigendecomposition kernel (+tri: eigenvalues only by the tridiagonal kernel)");
    if sizes
        .iter()
        .any(|&n| matches!(devices.engine(n), Engine::Cpu))
    {
        println!("  cpu rows: the CPU path with f32 input and f32 outputs, checked against the f64 reference");
    }
    println!();
    println!(
        "{:>4}  {:<6} {:<22} {:>9} {:>9} {:>9}  {:>9} {:>9} {:>9}  {:>9}  result",
        "n",
        "device",
        "kernel",
        "eig.err",
        "val.err",
        "tol.eig",
        "residual",
        "orthog.",
        "tol.vec",
        "vjp.err"
    );
    let pb = progress::bar(sizes.len() as u64, "check");
    let mut failed = 0;
    for &n in &sizes {
        let engine = devices.engine(n);
        pb.set_message(format!("n = {n}"));
        let row = check_size(engine, n, args.batch, args.seed)?;
        let tol = Tolerances::f32(n);
        let bad = failures(&row, &tol);
        let result = if bad.is_empty() {
            "pass".to_string()
        } else {
            failed += 1;
            format!("FAIL ({})", bad.join(", "))
        };
        let f = &row.forward;
        pb.suspend(|| {
            println!(
                "{n:>4}  {:<6} {:<22} {:>9.2e} {:>9.2e} {:>9.2e}  {:>9.2e} {:>9.2e} {:>9.2e}  {:>9.2e}  {result}",
                engine.kind(),
                kernel_label(engine, n),
                f.eigenvalue,
                row.values_only,
                tol.eigenvalue,
                f.residual,
                f.orthogonality,
                tol.residual,
                row.vjp
            )
        });
        pb.inc(1);
    }
    pb.finish_and_clear();
    println!();
    if failed == 0 {
        println!("all {} sizes pass", sizes.len());
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{failed} of {} sizes FAIL", sizes.len());
        Ok(ExitCode::from(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_name_every_exceeded_measure_and_nan_fails() {
        let tol = Tolerances::f32(4);
        let good = Row {
            forward: Forward::default(),
            values_only: 0.0,
            vjp: 0.0,
        };
        assert!(failures(&good, &tol).is_empty());
        let bad = Row {
            forward: Forward {
                eigenvalue: f64::NAN,
                residual: 1.0,
                orthogonality: 0.0,
                status_mismatches: 1,
            },
            values_only: f64::NAN,
            vjp: 2e-4,
        };
        assert_eq!(
            failures(&bad, &tol),
            [
                "status",
                "eigenvalues",
                "eigenvalues only",
                "residual",
                "vjp"
            ]
        );
    }

    #[test]
    fn separated_spectra_have_gaps_of_at_least_three_quarters_of_the_scale() {
        let mut rng = Rng::new(0);
        let a = separated_matrices(&mut rng, 6, 4);
        let e = cpu::jacobi_eigvalsh(&a, 6, &EighOptions::default()).unwrap();
        for b in 0..4 {
            let w = e.values(b);
            let scale = w.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            for k in 1..6 {
                assert!(w[k] - w[k - 1] >= 0.7 * scale / 3.5, "{w:?}");
            }
        }
    }
}
