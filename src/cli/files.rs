//! The file commands: `eigh`, `vjp`, `jvp` and `spectral`. Each reads and checks every input
//! first, then picks the device, computes, and writes all outputs in one [`Outputs`] transaction.

use super::args::{DegeneracyArg, EighArgs, JvpArgs, SpectralArgs, VjpArgs};
use super::device::{warn_status, Devices, Engine};
use super::error::{fail, CliError, CliResult};
use super::hostbuf::HostBuf;
use super::npy::{self, with_slice, Dtype, Floats, Matrices, Outputs};
use super::progress;
use eigrad::{cpu, Degeneracy, EighOptions, Scalar, Status, Vectors};
use std::path::{Path, PathBuf};

/// Gives each matrix of an ok status whose outputs a narrower `--output-dtype` cannot hold (a
/// finite value that becomes infinite in `dtype`, such as an eigenvalue of 1e5 in f16)
/// [`Status::OutOfDomain`] and NaN in every output, instead of ±inf written with status ok.
/// `outputs` are each matrix's `(data, values per matrix)`.
fn guard_dtype(dtype: Dtype, status: &mut [Status], outputs: &mut [(&mut Floats, usize)]) {
    // Only a narrowing can lose a value (f64 to f32 or f16, f32 to f16).
    let narrows = |data: &Floats| {
        matches!(
            (data, dtype),
            (Floats::F64(_), Dtype::F32 | Dtype::F16) | (Floats::F32(_), Dtype::F16)
        )
    };
    let mut lost = vec![false; status.len()];
    for (data, per) in outputs.iter().filter(|(d, _)| narrows(d)) {
        with_slice!(&**data, d => mark_overflow(d, *per, dtype, &mut lost));
    }
    for ((s, &l), b) in status.iter_mut().zip(&lost).zip(0..) {
        if l && s.is_ok() {
            *s = Status::OutOfDomain;
            for (data, per) in outputs.iter_mut() {
                let m = b * *per..(b + 1) * *per;
                with_slice!(&mut **data, d => d[m].fill(Scalar::from_f64(f64::NAN)));
            }
        }
    }
}

/// Marks in `lost` each matrix (`per` values of `data`) with a finite value that `dtype`
/// cannot hold.
fn mark_overflow<S: Scalar>(data: &[S], per: usize, dtype: Dtype, lost: &mut [bool]) {
    let beyond = |x: f64| match dtype {
        Dtype::F16 => half::f16::from_f64(x).is_infinite(),
        Dtype::F32 => (x as f32).is_infinite(),
        Dtype::F64 => false,
    };
    for (m, l) in data.chunks(per.max(1)).zip(lost.iter_mut()) {
        *l = *l
            || m.iter()
                .any(|x| x.to_f64().is_finite() && beyond(x.to_f64()));
    }
}

/// The Lorentzian broadening used when `--degeneracy lorentzian` comes without
/// `--degeneracy-tol` (in units of eigenvalue squared, as in Liao et al. 2019).
pub const DEFAULT_LORENTZIAN_EPS: f64 = 1e-12;

/// The degeneracy policy from `--degeneracy` and `--degeneracy-tol`, checked.
pub fn degeneracy(kind: DegeneracyArg, tol: Option<f64>) -> CliResult<Degeneracy> {
    let policy = match (kind, tol) {
        (DegeneracyArg::Mask, rel_tol) => Degeneracy::Mask { rel_tol },
        (DegeneracyArg::Lorentzian, eps) => Degeneracy::Lorentzian {
            eps: eps.unwrap_or(DEFAULT_LORENTZIAN_EPS),
        },
        (DegeneracyArg::Propagate, None) => Degeneracy::Propagate,
        (DegeneracyArg::Propagate, Some(_)) => {
            fail!("--degeneracy-tol has no meaning with --degeneracy propagate")
        }
    };
    policy
        .validate()
        .map_err(|e| CliError(format!("--degeneracy-tol: {e}")))?;
    Ok(policy)
}

/// Checks an `--out-dir` and the outputs `names` in it before any work: an existing path that
/// is not a directory, or an output that is, is an error now rather than after the computation.
fn check_out_dir(dir: &Path, names: &[&str]) -> CliResult<()> {
    if dir.exists() && !dir.is_dir() {
        fail!("--out-dir {} is not a directory", dir.display());
    }
    let paths: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
    npy::check_outputs(&paths.iter().map(PathBuf::as_path).collect::<Vec<_>>())
}

/// With `--values-only`, a warning when the output directory still holds an
/// `eigenvectors.npy` (from an earlier run: this one wrote none).
fn warn_stale_vectors(args: &EighArgs) {
    let stale = args.out_dir.join("eigenvectors.npy");
    if args.values_only && stale.exists() {
        eprintln!(
            "warning: {} is from an earlier run (--values-only writes no eigenvectors)",
            stale.display()
        );
    }
}

/// `eigrad eigh`: writes `eigenvalues.npy` (..., n), `eigenvectors.npy` (..., n, n) unless
/// `--values-only`, and `status.npy` (...) int32 into `--out-dir`.
pub fn eigh(args: &EighArgs) -> CliResult<()> {
    let a = npy::read_matrices(&args.input)?;
    let mut names = vec!["eigenvalues.npy", "status.npy"];
    if !args.values_only {
        names.push("eigenvectors.npy");
    }
    check_out_dir(&args.out_dir, &names)?;
    let devices = Devices::open(args.device, &[a.n])?;
    let engine = devices.engine(a.n);
    let opts = EighOptions {
        symmetry: args.symmetry.into(),
        ..EighOptions::default()
    };
    let vectors = if args.values_only {
        Vectors::No
    } else {
        Vectors::Yes
    };
    if let Engine::Cpu = engine {
        return eigh_cpu(args, a, &opts, vectors);
    }
    let pb = progress::spinner(format!("eigh of {} matrices of size {}", a.batch(), a.n));
    let eig = engine.eigh(&a.data, a.n, &opts, vectors)?;
    pb.finish_and_clear();
    let dtype = args.output_dtype.unwrap_or(engine.native_dtype());
    let (mut values, mut vectors) = (eig.eigenvalues(), eig.eigenvectors());
    let mut status = eig.status().to_vec();
    let mut outputs = vec![(&mut values, a.n)];
    outputs.extend(vectors.as_mut().map(|v| (v, a.n * a.n)));
    guard_dtype(dtype, &mut status, &mut outputs);
    let codes: Vec<i32> = status.iter().map(|s| s.code() as i32).collect();
    let mut out = Outputs::new();
    out.ensure_dir(&args.out_dir)?;
    out.floats(
        &args.out_dir.join("eigenvalues.npy"),
        &a.vector_shape(),
        &values,
        dtype,
    )?;
    if let Some(v) = &vectors {
        out.floats(&args.out_dir.join("eigenvectors.npy"), &a.shape(), v, dtype)?;
    }
    out.int32(&args.out_dir.join("status.npy"), &a.lead, &codes)?;
    out.commit()?;
    warn_stale_vectors(args);
    warn_status(&status);
    Ok(())
}

/// The CPU side of `eigrad eigh`: the fast solver ([`cpu::tridiagonal`], Householder
/// tridiagonalisation and implicit QL; the Jacobi reference stays the oracle of `check`, `demo`
/// and the derivative commands). f64 input with eigenvectors is decomposed in place, so the
/// eigenvectors take over the input's buffer and are written from it.
fn eigh_cpu(args: &EighArgs, a: Matrices, opts: &EighOptions, vectors: Vectors) -> CliResult<()> {
    let (n, vector_shape, shape) = (a.n, a.vector_shape(), a.shape());
    let pb = progress::spinner(format!("eigh of {} matrices of size {n}", a.batch()));
    let (values, eigenvectors, mut status) = match (a.data, vectors) {
        (Floats::F64(mut m), Vectors::Yes) => {
            let (values, status) = cpu::tridiagonal_eigh_in_place(&mut m, n, opts)?;
            (values, Some(m), status)
        }
        (data, vectors) => {
            let e = with_slice!(&data, s => cpu::tridiagonal(s, n, opts, vectors))?;
            (e.eigenvalues, e.eigenvectors.map(HostBuf::from), e.status)
        }
    };
    pb.finish_and_clear();
    let dtype = args.output_dtype.unwrap_or(Dtype::F64);
    let mut values = Floats::F64(values.into());
    let mut eigenvectors = eigenvectors.map(Floats::F64);
    let mut outputs = vec![(&mut values, n)];
    outputs.extend(eigenvectors.as_mut().map(|v| (v, n * n)));
    guard_dtype(dtype, &mut status, &mut outputs);
    let codes: Vec<i32> = status.iter().map(|s| s.code() as i32).collect();
    let mut out = Outputs::new();
    out.ensure_dir(&args.out_dir)?;
    out.floats(
        &args.out_dir.join("eigenvalues.npy"),
        &vector_shape,
        &values,
        dtype,
    )?;
    if let Some(v) = &eigenvectors {
        out.floats(&args.out_dir.join("eigenvectors.npy"), &shape, v, dtype)?;
    }
    out.int32(
        &args.out_dir.join("status.npy"),
        &shape[..shape.len() - 2],
        &codes,
    )?;
    out.commit()?;
    warn_stale_vectors(args);
    warn_status(&status);
    Ok(())
}

/// `eigrad vjp`: recomputes the forward on the device and writes `Ā` (..., n, n).
pub fn vjp(args: &VjpArgs) -> CliResult<()> {
    let a = npy::read_matrices(&args.input)?;
    npy::check_outputs(&[&args.output])?;
    let shown = args.input.display();
    let gw = match &args.grad_eigenvalues {
        Some(p) => Some(npy::read_shaped(
            p,
            &a.vector_shape(),
            "--grad-eigenvalues",
            &format!("the shape of the eigenvalues of {shown}"),
        )?),
        None => None,
    };
    let gv = match &args.grad_eigenvectors {
        Some(p) => Some(npy::read_shaped(
            p,
            &a.shape(),
            "--grad-eigenvectors",
            &format!("the shape of {shown}"),
        )?),
        None => None,
    };
    if gw.is_none() && gv.is_none() {
        fail!("vjp needs --grad-eigenvalues, --grad-eigenvectors or both");
    }
    let policy = degeneracy(args.degeneracy, args.degeneracy_tol)?;
    let devices = Devices::open(args.device, &[a.n])?;
    let engine = devices.engine(a.n);
    let opts = EighOptions {
        symmetry: args.symmetry.into(),
        ..EighOptions::default()
    };
    let pb = progress::spinner(format!(
        "eigh + VJP of {} matrices of size {}",
        a.batch(),
        a.n
    ));
    let eig = engine.eigh(&a.data, a.n, &opts, Vectors::Yes)?;
    let mut ga = engine.vjp(&eig, gw.as_ref(), gv.as_ref(), policy)?;
    pb.finish_and_clear();
    let dtype = args.output_dtype.unwrap_or(engine.native_dtype());
    let mut status = eig.status().to_vec();
    guard_dtype(dtype, &mut status, &mut [(&mut ga, a.n * a.n)]);
    let mut out = Outputs::new();
    out.floats(&args.output, &a.shape(), &ga, dtype)?;
    out.commit()?;
    warn_status(&status);
    Ok(())
}

/// `eigrad jvp`: writes `eigenvalues_dot.npy` (..., n) and `eigenvectors_dot.npy` (..., n, n).
pub fn jvp(args: &JvpArgs) -> CliResult<()> {
    let a = npy::read_matrices(&args.input)?;
    check_out_dir(
        &args.out_dir,
        &["eigenvalues_dot.npy", "eigenvectors_dot.npy"],
    )?;
    let tangent = npy::read_shaped(
        &args.tangent,
        &a.shape(),
        "--tangent",
        &format!("the shape of {}", args.input.display()),
    )?;
    let policy = degeneracy(args.degeneracy, args.degeneracy_tol)?;
    let devices = Devices::open(args.device, &[a.n])?;
    let engine = devices.engine(a.n);
    let opts = EighOptions {
        symmetry: args.symmetry.into(),
        ..EighOptions::default()
    };
    let pb = progress::spinner(format!(
        "eigh + JVP of {} matrices of size {}",
        a.batch(),
        a.n
    ));
    let eig = engine.eigh(&a.data, a.n, &opts, Vectors::Yes)?;
    let (mut values_dot, mut vectors_dot) = engine.jvp(&eig, &tangent, policy)?;
    pb.finish_and_clear();
    let dtype = args.output_dtype.unwrap_or(engine.native_dtype());
    let mut status = eig.status().to_vec();
    let n = a.n;
    guard_dtype(
        dtype,
        &mut status,
        &mut [(&mut values_dot, n), (&mut vectors_dot, n * n)],
    );
    let mut out = Outputs::new();
    out.ensure_dir(&args.out_dir)?;
    out.floats(
        &args.out_dir.join("eigenvalues_dot.npy"),
        &a.vector_shape(),
        &values_dot,
        dtype,
    )?;
    out.floats(
        &args.out_dir.join("eigenvectors_dot.npy"),
        &a.shape(),
        &vectors_dot,
        dtype,
    )?;
    out.commit()?;
    warn_status(&status);
    Ok(())
}

/// `eigrad spectral`: writes `f(A)` (..., n, n) and, with `--grad`/`--grad-output`, its VJP.
pub fn spectral(args: &SpectralArgs) -> CliResult<()> {
    let a = npy::read_matrices(&args.input)?;
    let grad = match (&args.grad, &args.grad_output) {
        (Some(g), Some(_)) => Some(npy::read_shaped(
            g,
            &a.shape(),
            "--grad",
            &format!("the shape of {}", args.input.display()),
        )?),
        (None, None) => None,
        _ => fail!("--grad and --grad-output go together: give both or neither"),
    };
    let mut dests = vec![args.output.as_path()];
    dests.extend(args.grad_output.as_deref());
    npy::check_outputs(&dests)?;
    let devices = Devices::open(args.device, &[a.n])?;
    let engine = devices.engine(a.n);
    let opts = EighOptions {
        symmetry: args.symmetry.into(),
        ..EighOptions::default()
    };
    let pb = progress::spinner(format!(
        "spectral function of {} matrices of size {}",
        a.batch(),
        a.n
    ));
    let spec = engine.spectral(&a.data, a.n, args.function, &opts)?;
    let mut ga = match &grad {
        Some(g) => Some(engine.spectral_vjp(&spec, g)?),
        None => None,
    };
    pb.finish_and_clear();
    let dtype = args.output_dtype.unwrap_or(engine.native_dtype());
    let mut values = spec.values();
    let mut status = spec.status().to_vec();
    let nn = a.n * a.n;
    let mut outputs = vec![(&mut values, nn)];
    outputs.extend(ga.as_mut().map(|g| (g, nn)));
    guard_dtype(dtype, &mut status, &mut outputs);
    let mut out = Outputs::new();
    out.floats(&args.output, &a.shape(), &values, dtype)?;
    if let (Some(ga), Some(path)) = (&ga, &args.grad_output) {
        out.floats(path, &a.shape(), ga, dtype)?;
    }
    out.commit()?;
    warn_status(&status);
    Ok(())
}
