//! `eigrad demo` (also plain `eigrad`): thousands of sample covariance matrices from random data,
//! eigendecomposition and VJP on the device, checked against the f64 CPU reference; prints what
//! ran where, the worst errors, and matrices per second on the device and on the CPU.

use super::args::DemoArgs;
use super::check::{as_f32_outputs, normals};
use super::device::{warn_status, Devices};
use super::error::CliResult;
use super::memory;
use super::metrics::{self, Tolerances};
use super::npy::Floats;
use super::progress;
use eigrad::samples::{self, Rng};
use eigrad::{cpu, Degeneracy, EighOptions, Vectors};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Runs `f` and returns its result and how long it took.
fn timed<T>(f: impl FnOnce() -> CliResult<T>) -> CliResult<(T, Duration)> {
    let t = Instant::now();
    let r = f()?;
    Ok((r, t.elapsed()))
}

/// Matrices per second.
fn rate(batch: usize, d: Duration) -> f64 {
    batch as f64 / d.as_secs_f64().max(1e-9)
}

/// `V̄` of the loss `tr(P G)` with `P` the projector onto the top two eigenvectors:
/// `V̄_j = 2 G v_j` for the two largest eigenvalues, 0 for the others (`G` symmetric).
fn projector_cotangent(n: usize, g: &[f64], vectors: &[f64]) -> Vec<f64> {
    let nn = n * n;
    let mut out = vec![0.0; vectors.len()];
    for ((o, g), v) in out.chunks_mut(nn).zip(g.chunks(nn)).zip(vectors.chunks(nn)) {
        for j in n.saturating_sub(2)..n {
            for i in 0..n {
                o[i * n + j] = 2.0 * (0..n).map(|k| g[i * n + k] * v[k * n + j]).sum::<f64>();
            }
        }
    }
    out
}

/// The smallest distance between two eigenvalues of a matrix of `eig`, relative to that
/// matrix's ‖A‖₂, over the batch (∞ for n = 1).
fn smallest_gap(eig: &eigrad::Eigh<f64>) -> f64 {
    (0..eig.batch)
        .map(|b| matrix_gap(eig.values(b)))
        .fold(f64::INFINITY, f64::min)
}

/// The smallest gap between consecutive eigenvalues `w` (ascending) relative to `max|λ|`
/// (infinite for n = 1).
fn matrix_gap(w: &[f64]) -> f64 {
    let norm = w
        .iter()
        .fold(0.0f64, |m, x| m.max(x.abs()))
        .max(f64::MIN_POSITIVE);
    w.windows(2)
        .map(|p| (p[1] - p[0]) / norm)
        .fold(f64::INFINITY, f64::min)
}

/// The VJP's bound for one matrix of size `n` whose relative gap is `gap`: the eigenvectors'
/// bound (16·n·eps, as `check`'s residual and orthogonality) over the gap, since a loss that
/// depends on the eigenvectors carries their rounding through 1/(λ_j − λ_i); never below
/// `check`'s bound on well separated spectra.
fn vjp_bound(n: usize, gap: f64, floor: f64) -> f64 {
    (16.0 * n as f64 * f32::EPSILON as f64 / gap).max(floor)
}

/// The f64 batch-sized arrays the demo and `check` hold at once, about (inputs, reference and
/// device results, cotangents, gradients): what [`memory::check_fits`] budgets.
pub const WORK_COPIES: u64 = 8;

/// `eigrad demo`.
pub fn demo(args: &DemoArgs) -> CliResult<ExitCode> {
    let (n, batch) = (args.n, args.batch);
    memory::check_fits(
        &format!("--batch {batch} with --n {n}"),
        n,
        batch,
        WORK_COPIES,
    )?;
    let nn = n * n;
    let observations = 4 * n;
    let devices = Devices::open(args.device, &[n])?;
    let engine = devices.engine(n);
    let opts = EighOptions::default();
    let policy = Degeneracy::default();
    println!(
        "eigrad demo: eigh + VJP of {batch} sample covariance matrices ({n}×{n}, {observations} observations each)"
    );
    let pb = progress::bar(4, "demo");

    pb.set_message("generating matrices");
    let mut rng = Rng::new(2024);
    let a = Floats::rounded_f32(&samples::covariances(&mut rng, n, batch, observations));
    let gw = Floats::rounded_f32(&normals(&mut rng, batch * n));
    // The VJP's loss is Σ w·λ + tr(P G), P the projector onto the top two eigenvectors: a basis-
    // invariant loss (a random V̄ would make the comparison depend on arbitrary bases).
    let g_sym = samples::random_symmetric(&mut rng, n, batch);
    pb.inc(1);

    // Warm up (pipeline creation, thread pools) on a few matrices so the timings below are of
    // the steady state.
    pb.set_message(format!("eigh + VJP on the {}", engine.kind()));
    let few = batch.min(64);
    let head = Floats::from(a.to_f32()[..few * nn].to_vec());
    let warm = engine.eigh(&head, n, &opts, Vectors::Yes)?;
    let head_gw = Floats::from(gw.to_f32()[..few * n].to_vec());
    engine.vjp(&warm, Some(&head_gw), None, policy)?;
    let (dev, t_dev_eigh) = timed(|| engine.eigh(&a, n, &opts, Vectors::Yes))?;
    let dev_vectors = as_f32_outputs(&dev).eigenvectors.unwrap_or_default();
    let gv = Floats::rounded_f32(&projector_cotangent(n, &g_sym, &dev_vectors));
    let (dev_vjp, t_dev_vjp) = timed(|| engine.vjp(&dev, Some(&gw), Some(&gv), policy))?;
    pb.inc(1);

    pb.set_message("f64 reference on the cpu");
    let a_exact = a.to_f64();
    let gw64 = gw.to_f64();
    let (reference, t_ref_eigh) = timed(|| Ok(cpu::jacobi_eigh(&a_exact, n, &opts)?))?;
    let gv64 = projector_cotangent(
        n,
        &g_sym,
        reference.eigenvectors.as_deref().unwrap_or_default(),
    );
    let (expected, t_ref_vjp) =
        timed(|| Ok(cpu::eigh_vjp(&reference, Some(&gw64), Some(&gv64), policy)?))?;
    pb.inc(1);

    pb.set_message("comparing");
    let fwd = metrics::forward(&a_exact, &reference, &as_f32_outputs(&dev));
    let got: Vec<f64> = dev_vjp.to_f32().iter().map(|&x| x as f64).collect();
    let vjp_errs = metrics::relative_each(&got, &expected, nn);
    pb.finish_and_clear();

    let tol = Tolerances::f32(n);
    let vjp_err = vjp_errs.iter().copied().fold(0.0, metrics::worst);
    // The worst ratio of a matrix's VJP error to its own bound (NaN when one is NaN).
    let vjp_ratio = vjp_errs
        .iter()
        .enumerate()
        .map(|(b, e)| e / vjp_bound(n, matrix_gap(reference.values(b)), tol.vjp))
        .fold(0.0, metrics::worst);
    let device = match engine.kind() {
        "cpu" => "cpu (f32 in/out)".to_string(),
        _ => engine.name(),
    };
    println!();
    println!(
        "  {:<26} {:>22} {:>22}",
        "matrices per second", device, "cpu f64 reference"
    );
    let rows = [
        ("eigh", t_dev_eigh, t_ref_eigh),
        ("VJP", t_dev_vjp, t_ref_vjp),
        ("eigh + VJP", t_dev_eigh + t_dev_vjp, t_ref_eigh + t_ref_vjp),
    ];
    for (what, d, r) in rows {
        println!(
            "  {what:<26} {:>22.3e} {:>22.3e}",
            rate(batch, d),
            rate(batch, r)
        );
    }
    println!();
    println!("  worst over {batch} matrices, device f32 outputs vs the f64 reference:");
    let verdict = |x: f64, t: f64| if metrics::within(x, t) { "ok" } else { "FAIL" };
    println!(
        "  eigenvalue error  max|Δλ|/‖A‖₂      {:>9.2e}  (tolerance {:.2e})  {}",
        fwd.eigenvalue,
        tol.eigenvalue,
        verdict(fwd.eigenvalue, tol.eigenvalue)
    );
    println!(
        "  residual          ‖AV − VΛ‖_F/‖A‖₂  {:>9.2e}  (tolerance {:.2e})  {}",
        fwd.residual,
        tol.residual,
        verdict(fwd.residual, tol.residual)
    );
    println!(
        "  orthogonality     ‖VᵀV − I‖_F       {:>9.2e}  (tolerance {:.2e})  {}",
        fwd.orthogonality,
        tol.orthogonality,
        verdict(fwd.orthogonality, tol.orthogonality)
    );
    println!(
        "  VJP error         ‖ΔĀ‖_F/‖Ā‖_F      {vjp_err:>9.2e}  (loss Σw·λ + tr(P₂G), P₂ onto the top two eigenvectors)"
    );
    println!(
        "                    its rounding grows like eps/gap (the batch's smallest gap |λ_i − λ_j|/‖A‖₂ is {:.2e}):",
        smallest_gap(&reference)
    );
    println!(
        "                    per matrix ≤ max({:.0e}, 16·n·eps/gap); worst error / bound {vjp_ratio:>9.2e}  {}",
        tol.vjp,
        verdict(vjp_ratio, 1.0)
    );
    warn_status(dev.status());
    if fwd.status_mismatches > 0 {
        println!(
            "  {} matrices have a different status on the device and the reference",
            fwd.status_mismatches
        );
    }
    println!();
    if tol.forward_ok(&fwd) && metrics::within(vjp_ratio, 1.0) {
        println!("result: pass");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("result: FAIL");
        Ok(ExitCode::from(1))
    }
}
