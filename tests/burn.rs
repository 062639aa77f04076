//! The burn integration (feature `burn`): forward outputs and autodiff gradients of
//! `eigrad::burn::{eigh, eigvalsh, spectral}` against eigrad's own results (the f64 CPU
//! reference, and on the GPU eigrad's kernels called directly) and against f64 central finite
//! differences, on burn's Flex CPU backend (f64 and f32 tensors) and on its wgpu backend sharing
//! eigrad's kernels. The GPU part skips without an adapter unless `EIGRAD_REQUIRE_GPU=1`.
#![cfg(feature = "burn")]

mod gpu_support;

use burn::tensor::{DType, Device, Int, Tensor, TensorCreationOptions, TensorData};
use eigrad::burn::Options;
use eigrad::samples::{self, Rng};
use eigrad::spectral::SpectralFn;
use eigrad::{cpu, Degeneracy, EighOptions, Status, Vectors};
use gpu_support::fro;
use std::sync::OnceLock;

const FUNCTIONS: [SpectralFn; 6] = [
    SpectralFn::Sqrt,
    SpectralFn::Log,
    SpectralFn::Exp,
    SpectralFn::Inv,
    SpectralFn::Pow(2.5),
    SpectralFn::Pow(-0.5),
];

/// Positive definite matrices with well separated eigenvalues in [0.5, 2.5] (gaps ≥ 0.35·2/n,
/// so `‖A‖/gap ≤ 4n` bounds the amplification of rounding in the eigenvector rule), rounded
/// to f32 so every backend sees the same matrices.
fn separated_spd(n: usize, batch: usize, seed: u64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    let step = 2.0 / n as f64;
    let mut out = Vec::with_capacity(batch * n * n);
    for _ in 0..batch {
        let s: Vec<f64> = (0..n)
            .map(|k| 0.5 + step * k as f64 + 0.3 * step * rng.uniform())
            .collect();
        out.extend(samples::with_spectrum(&mut rng, &s));
    }
    gpu_support::round_f32(&out)
}

fn normals(len: usize, seed: u64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    (0..len).map(|_| rng.normal() as f32 as f64).collect()
}

fn tensor<const D: usize>(
    data: &[f64],
    shape: [usize; D],
    device: &Device,
    dtype: DType,
) -> Tensor<D> {
    let options = TensorCreationOptions::from(device).with_dtype(dtype);
    Tensor::from_data(
        TensorData::new(data.to_vec(), shape).convert_dtype(dtype),
        options,
    )
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data().try_into_vec_as::<f64>().unwrap()
}

fn codes(t: Tensor<1, Int>) -> Vec<i64> {
    t.into_data().try_into_vec_as::<i64>().unwrap()
}

/// `max |x − y| ≤ tol`, printing actual, expected, difference and tolerance on failure.
#[track_caller]
fn assert_close(what: &str, actual: &[f64], expected: &[f64], tol: f64) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths differ");
    let (i, diff) = actual
        .iter()
        .zip(expected)
        .map(|(a, e)| (a - e).abs())
        .enumerate()
        .fold(
            (0, 0.0f64),
            |m, (i, d)| if d > m.1 || d.is_nan() { (i, d) } else { m },
        );
    assert!(
        diff <= tol,
        "{what}: actual {} expected {} at {i}: difference {diff:e} > tolerance {tol:e}",
        actual[i],
        expected[i]
    );
}

/// The f64 losses whose gradients are checked, evaluated on the CPU reference.
///
/// - eigh: `Σ w∘λ + Σ G∘V∘V` (each eigenvector enters squared: invariant to its sign, and
///   with separated eigenvalues to every choice the decomposition leaves open);
/// - eigvalsh: `Σ w∘λ`;
/// - spectral: `Σ G∘f(A)` (= `tr(f(A) Gᵀ)` per matrix).
#[derive(Clone, Copy, Debug)]
enum Loss {
    Eigh,
    Eigvalsh,
    Spectral(SpectralFn),
}

impl Loss {
    /// The loss of the batch `a` with weights `w` (`[B][n]`) and `g` (`[B][n][n]`).
    fn value(self, a: &[f64], n: usize, w: &[f64], g: &[f64]) -> f64 {
        let opts = EighOptions::default();
        match self {
            Loss::Eigh | Loss::Eigvalsh => {
                let eig = cpu::jacobi_eigh(a, n, &opts).unwrap();
                let mut l: f64 = eig.eigenvalues.iter().zip(w).map(|(x, y)| x * y).sum();
                if let Loss::Eigh = self {
                    let v = eig.eigenvectors.unwrap();
                    l += v.iter().zip(g).map(|(x, y)| x * x * y).sum::<f64>();
                }
                l
            }
            Loss::Spectral(f) => {
                let s = cpu::spectral(a, n, f, &opts).unwrap();
                s.values.iter().zip(g).map(|(x, y)| x * y).sum()
            }
        }
    }

    /// eigrad's own f64 gradient of the loss (the VJP rules of the CPU reference).
    fn reference_grad(self, a: &[f64], n: usize, w: &[f64], g: &[f64]) -> Vec<f64> {
        let opts = EighOptions::default();
        match self {
            Loss::Eigh => {
                let eig = cpu::jacobi_eigh(a, n, &opts).unwrap();
                let v = eig.eigenvectors.as_ref().unwrap();
                let gv: Vec<f64> = v.iter().zip(g).map(|(x, y)| 2.0 * x * y).collect();
                cpu::eigh_vjp(&eig, Some(w), Some(&gv), Degeneracy::default()).unwrap()
            }
            Loss::Eigvalsh => {
                let eig = cpu::jacobi_eigh(a, n, &opts).unwrap();
                cpu::eigvalsh_vjp(&eig, w).unwrap()
            }
            Loss::Spectral(f) => {
                let s = cpu::spectral(a, n, f, &opts).unwrap();
                cpu::spectral_vjp(&s, g).unwrap()
            }
        }
    }

    /// The same loss on burn tensors, through `eigrad::burn`.
    fn burn(self, a: Tensor<3>, w: Tensor<2>, g: Tensor<3>) -> Tensor<1> {
        match self {
            Loss::Eigh => {
                let (values, vectors) = eigrad::burn::eigh(a);
                (values * w).sum() + (vectors.clone() * vectors * g).sum()
            }
            Loss::Eigvalsh => (eigrad::burn::eigvalsh(a) * w).sum(),
            Loss::Spectral(f) => (eigrad::burn::spectral(a, f) * g).sum(),
        }
    }
}

/// The gradient of `loss` at `a` through burn's autodiff on `device`, in f64.
fn burn_grad(
    loss: Loss,
    a: &[f64],
    n: usize,
    w: &[f64],
    g: &[f64],
    device: &Device,
    dtype: DType,
) -> Vec<f64> {
    let batch = a.len() / (n * n);
    let at = tensor(a, [batch, n, n], device, dtype).require_grad();
    let wt = tensor(w, [batch, n], device, dtype);
    let gt = tensor(g, [batch, n, n], device, dtype);
    let grads = loss.burn(at.clone(), wt, gt).backward();
    values(at.grad(&grads).expect("the input requires grad"))
}

/// `⟨Ā, D⟩` against the f64 central difference of the loss along random symmetric directions
/// `D`; `tol` is relative to `‖Ā‖·‖D‖`. With `h = 1e-5` the truncation error is `O(h²)` ≈ 1e-10
/// and the rounding error `O(eps/h)` ≈ 1e-11 of the loss scale.
#[track_caller]
fn check_finite_differences(
    loss: Loss,
    a: &[f64],
    n: usize,
    w: &[f64],
    g: &[f64],
    grad: &[f64],
    tol: f64,
) {
    let h = 1e-5;
    let mut rng = Rng::new(7);
    for _ in 0..3 {
        let mut d = vec![0.0; a.len()];
        for (m, chunk) in d.chunks_mut(n * n).enumerate() {
            let _ = m;
            for i in 0..n {
                for j in 0..=i {
                    let x = rng.normal();
                    chunk[i * n + j] = x;
                    chunk[j * n + i] = x;
                }
            }
        }
        let plus: Vec<f64> = a.iter().zip(&d).map(|(x, y)| x + h * y).collect();
        let minus: Vec<f64> = a.iter().zip(&d).map(|(x, y)| x - h * y).collect();
        let fd = (loss.value(&plus, n, w, g) - loss.value(&minus, n, w, g)) / (2.0 * h);
        let ad: f64 = grad.iter().zip(&d).map(|(x, y)| x * y).sum();
        let scale = fro(grad.iter().copied()) * fro(d.iter().copied());
        assert!(
            (fd - ad).abs() <= tol * scale,
            "{loss:?}: autodiff ⟨Ā, D⟩ = {ad}, finite difference {fd}: difference {:e} > tolerance {:e}",
            (fd - ad).abs(),
            tol * scale
        );
    }
}

fn all_losses() -> Vec<Loss> {
    let mut l = vec![Loss::Eigh, Loss::Eigvalsh];
    l.extend(FUNCTIONS.map(Loss::Spectral));
    l
}

/// Every loss on `device`: the autodiff gradient against eigrad's VJP (`tol_ref`, relative to
/// `‖Ā‖`) and against finite differences (`tol_fd`).
fn check_gradients(device: &Device, dtype: DType, tol_ref: f64, tol_fd: f64) {
    for n in [1usize, 3, 6] {
        let batch = 3;
        let a = separated_spd(n, batch, 40 + n as u64);
        let w = normals(batch * n, 1);
        let g = normals(batch * n * n, 2);
        for loss in all_losses() {
            let grad = burn_grad(loss, &a, n, &w, &g, device, dtype);
            let reference = loss.reference_grad(&a, n, &w, &g);
            let scale = fro(reference.iter().copied()).max(1.0);
            assert_close(
                &format!("{loss:?} gradient, n = {n}, {dtype:?}"),
                &grad,
                &reference,
                tol_ref * scale,
            );
            check_finite_differences(loss, &a, n, &w, &g, &grad, tol_fd);
        }
    }
}

fn flex() -> Device {
    Device::flex().autodiff()
}

/// Runs `f` and returns how many eigrad calls it made on the GPU and on the host.
fn counted(f: impl FnOnce()) -> eigrad::burn::PathCounts {
    let before = eigrad::burn::path_counts();
    f();
    let after = eigrad::burn::path_counts();
    eigrad::burn::PathCounts {
        gpu: after.gpu - before.gpu,
        host: after.host - before.host,
    }
}

#[test]
fn flex_f64_gradients_match_eigrad_and_finite_differences() {
    // All f64 end to end (the host path computes with the f64 reference): only rounding of the
    // loss's own tensor ops separates burn's gradient from eigrad's.
    let calls = counted(|| check_gradients(&flex(), DType::F64, 1e-12, 1e-6));
    assert_eq!(calls.gpu, 0);
    assert!(calls.host > 0);
}

#[test]
fn flex_f32_gradients_match_eigrad_and_finite_differences() {
    // λ and V are saved as f32 tensors: the rules see them rounded (eps ≈ 6e-8), amplified by
    // at most ‖A‖/gap ≤ 4n ≈ 24 in the eigenvector rule, and the cotangents are f32 too.
    check_gradients(&flex(), DType::F32, 1e-4, 1e-4);
}

#[test]
fn flex_forward_outputs_equal_the_cpu_reference() {
    let (n, batch) = (5, 4);
    let a = separated_spd(n, batch, 3);
    for device in [Device::flex(), flex()] {
        let at = tensor(&a, [batch, n, n], &device, DType::F64);
        let (values_t, vectors_t, status) = eigrad::burn::eigh_with_status(at.clone());
        let eig = cpu::jacobi_eigh(&a, n, &EighOptions::default()).unwrap();
        assert_eq!(values(values_t), eig.eigenvalues);
        assert_eq!(values(vectors_t), eig.eigenvectors.unwrap());
        assert_eq!(codes(status), vec![0; batch]);
        let values_only = cpu::jacobi(&a, n, &EighOptions::default(), Vectors::No).unwrap();
        assert_eq!(
            values(eigrad::burn::eigvalsh(at.clone())),
            values_only.eigenvalues
        );
        for f in FUNCTIONS {
            let s = cpu::spectral(&a, n, f, &EighOptions::default()).unwrap();
            assert_eq!(
                values(eigrad::burn::spectral(at.clone(), f)),
                s.values,
                "{f:?}"
            );
        }
    }
}

/// A non-finite matrix and one outside the domain of `log` get NaN outputs and their status;
/// their neighbours are untouched.
fn check_status(device: &Device) {
    let n = 3;
    let mut a = separated_spd(n, 3, 11);
    a[n * n + 4] = f64::NAN; // matrix 1: non-finite entry
    for x in &mut a[2 * n * n..] {
        *x = -*x; // matrix 2: negative definite
    }
    let at = tensor(&a, [3, n, n], device, DType::F32);
    let (values_t, _, status) = eigrad::burn::eigh_with_status(at.clone());
    assert_eq!(codes(status), vec![0, 1, 0]);
    let v = values(values_t);
    assert!(v[..n].iter().all(|x| x.is_finite()) && v[n..2 * n].iter().all(|x| x.is_nan()));
    let (log_t, status) = eigrad::burn::spectral_with_status(at, SpectralFn::Log);
    assert_eq!(codes(status), vec![0, 1, Status::OutOfDomain.code() as i64]);
    let l = values(log_t);
    assert!(l[..n * n].iter().all(|x| x.is_finite()) && l[n * n..].iter().all(|x| x.is_nan()));
}

#[test]
fn flex_bad_matrices_get_nan_outputs_and_their_status() {
    check_status(&Device::flex());
    check_status(&flex());
    check_range(&Device::flex());
    check_range(&flex());
}

/// f32 results beyond the f32 range (computed in f64 on the host, in f32 on the GPU) get
/// status 3 and NaN outputs on every path, instead of ±inf with status 0: all entries 3e38
/// (eigenvalue 9e38), and exp of diag(100, 1, 2); diag(1, 2, 3) beside them is untouched.
fn check_range(device: &Device) {
    let n = 3;
    let mut a = vec![3e38; n * n];
    a.extend([100.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 2.0]);
    a.extend([1.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 3.0]);
    let at = tensor(&a, [3, n, n], device, DType::F32);
    let (w, status) = eigrad::burn::eigvalsh_with_status(at.clone());
    assert_eq!(codes(status), [3, 0, 0]);
    let w = values(w);
    assert!(
        w[..n].iter().all(|x| x.is_nan()) && w[2 * n..] == [1.0, 2.0, 3.0],
        "{w:?}"
    );
    let (_, v, status) = eigrad::burn::eigh_with_status(at.clone());
    assert_eq!(codes(status), [3, 0, 0]);
    let v = values(v);
    assert!(v[..n * n].iter().all(|x| x.is_nan()) && v[n * n..].iter().all(|x| x.is_finite()));
    let (f, status) = eigrad::burn::spectral_with_status(at, SpectralFn::Exp);
    assert_eq!(codes(status), [3, 3, 0]);
    let f = values(f);
    assert!(
        f[..2 * n * n].iter().all(|x| x.is_nan()) && f[2 * n * n..].iter().all(|x| x.is_finite())
    );
}

// ---------------------------------------------------------------------------------------------
// burn's wgpu backend, sharing eigrad's kernels.
// ---------------------------------------------------------------------------------------------

/// burn's wgpu device shared with eigrad (made once per process: burn initialises a runtime
/// once), or `None` with a printed reason when there is no adapter and `EIGRAD_REQUIRE_GPU` is
/// not `1`.
fn wgpu() -> Option<Device> {
    // eigrad logs why a call left the GPU path (RUST_LOG=eigrad=debug shows it).
    let _ = env_logger::builder().is_test(true).try_init();
    static DEVICE: OnceLock<Option<Device>> = OnceLock::new();
    DEVICE
        .get_or_init(|| {
            gpu_support::gpu()?;
            let device = eigrad::burn::wgpu_device(Device::wgpu_options()).unwrap_or_else(|e| {
                panic!("an adapter exists but burn's wgpu runtime failed: {e}")
            });
            Some(device)
        })
        .clone()
}

#[test]
fn wgpu_forward_outputs_equal_eigrads_gpu_kernels() {
    let Some(device) = wgpu() else { return };
    let ctx = eigrad::burn::gpu_context(&device).expect("the device is shared with eigrad");
    for n in [1usize, 4, 17] {
        let batch = 5;
        let a = separated_spd(n, batch, 60 + n as u64);
        let a32 = gpu_support::to_f32(&a);
        let opts = EighOptions::default();
        let own = ctx.eigh(&a32, n, &opts, Vectors::Yes).unwrap();
        for device in [device.clone(), device.clone().autodiff()] {
            let at = tensor(&a, [batch, n, n], &device, DType::F32);
            // Bit-for-bit equal to eigrad's own kernels on the same device: the burn path ran
            // eigrad's WGSL on burn's buffers (the CPU fallback would differ in the last bits).
            let (values_t, vectors_t, status) = eigrad::burn::eigh_with_status(at.clone());
            let to64 = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
            assert_eq!(
                values(values_t),
                to64(&own.eigenvalues),
                "eigenvalues, n = {n}"
            );
            assert_eq!(
                values(vectors_t),
                to64(own.eigenvectors.as_ref().unwrap()),
                "eigenvectors, n = {n}"
            );
            assert_eq!(codes(status), vec![0; batch]);
            let values_only = ctx.eigh(&a32, n, &opts, Vectors::No).unwrap();
            assert_eq!(
                values(eigrad::burn::eigvalsh(at.clone())),
                to64(&values_only.eigenvalues)
            );
            for f in FUNCTIONS {
                let s = ctx.spectral(&a32, n, f, &opts).unwrap();
                assert_eq!(
                    values(eigrad::burn::spectral(at.clone(), f)),
                    to64(&s.values),
                    "{f:?}, n = {n}"
                );
            }
        }
    }
}

#[test]
fn wgpu_results_beyond_f32_get_status_3_as_on_the_host() {
    let Some(device) = wgpu() else { return };
    let counts = counted(|| check_range(&device));
    assert_eq!(counts.host, 0, "{counts:?}");
}

#[test]
fn wgpu_strided_and_offset_views_run_on_the_device() {
    let Some(device) = wgpu() else { return };
    let ctx = eigrad::burn::gpu_context(&device).expect("the device is shared with eigrad");
    let (n, batch) = (4, 6);
    let a = separated_spd(n, batch, 9);
    let own = ctx
        .eigh(
            &gpu_support::to_f32(&a),
            n,
            &EighOptions::default(),
            Vectors::Yes,
        )
        .unwrap();
    let at = tensor(&a, [batch, n, n], &device, DType::F32);
    let calls = counted(|| {
        // A transposed view (Aᵀ symmetrises to the same matrix, bit for bit).
        let (values_t, _) = eigrad::burn::eigh(at.clone().swap_dims(1, 2));
        let expected: Vec<f64> = own.eigenvalues.iter().map(|&x| x as f64).collect();
        assert_eq!(values(values_t), expected);
        // Matrices 1..4: a view starting one matrix (64 bytes) into burn's buffer (bound in
        // place where that is a valid storage binding offset, else copied once on the device).
        let (values_t, _) = eigrad::burn::eigh(at.clone().slice([1..4, 0..n, 0..n]));
        assert_eq!(values(values_t), expected[n..4 * n]);
    });
    assert_eq!(calls, eigrad::burn::PathCounts { gpu: 2, host: 0 });
}

#[test]
fn wgpu_matrices_larger_than_the_kernels_take_the_host_fallback() {
    let Some(device) = wgpu() else { return };
    let n = eigrad::gpu::MAX_N + 1;
    let a = separated_spd(n, 1, 5);
    let at = tensor(&a, [1, n, n], &device, DType::F32);
    let calls = counted(|| {
        let values_t = eigrad::burn::eigvalsh(at);
        let eig = cpu::jacobi(&a, n, &EighOptions::default(), Vectors::No).unwrap();
        let expected: Vec<f64> = eig.eigenvalues.iter().map(|&x| x as f32 as f64).collect();
        assert_eq!(values(values_t), expected);
    });
    assert_eq!(calls, eigrad::burn::PathCounts { gpu: 0, host: 1 });
}

#[test]
fn wgpu_gradients_match_eigrad_and_finite_differences() {
    let Some(device) = wgpu() else { return };
    // f32 kernels on well separated spectra: the 1e-4 relative bound (eps32 · ‖A‖/gap
    // with ‖A‖/gap ≤ 4n, and the f32 rounding of the cotangents).
    let calls = counted(|| check_gradients(&device.autodiff(), DType::F32, 1e-4, 1e-4));
    // Forward and backward ran eigrad's kernels on burn's buffers, never the host fallback:
    // 3 sizes × 8 losses × (1 forward + 1 or 2 backward steps).
    assert_eq!(calls.host, 0, "{calls:?}");
    assert!(calls.gpu >= 3 * 8 * 2, "{calls:?}");
}

#[test]
fn wgpu_bad_matrices_get_nan_outputs_and_their_status() {
    let Some(device) = wgpu() else { return };
    check_status(&device);
    check_status(&device.autodiff());
}

// ---------------------------------------------------------------------------------------------
// Options.
// ---------------------------------------------------------------------------------------------

/// Two 3×3 matrices: `diag(1, 1, 3)` (an exact tie, whose eigenvectors every solver returns as
/// the identity) and a well separated one.
fn tie_and_separated() -> Vec<f64> {
    let mut a = vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 3.0];
    a.extend(separated_spd(3, 1, 77));
    a
}

/// `Ā` of `Σ G∘V` through burn's autodiff under `options` (V̄ = G exactly).
fn vector_grad(device: &Device, dtype: DType, a: &[f64], g: &[f64], options: &Options) -> Vec<f64> {
    let (batch, n) = (2, 3);
    let at = tensor(a, [batch, n, n], device, dtype).require_grad();
    let gt = tensor(g, [batch, n, n], device, dtype);
    let (_, vectors, _) = eigrad::burn::eigh_with(at.clone(), options).unwrap();
    let grads = (vectors * gt).sum().backward();
    values(at.grad(&grads).expect("the input requires grad"))
}

/// The policies the options test runs, with a mask tolerance given explicitly too.
const POLICIES: [Degeneracy; 4] = [
    Degeneracy::Mask { rel_tol: None },
    Degeneracy::Mask {
        rel_tol: Some(1e-3),
    },
    Degeneracy::Lorentzian { eps: 0.1 },
    Degeneracy::Propagate,
];

/// The options reach both passes on `device`: each policy's eigenvector gradient equals
/// `reference(policy)` (eigrad's own VJP), `Propagate` is non-finite at the tie and the others
/// finite, a one-sweep cap gives `expected_capped` statuses, and reading the lower triangle
/// ignores the upper one.
fn check_options(
    device: &Device,
    dtype: DType,
    reference: impl Fn(Degeneracy) -> Vec<f64>,
    capped: impl Fn(&[f64]) -> Vec<i64>,
    lower_values: impl Fn(&[f64]) -> Vec<f64>,
) {
    let a = tie_and_separated();
    let g = normals(2 * 9, 5);
    for policy in POLICIES {
        let options = Options {
            degeneracy: policy,
            ..Options::default()
        };
        let grad = vector_grad(&device.clone().autodiff(), dtype, &a, &g, &options);
        let want = reference(policy);
        let finite = |v: &[f64]| v.iter().all(|x| x.is_finite());
        assert_eq!(
            finite(&grad[..9]),
            policy != Degeneracy::Propagate,
            "{policy:?}"
        );
        assert!(finite(&grad[9..]), "{policy:?}: the separated matrix");
        let (tie, rest): (Vec<_>, Vec<_>) = if finite(&grad) {
            (grad.clone(), want.clone())
        } else {
            (grad[9..].to_vec(), want[9..].to_vec())
        };
        let scale = fro(rest.iter().copied());
        assert_close(
            &format!("{policy:?} gradient"),
            &tie,
            &rest,
            1e-12 * scale.max(1.0),
        );
    }
    // The sweep cap: one sweep leaves a random 8×8 matrix unconverged.
    let n = 8;
    let a = separated_spd(n, 2, 78);
    let options = Options {
        eigh: EighOptions {
            max_sweeps: 1,
            ..EighOptions::default()
        },
        ..Options::default()
    };
    let at = tensor(&a, [2, n, n], device, dtype);
    let (values_t, status) = eigrad::burn::eigvalsh_with(at, &options).unwrap();
    let want = capped(&a);
    assert!(
        want.contains(&(Status::NotConverged.code() as i64)),
        "{want:?}"
    );
    assert_eq!(codes(status), want);
    assert!(values(values_t)[..n].iter().all(|x| x.is_nan()) == (want[0] != 0));
    // The lower triangle only: garbage above the diagonal changes nothing.
    let mut scrambled = a.clone();
    gpu_support::fill_upper(&mut scrambled, n, |i, j| 100.0 + (i * j) as f64);
    let options = Options {
        eigh: EighOptions {
            symmetry: eigrad::Symmetry::Lower,
            ..EighOptions::default()
        },
        ..Options::default()
    };
    let at = tensor(&scrambled, [2, n, n], device, dtype);
    let (values_t, _) = eigrad::burn::eigvalsh_with(at, &options).unwrap();
    assert_eq!(values(values_t), lower_values(&a));
}

#[test]
fn flex_options_reach_the_forward_and_the_backward() {
    let a = tie_and_separated();
    let g = normals(2 * 9, 5);
    let reference = |policy: Degeneracy| {
        let eig = cpu::jacobi_eigh(&a, 3, &EighOptions::default()).unwrap();
        // f64 tensors: a default mask tolerance is f64's.
        let policy = match policy {
            Degeneracy::Mask { rel_tol: None } => Degeneracy::Mask {
                rel_tol: Some(eigrad::Precision::F64.default_mask_rel_tol()),
            },
            p => p,
        };
        cpu::eigh_vjp(&eig, None, Some(&g), policy).unwrap()
    };
    let capped = |a: &[f64]| {
        let opts = EighOptions {
            max_sweeps: 1,
            ..EighOptions::default()
        };
        let eig = cpu::jacobi(a, 8, &opts, Vectors::No).unwrap();
        eig.status.iter().map(|s| s.code() as i64).collect()
    };
    let lower = |a: &[f64]| {
        let eig = cpu::jacobi(a, 8, &EighOptions::default(), Vectors::No).unwrap();
        eig.eigenvalues
    };
    check_options(&Device::flex(), DType::F64, reference, capped, lower);
}

#[test]
fn wgpu_options_reach_the_forward_and_the_backward() {
    let Some(device) = wgpu() else { return };
    let ctx = eigrad::burn::gpu_context(&device).expect("the device is shared with eigrad");
    let a32 = gpu_support::to_f32(&tie_and_separated());
    let g32 = gpu_support::to_f32(&normals(2 * 9, 5));
    let to64 = |v: Vec<f32>| v.into_iter().map(|x| x as f64).collect::<Vec<_>>();
    let opts = EighOptions::default();
    let reference = |policy: Degeneracy| {
        let eig = ctx.eigh(&a32, 3, &opts, Vectors::Yes).unwrap();
        to64(ctx.eigh_vjp(&eig, None, Some(&g32), policy).unwrap())
    };
    let capped = |a: &[f64]| {
        let opts = EighOptions {
            max_sweeps: 1,
            ..opts
        };
        let eig = ctx
            .eigh(&gpu_support::to_f32(a), 8, &opts, Vectors::No)
            .unwrap();
        eig.status.iter().map(|s| s.code() as i64).collect()
    };
    let lower = |a: &[f64]| {
        let eig = ctx
            .eigh(&gpu_support::to_f32(a), 8, &opts, Vectors::No)
            .unwrap();
        to64(eig.eigenvalues)
    };
    let calls = counted(|| check_options(&device, DType::F32, reference, capped, lower));
    assert_eq!(calls.host, 0, "{calls:?}");
}

#[test]
fn bad_shapes_and_options_are_errors_not_panics() {
    let device = Device::flex();
    let a = tensor(&separated_spd(3, 2, 1), [2, 3, 3], &device, DType::F32);
    let wide = tensor(&[0.0; 12], [2, 2, 3], &device, DType::F32);
    let shape = eigrad::burn::eigh_with(wide.clone(), &Options::default());
    assert!(matches!(shape, Err(eigrad::Error::Shape(m)) if m.contains("[2, 2, 3]")));
    assert!(eigrad::burn::eigvalsh_with(wide, &Options::default()).is_err());
    let bad = [
        Options {
            eigh: EighOptions {
                max_sweeps: 0,
                ..EighOptions::default()
            },
            ..Options::default()
        },
        Options {
            degeneracy: Degeneracy::Lorentzian { eps: -1.0 },
            ..Options::default()
        },
        Options {
            degeneracy: Degeneracy::Mask {
                rel_tol: Some(f64::NAN),
            },
            ..Options::default()
        },
    ];
    for options in bad {
        let r = eigrad::burn::eigh_with(a.clone(), &options);
        assert!(
            matches!(r, Err(eigrad::Error::InvalidArgument(_))),
            "{options:?}"
        );
    }
    let pow = eigrad::burn::spectral_with(a, SpectralFn::Pow(f64::INFINITY), &Options::default());
    assert!(matches!(pow, Err(eigrad::Error::InvalidArgument(_))));
}
