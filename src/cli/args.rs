//! The command-line grammar (DESIGN §5), declared with clap's derive API. Names, defaults and
//! value names here are the contract scripts rely on.

use super::device::DeviceChoice;
use super::npy::Dtype;
use clap::{ArgGroup, Args, Parser, Subcommand};
use eigrad::spectral::SpectralFn;
use eigrad::Symmetry;
use std::path::PathBuf;

/// Batched symmetric eigendecomposition of many small matrices and its derivatives, on the GPU
/// (WGSL via wgpu, f32) or the CPU (f64 reference).
///
/// Without a subcommand, `eigrad` runs `eigrad demo`. Errors print `error: …` and exit with 2; a
/// failed accuracy check exits with 1.
#[derive(Debug, Parser)]
#[command(name = "eigrad", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do (default: demo).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The demo's options, when no subcommand is given.
    #[command(flatten)]
    pub demo: DemoArgs,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Random sample covariance matrices → eigh + VJP on the device, checked against the CPU
    /// reference: what ran where, accuracy and throughput.
    Demo(DemoArgs),
    /// Device-vs-CPU-reference consistency report per n; exit 1 if a tolerance is exceeded.
    Check(CheckArgs),
    /// Eigendecomposition of a .npy file of matrices (..., n, n) (on the CPU: the fast
    /// tridiagonal QL solver, not the Jacobi reference).
    Eigh(EighArgs),
    /// Reverse-mode derivative (VJP) of the eigendecomposition.
    Vjp(VjpArgs),
    /// Forward-mode derivative (JVP) of the eigendecomposition.
    Jvp(JvpArgs),
    /// Spectral function f(A) = V f(Λ) Vᵀ (sqrt, log, exp, inv, pow:P) and its VJP.
    Spectral(SpectralArgs),
    /// Throughput of forward, eigenvalues-only and VJP per n, on the GPU and the CPU.
    Bench(BenchArgs),
}

/// Parses a count that must be at least 1.
fn positive(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(v) => Ok(v),
        Err(_) if s.trim().parse::<i128>().is_ok() => Err("must be at least 1".into()),
        Err(e) => Err(format!("not a whole number ({e})")),
    }
}

/// Parses a seed: a whole number from 0 to 2^64 − 1.
fn seed(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<u64>()
        .map_err(|e| format!("must be a whole number from 0 to 2^64 - 1 ({e})"))
}

/// The sizes of an `--n` list in their order, each once.
pub fn unique_sizes(list: &[usize]) -> Vec<usize> {
    let mut out: Vec<usize> = Vec::with_capacity(list.len());
    for &n in list {
        if !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

/// Parses `sqrt|log|exp|inv|pow:P`.
fn spectral_fn(s: &str) -> Result<SpectralFn, String> {
    s.parse::<SpectralFn>().map_err(|e| e.to_string())
}

/// `--symmetry`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SymmetryArg {
    /// Use (A + Aᵀ)/2.
    #[default]
    Symmetrize,
    /// Read only the lower triangle.
    Lower,
}

impl From<SymmetryArg> for Symmetry {
    fn from(s: SymmetryArg) -> Symmetry {
        match s {
            SymmetryArg::Symmetrize => Symmetry::Symmetrize,
            SymmetryArg::Lower => Symmetry::Lower,
        }
    }
}

/// `--degeneracy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DegeneracyArg {
    /// Drop 1/(λj − λi) when |λj − λi| ≤ tol·max|λ| (tol: --degeneracy-tol, default eps^(3/4)).
    #[default]
    Mask,
    /// Δ/(Δ² + eps) (eps: --degeneracy-tol, default 1e-12).
    Lorentzian,
    /// The plain 1/Δ: ties give ±inf/NaN.
    Propagate,
}

/// `eigrad demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Matrix size.
    #[arg(long, value_name = "N", default_value = "8", value_parser = positive, allow_hyphen_values = true)]
    pub n: usize,
    /// Number of matrices.
    #[arg(long, value_name = "B", default_value = "4096", value_parser = positive, allow_hyphen_values = true)]
    pub batch: usize,
    /// Where to run.
    #[arg(long, value_name = "D", value_enum, default_value_t)]
    pub device: DeviceChoice,
}

/// `eigrad check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Matrix sizes, comma separated.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        value_parser = positive,
        allow_hyphen_values = true,
        default_value = "1,2,3,4,5,7,8,13,16,31,32,33,48,64"
    )]
    pub n: Vec<usize>,
    /// Matrices per size (for the forward check and again for the VJP check).
    #[arg(long, value_name = "B", default_value = "64", value_parser = positive, allow_hyphen_values = true)]
    pub batch: usize,
    /// Seed of the random matrices.
    #[arg(long, value_name = "S", default_value = "0", value_parser = seed, allow_hyphen_values = true)]
    pub seed: u64,
    /// Where to run.
    #[arg(long, value_name = "D", value_enum, default_value_t)]
    pub device: DeviceChoice,
}

/// `eigrad eigh`.
#[derive(Debug, Args)]
pub struct EighArgs {
    /// Matrices (..., n, n), float16/32/64, C order.
    #[arg(long, value_name = "A.npy")]
    pub input: PathBuf,
    /// Output directory (created if missing): eigenvalues.npy, eigenvectors.npy, status.npy.
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
    /// Where to run.
    #[arg(long, value_name = "D", value_enum, default_value_t)]
    pub device: DeviceChoice,
    /// Eigenvalues only: no eigenvectors.npy.
    #[arg(long)]
    pub values_only: bool,
    /// How the symmetric matrix is formed from the input.
    #[arg(long, value_enum, default_value_t)]
    pub symmetry: SymmetryArg,
    /// Output element type (default: float32 from the GPU, float64 from the CPU).
    #[arg(long, value_enum)]
    pub output_dtype: Option<Dtype>,
}

/// `eigrad vjp`.
#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("grads")
        .required(true)
        .multiple(true)
        .args(["grad_eigenvalues", "grad_eigenvectors"])
))]
pub struct VjpArgs {
    /// Matrices (..., n, n), float16/32/64, C order.
    #[arg(long, value_name = "A.npy")]
    pub input: PathBuf,
    /// Cotangent of the eigenvalues (..., n).
    #[arg(long, value_name = "GW.npy")]
    pub grad_eigenvalues: Option<PathBuf>,
    /// Cotangent of the eigenvectors (..., n, n).
    #[arg(long, value_name = "GV.npy")]
    pub grad_eigenvectors: Option<PathBuf>,
    /// Where to write Ā (..., n, n).
    #[arg(long, value_name = "GA.npy")]
    pub output: PathBuf,
    /// What to do with 1/(λj − λi) at (near) ties.
    #[arg(long, value_enum, default_value_t)]
    pub degeneracy: DegeneracyArg,
    /// Relative mask tolerance (mask) or broadening eps (lorentzian).
    #[arg(long, value_name = "X", allow_hyphen_values = true)]
    pub degeneracy_tol: Option<f64>,
    /// Where to run.
    #[arg(long, value_name = "D", value_enum, default_value_t)]
    pub device: DeviceChoice,
    /// How the symmetric matrix is formed from the input (as for `eigh`).
    #[arg(long, value_enum, default_value_t)]
    pub symmetry: SymmetryArg,
    /// Output element type (default: float32 from the GPU, float64 from the CPU).
    #[arg(long, value_enum)]
    pub output_dtype: Option<Dtype>,
}

/// `eigrad jvp`.
#[derive(Debug, Args)]
pub struct JvpArgs {
    /// Matrices (..., n, n), float16/32/64, C order.
    #[arg(long, value_name = "A.npy")]
    pub input: PathBuf,
    /// Tangent Ȧ (..., n, n) (symmetrised before use).
    #[arg(long, value_name = "DA.npy")]
    pub tangent: PathBuf,
    /// Output directory (created if missing): eigenvalues_dot.npy, eigenvectors_dot.npy.
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
    /// Where to run.
    #[arg(long, value_name = "D", value_enum, default_value_t)]
    pub device: DeviceChoice,
    /// What to do with 1/(λj − λi) at (near) ties.
    #[arg(long, value_enum, default_value_t)]
    pub degeneracy: DegeneracyArg,
    /// Relative mask tolerance (mask) or broadening eps (lorentzian).
    #[arg(long, value_name = "X", allow_hyphen_values = true)]
    pub degeneracy_tol: Option<f64>,
    /// How the symmetric matrix is formed from the input (as for `eigh`).
    #[arg(long, value_enum, default_value_t)]
    pub symmetry: SymmetryArg,
    /// Output element type (default: float32 from the GPU, float64 from the CPU).
    #[arg(long, value_enum)]
    pub output_dtype: Option<Dtype>,
}

/// `eigrad spectral`.
#[derive(Debug, Args)]
pub struct SpectralArgs {
    /// sqrt, log, exp, inv or pow:P.
    #[arg(long, value_name = "F", value_parser = spectral_fn)]
    pub function: SpectralFn,
    /// Matrices (..., n, n), float16/32/64, C order.
    #[arg(long, value_name = "A.npy")]
    pub input: PathBuf,
    /// Where to write f(A) (..., n, n).
    #[arg(long, value_name = "F.npy")]
    pub output: PathBuf,
    /// Cotangent Ḡ of f(A) (..., n, n); needs --grad-output.
    #[arg(long, value_name = "G.npy", requires = "grad_output")]
    pub grad: Option<PathBuf>,
    /// Where to write the VJP Ā (..., n, n); needs --grad.
    #[arg(long, value_name = "GA.npy", requires = "grad")]
    pub grad_output: Option<PathBuf>,
    /// Where to run.
    #[arg(long, value_name = "D", value_enum, default_value_t)]
    pub device: DeviceChoice,
    /// How the symmetric matrix is formed from the input (as for `eigh`).
    #[arg(long, value_enum, default_value_t)]
    pub symmetry: SymmetryArg,
    /// Output element type (default: float32 from the GPU, float64 from the CPU).
    #[arg(long, value_enum)]
    pub output_dtype: Option<Dtype>,
}

/// `eigrad bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Where to run (`auto` benchmarks both the GPU, when there is one, and the CPU).
    #[arg(long, value_name = "D", value_enum, default_value_t)]
    pub device: DeviceChoice,
    /// Matrix sizes, comma separated.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        value_parser = positive,
        allow_hyphen_values = true,
        default_value = "2,4,8,16,32,64"
    )]
    pub n: Vec<usize>,
    /// Matrices per call (default: about 2^22/n² on the GPU, 2^18/n² on the CPU).
    #[arg(long, value_name = "B", value_parser = positive, allow_hyphen_values = true)]
    pub batch: Option<usize>,
    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}
