//! Trains a linear feature map through a spectral loss on the GPU.
//!
//! A hidden map `W*` (n×d) turns d-dimensional samples into n-dimensional features; each of
//! `B` groups of samples has the feature covariance `C_b = W S_b Wᵀ + εI` (`S_b` the sample
//! second-moment matrix of group b). We learn `W` from the targets `log(C*_b)` alone, with the
//! log-Euclidean loss `L(W) = (1/B) Σ_b ‖log C_b − log C*_b‖²_F`. Every step runs the matrix
//! logarithm of all B covariances and its Daleckii–Krein VJP through eigrad (GPU when an adapter
//! exists, else the CPU reference), then `∂L/∂W = Σ_b 2 Ā_b W S_b` and an Adam update.
//!
//! Run: `cargo run --release --example train_log_euclidean` (a minute or two on Mesa's software
//! Vulkan). The last line is `loss: initial=X final=Y`.

use eigrad::gpu::GpuContext;
use eigrad::samples::Rng;
use eigrad::spectral::SpectralFn;
use eigrad::EighOptions;

/// Output size (the covariance matrices are n×n).
const N: usize = 6;
/// Input size.
const D: usize = 10;
/// Covariance matrices per step.
const BATCH: usize = 2048;
/// Samples per group.
const SAMPLES: usize = 24;
/// Ridge added to every covariance so it stays positive definite.
const RIDGE: f64 = 1e-2;
const STEPS: usize = 300;
const LEARNING_RATE: f64 = 0.05;

/// `log` of each matrix and, given a cotangent, the VJP: on the GPU or on the CPU.
enum Engine {
    Gpu(Box<GpuContext>),
    Cpu,
}

impl Engine {
    /// Returns `log(C_b)` for every matrix and a closure-free handle for the backward.
    fn log_and_vjp(&self, c: &[f64], grad_of: impl Fn(&[f64]) -> Vec<f64>) -> (Vec<f64>, Vec<f64>) {
        let opts = EighOptions::default();
        match self {
            Engine::Gpu(ctx) => {
                let c32: Vec<f32> = c.iter().map(|&x| x as f32).collect();
                // Forward and backward stay on the device; only log C and Ā cross to the host.
                let input = ctx.upload(&c32);
                let fwd = ctx
                    .spectral_resident(&input, N, SpectralFn::Log, &opts)
                    .expect("log on the GPU");
                let logs: Vec<f64> = ctx
                    .download(&fwd.values)
                    .expect("read log C")
                    .iter()
                    .map(|&x| x as f64)
                    .collect();
                let g: Vec<f32> = grad_of(&logs).iter().map(|&x| x as f32).collect();
                let g_dev = ctx.upload(&g);
                let a_bar = ctx
                    .spectral_vjp_resident(&fwd, &g_dev)
                    .expect("VJP on the GPU");
                let a_bar = ctx.download(&a_bar).expect("read Ā");
                (logs, a_bar.iter().map(|&x| x as f64).collect())
            }
            Engine::Cpu => {
                let s =
                    eigrad::cpu::spectral(c, N, SpectralFn::Log, &opts).expect("log on the CPU");
                let g = grad_of(&s.values);
                let a_bar = eigrad::cpu::spectral_vjp(&s, &g).expect("VJP on the CPU");
                (s.values, a_bar)
            }
        }
    }
}

/// `C_b = W S_b Wᵀ + εI` for every group.
fn covariances(w: &[f64], s: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; BATCH * N * N];
    let mut ws = [0.0; N * D];
    for (b, c) in out.chunks_mut(N * N).enumerate() {
        let sb = &s[b * D * D..(b + 1) * D * D];
        for i in 0..N {
            for j in 0..D {
                ws[i * D + j] = (0..D).map(|k| w[i * D + k] * sb[k * D + j]).sum();
            }
        }
        for i in 0..N {
            for j in 0..=i {
                let x: f64 = (0..D).map(|k| ws[i * D + k] * w[j * D + k]).sum();
                c[i * N + j] = x;
                c[j * N + i] = x;
            }
            c[i * N + i] += RIDGE;
        }
    }
    out
}

fn main() {
    let engine = match GpuContext::new() {
        Ok(ctx) => {
            println!("device: gpu ({})", ctx.adapter_name());
            Engine::Gpu(Box::new(ctx))
        }
        Err(e) => {
            println!("device: cpu ({e})");
            Engine::Cpu
        }
    };
    let mut rng = Rng::new(2026);
    // Second-moment matrices of BATCH groups of correlated samples.
    let mix: Vec<f64> = (0..D * D)
        .map(|_| rng.normal() / (D as f64).sqrt())
        .collect();
    let mut s = vec![0.0; BATCH * D * D];
    for sb in s.chunks_mut(D * D) {
        for _ in 0..SAMPLES {
            let z: Vec<f64> = (0..D).map(|_| rng.normal()).collect();
            let x: Vec<f64> = (0..D)
                .map(|i| z[i] + (0..D).map(|k| mix[i * D + k] * z[k]).sum::<f64>())
                .collect();
            for i in 0..D {
                for j in 0..D {
                    sb[i * D + j] += x[i] * x[j] / SAMPLES as f64;
                }
            }
        }
    }
    let w_true: Vec<f64> = (0..N * D)
        .map(|_| rng.normal() / (D as f64).sqrt())
        .collect();
    let target = {
        let c = covariances(&w_true, &s);
        engine.log_and_vjp(&c, |l| vec![0.0; l.len()]).0
    };
    let mut w: Vec<f64> = (0..N * D)
        .map(|_| 0.3 * rng.normal() / (D as f64).sqrt())
        .collect();
    let (mut m1, mut m2) = (vec![0.0; N * D], vec![0.0; N * D]);
    let (beta1, beta2) = (0.9f64, 0.999f64);
    let mut initial = None;
    let mut loss = f64::NAN;
    for step in 0..STEPS {
        let c = covariances(&w, &s);
        let (logs, a_bar) = engine.log_and_vjp(&c, |logs| {
            logs.iter()
                .zip(&target)
                .map(|(l, t)| 2.0 * (l - t) / BATCH as f64)
                .collect()
        });
        loss = logs
            .iter()
            .zip(&target)
            .map(|(l, t)| (l - t) * (l - t))
            .sum::<f64>()
            / BATCH as f64;
        initial.get_or_insert(loss);
        // ∂L/∂W = Σ_b 2 Ā_b W S_b.
        let mut grad = vec![0.0; N * D];
        for b in 0..BATCH {
            let ab = &a_bar[b * N * N..(b + 1) * N * N];
            let sb = &s[b * D * D..(b + 1) * D * D];
            for i in 0..N {
                for j in 0..D {
                    let mut x = 0.0;
                    for k in 0..N {
                        let aw: f64 = ab[i * N + k];
                        if aw != 0.0 {
                            x += aw * (0..D).map(|l| w[k * D + l] * sb[l * D + j]).sum::<f64>();
                        }
                    }
                    grad[i * D + j] += 2.0 * x;
                }
            }
        }
        let t = (step + 1) as i32;
        for i in 0..N * D {
            m1[i] = beta1 * m1[i] + (1.0 - beta1) * grad[i];
            m2[i] = beta2 * m2[i] + (1.0 - beta2) * grad[i] * grad[i];
            let mh = m1[i] / (1.0 - beta1.powi(t));
            let vh = m2[i] / (1.0 - beta2.powi(t));
            w[i] -= LEARNING_RATE * mh / (vh.sqrt() + 1e-8);
        }
        if step % 25 == 0 || step + 1 == STEPS {
            println!("step {step:4}  loss {loss:.6}");
        }
    }
    println!(
        "loss: initial={:.6} final={:.6}",
        initial.unwrap_or(f64::NAN),
        loss
    );
}
