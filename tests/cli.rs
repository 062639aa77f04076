//! Integration tests of the `eigrad` binary (DESIGN §5): every subcommand on temporary `.npy`
//! files, compared with the library's CPU results, and every bad-input case, which must exit with
//! 2, print `error: …` naming the problem, and leave no output behind.
//!
//! Tests where the device does not matter use `--device cpu`. Tests with `--device auto` or `gpu`
//! pass on either device: they read the `device: …` line and check the GPU's f32 results against
//! the CPU reference with f32 tolerances, or the CPU's f64 results exactly.

use eigrad::samples::{self, Rng};
use eigrad::spectral::SpectralFn;
use eigrad::{cpu, Degeneracy, EighOptions, Symmetry};
use half::f16;
use npyz::WriterBuilder;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

// ---------------------------------------------------------------------------------------------
// Running the binary.

/// What a run of the binary did.
struct Run {
    /// The exit status.
    code: i32,
    /// Everything printed on stdout.
    stdout: String,
    /// Everything printed on stderr.
    stderr: String,
}

impl Run {
    /// Asserts exit status 2 with an `error:` line that mentions `needle` (case-insensitive).
    fn assert_error(&self, needle: &str) {
        assert_eq!(self.code, 2, "expected exit 2; stderr:\n{}", self.stderr);
        assert!(
            self.stderr.lines().any(|l| l.starts_with("error:")),
            "no `error:` line in stderr:\n{}",
            self.stderr
        );
        assert!(
            self.stderr.to_lowercase().contains(&needle.to_lowercase()),
            "stderr does not mention {needle:?}:\n{}",
            self.stderr
        );
    }

    /// Asserts exit status 0.
    fn assert_ok(&self) {
        assert_eq!(
            self.code, 0,
            "expected success; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
    }

    /// The device that ran, from the `device: …` line: `"gpu"` or `"cpu"`.
    fn device(&self) -> &'static str {
        let line = self
            .stderr
            .lines()
            .find(|l| l.starts_with("device: "))
            .unwrap_or_else(|| panic!("no `device:` line in stderr:\n{}", self.stderr));
        if line.starts_with("device: gpu") {
            "gpu"
        } else {
            assert!(line.starts_with("device: cpu"), "{line}");
            "cpu"
        }
    }
}

/// Runs the `eigrad` binary with `args`.
fn cli<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    cli_with(args, &[])
}

/// Runs the `eigrad` binary with `args` and the environment variables `env` (not tuning, and
/// without a log level, unless `env` says so).
fn cli_with<S: AsRef<std::ffi::OsStr>>(args: &[S], env: &[(&str, &str)]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_eigrad"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("EIGRAD_GPU_TUNE")
        .envs(env.iter().copied())
        .output()
        .expect("run eigrad");
    Run {
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A path as a command-line argument.
fn p(path: &Path) -> String {
    path.to_str().expect("utf-8 temp path").to_string()
}

// ---------------------------------------------------------------------------------------------
// Fixtures.

/// Writes a C-order `.npy` file.
fn write_npy<T: npyz::AutoSerialize + Copy>(path: &Path, shape: &[u64], data: &[T]) {
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(std::io::BufWriter::new(
            std::fs::File::create(path).unwrap(),
        ))
        .begin_nd()
        .unwrap();
    w.extend(data.iter().copied()).unwrap();
    w.finish().unwrap();
}

/// Writes a float64 `.npy` file that declares Fortran order.
fn write_fortran(path: &Path, shape: &[u64], data: &[f64]) {
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .order(npyz::Order::Fortran)
        .shape(shape)
        .writer(std::io::BufWriter::new(
            std::fs::File::create(path).unwrap(),
        ))
        .begin_nd()
        .unwrap();
    w.extend(data.iter().copied()).unwrap();
    w.finish().unwrap();
}

/// Writes a header for dtype `descr` (e.g. `<c8`) followed by raw `payload` bytes.
fn write_raw(path: &Path, descr: &str, shape: &[u64], payload: &[u8]) {
    let dtype = npyz::DType::parse(&format!("'{descr}'")).unwrap();
    let mut file = npyz::WriteOptions::new_header_only()
        .dtype(dtype)
        .shape(shape)
        .writer(std::fs::File::create(path).unwrap())
        .write_header_only()
        .unwrap();
    file.write_all(payload).unwrap();
}

/// An output file: shape, numpy descr (e.g. `'<f8'`) and data widened to f64.
struct Npy {
    /// The stored shape.
    shape: Vec<u64>,
    /// The numpy dtype descriptor, quoted as in the header (`'<f8'`).
    descr: String,
    /// The elements, widened to f64.
    data: Vec<f64>,
}

/// Reads a float `.npy` output.
fn read_floats(path: &Path) -> Npy {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().to_vec();
    let descr = npy.dtype().descr();
    let data = match descr.as_str() {
        "'<f8'" => npy.into_vec::<f64>().unwrap(),
        "'<f4'" => npy
            .into_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect(),
        "'<f2'" => npy
            .into_vec::<f16>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect(),
        other => panic!("unexpected dtype {other} in {}", path.display()),
    };
    Npy { shape, descr, data }
}

/// Reads an int32 `.npy` output.
fn read_i32(path: &Path) -> (Vec<u64>, Vec<i32>) {
    let bytes = std::fs::read(path).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    assert_eq!(npy.dtype().descr(), "'<i4'", "{}", path.display());
    let shape = npy.shape().to_vec();
    (shape, npy.into_vec::<i32>().unwrap())
}

/// `batch` random symmetric `n×n` matrices with well separated eigenvalues (gaps ≥ 0.5).
fn separated(seed: u64, n: usize, batch: usize) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    let mut a = Vec::new();
    for _ in 0..batch {
        let s: Vec<f64> = (0..n)
            .map(|k| k as f64 + 0.5 * rng.uniform() - 1.0)
            .collect();
        a.extend(samples::with_spectrum(&mut rng, &s));
    }
    a
}

/// `count` standard normal values.
fn normals(seed: u64, count: usize) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    (0..count).map(|_| rng.normal()).collect()
}

/// Asserts `|x − y| ≤ tol` elementwise, with NaN equal to NaN.
fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (x, y)) in got.iter().zip(want).enumerate() {
        let same = (x.is_nan() && y.is_nan()) || x == y || (x - y).abs() <= tol;
        assert!(
            same,
            "{what}[{i}]: got {x}, expected {y}, difference {}, tolerance {tol}",
            (x - y).abs()
        );
    }
}

/// The names in a directory (empty when it does not exist).
fn listing(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            let mut v: Vec<String> = rd
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        }
        Err(_) => Vec::new(),
    }
}

/// The matrix size of most fixtures.
const N: usize = 4;
/// The GPU's machine epsilon.
const EPS32: f64 = f32::EPSILON as f64;

// ---------------------------------------------------------------------------------------------
// eigh

#[test]
fn eigh_on_cpu_writes_eigenvalues_eigenvectors_and_int32_status_with_the_batch_shape() {
    let dir = tempfile::tempdir().unwrap();
    let a = samples::random_symmetric(&mut Rng::new(1), N, 6);
    let input = dir.path().join("a.npy");
    write_npy(&input, &[2, 3, 4, 4], &a);
    let out = dir.path().join("out");
    eigh_cpu(&input, &out, &[]).assert_ok();

    let want = cpu::tridiagonal_eigh(&a, N, &EighOptions::default()).unwrap();
    let w = read_floats(&out.join("eigenvalues.npy"));
    assert_eq!(
        (w.shape.as_slice(), w.descr.as_str()),
        (&[2u64, 3, 4][..], "'<f8'")
    );
    assert_close(&w.data, &want.eigenvalues, 0.0, "eigenvalues");
    let v = read_floats(&out.join("eigenvectors.npy"));
    assert_eq!(
        (v.shape.as_slice(), v.descr.as_str()),
        (&[2u64, 3, 4, 4][..], "'<f8'")
    );
    assert_close(
        &v.data,
        want.eigenvectors.as_ref().unwrap(),
        0.0,
        "eigenvectors",
    );
    let (shape, status) = read_i32(&out.join("status.npy"));
    assert_eq!(shape, vec![2, 3]);
    assert_eq!(status, vec![0; 6]);
    assert_eq!(
        listing(&out),
        ["eigenvalues.npy", "eigenvectors.npy", "status.npy"]
    );
}

#[test]
fn eigh_of_a_file_above_the_mapped_buffer_size_matches_the_library() {
    // Over 4 MiB of float64 and float32 data: read into (and, for float64, decomposed in) a
    // mapped buffer rather than a vector.
    let dir = tempfile::tempdir().unwrap();
    let (n, batch) = (8, 8200);
    let a = samples::random_symmetric(&mut Rng::new(5), n, batch);
    let want = cpu::tridiagonal_eigh(&a, n, &EighOptions::default()).unwrap();
    let a32: Vec<f32> = a.iter().map(|&x| x as f32).collect();
    let want32 = cpu::tridiagonal_eigh(&a32, n, &EighOptions::default()).unwrap();
    let wide = dir.path().join("a64.npy");
    let narrow = dir.path().join("a32.npy");
    write_npy(&wide, &[batch as u64, n as u64, n as u64], &a);
    write_npy(&narrow, &[batch as u64, n as u64, n as u64], &a32);
    for (input, want) in [(&wide, &want), (&narrow, &want32)] {
        let out = dir.path().join("out");
        cli(&[
            "eigh",
            "--input",
            &p(input),
            "--out-dir",
            &p(&out),
            "--device",
            "cpu",
        ])
        .assert_ok();
        let w = read_floats(&out.join("eigenvalues.npy"));
        assert_close(&w.data, &want.eigenvalues, 0.0, "eigenvalues");
        let v = read_floats(&out.join("eigenvectors.npy"));
        assert_close(
            &v.data,
            want.eigenvectors.as_ref().unwrap(),
            0.0,
            "eigenvectors",
        );
    }
}

#[test]
fn eigh_reads_float16_and_float32_inputs_and_honours_the_output_dtype() {
    let dir = tempfile::tempdir().unwrap();
    let a = samples::random_symmetric(&mut Rng::new(2), N, 3);
    let a16: Vec<f16> = a.iter().map(|&x| f16::from_f64(x)).collect();
    let a32: Vec<f32> = a.iter().map(|&x| x as f32).collect();
    let (in16, in32) = (dir.path().join("a16.npy"), dir.path().join("a32.npy"));
    write_npy(&in16, &[3, 4, 4], &a16);
    write_npy(&in32, &[3, 4, 4], &a32);
    let opts = EighOptions::default();

    // float16 in, default (float64 on the CPU) out: exactly the library's result on the f16 data.
    let out = dir.path().join("o16");
    eigh_cpu(&in16, &out, &[]).assert_ok();
    let want = cpu::tridiagonal_eigh(&a16, N, &opts).unwrap();
    let w = read_floats(&out.join("eigenvalues.npy"));
    assert_eq!(w.descr, "'<f8'");
    assert_close(&w.data, &want.eigenvalues, 0.0, "f16 input eigenvalues");

    // float32 in, each output dtype: the f64 result rounded once.
    let want = cpu::tridiagonal_eigh(&a32, N, &opts).unwrap();
    for (dtype, descr, round) in [
        (
            "f16",
            "'<f2'",
            (|x: f64| f16::from_f64(x).to_f64()) as fn(f64) -> f64,
        ),
        ("f32", "'<f4'", |x: f64| x as f32 as f64),
        ("f64", "'<f8'", |x: f64| x),
    ] {
        let out = dir.path().join(format!("o32-{dtype}"));
        let r = cli(&[
            "eigh",
            "--input",
            &p(&in32),
            "--out-dir",
            &p(&out),
            "--device",
            "cpu",
            "--output-dtype",
            dtype,
        ]);
        r.assert_ok();
        for (file, data) in [
            ("eigenvalues.npy", &want.eigenvalues),
            ("eigenvectors.npy", want.eigenvectors.as_ref().unwrap()),
        ] {
            let got = read_floats(&out.join(file));
            assert_eq!(got.descr, descr, "{file} as {dtype}");
            let rounded: Vec<f64> = data.iter().map(|&x| round(x)).collect();
            assert_close(&got.data, &rounded, 0.0, file);
        }
        assert_eq!(read_i32(&out.join("status.npy")).1, vec![0; 3]);
    }
}

#[test]
fn eigh_values_only_writes_no_eigenvectors_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = samples::random_symmetric(&mut Rng::new(3), N, 2);
    let input = dir.path().join("a.npy");
    write_npy(&input, &[2, 4, 4], &a);
    let out = dir.path().join("out");
    cli(&[
        "eigh",
        "--input",
        &p(&input),
        "--out-dir",
        &p(&out),
        "--device",
        "cpu",
        "--values-only",
    ])
    .assert_ok();
    assert_eq!(listing(&out), ["eigenvalues.npy", "status.npy"]);
    let want = cpu::tridiagonal_eigvalsh(&a, N, &EighOptions::default()).unwrap();
    assert_close(
        &read_floats(&out.join("eigenvalues.npy")).data,
        &want.eigenvalues,
        0.0,
        "eigenvalues",
    );
}

#[test]
fn eigh_lower_symmetry_reads_only_the_lower_triangle() {
    let dir = tempfile::tempdir().unwrap();
    // A non-symmetric input: the two options must give the library's two different answers.
    let a = normals(4, 2 * N * N);
    let input = dir.path().join("a.npy");
    write_npy(&input, &[2, 4, 4], &a);
    for (flag, symmetry) in [
        ("symmetrize", Symmetry::Symmetrize),
        ("lower", Symmetry::Lower),
    ] {
        let out = dir.path().join(flag);
        cli(&[
            "eigh",
            "--input",
            &p(&input),
            "--out-dir",
            &p(&out),
            "--device",
            "cpu",
            "--symmetry",
            flag,
        ])
        .assert_ok();
        let opts = EighOptions {
            symmetry,
            ..EighOptions::default()
        };
        let want = cpu::tridiagonal_eigh(&a, N, &opts).unwrap();
        assert_close(
            &read_floats(&out.join("eigenvalues.npy")).data,
            &want.eigenvalues,
            0.0,
            flag,
        );
    }
    let s = read_floats(&dir.path().join("symmetrize/eigenvalues.npy")).data;
    let l = read_floats(&dir.path().join("lower/eigenvalues.npy")).data;
    assert_ne!(s, l, "--symmetry had no effect");
}

#[test]
fn eigh_of_a_single_matrix_writes_vector_eigenvalues_and_a_scalar_status() {
    let dir = tempfile::tempdir().unwrap();
    let a = samples::random_symmetric(&mut Rng::new(5), 3, 1);
    let input = dir.path().join("a.npy");
    write_npy(&input, &[3, 3], &a);
    let out = dir.path().join("out");
    eigh_cpu(&input, &out, &[]).assert_ok();
    assert_eq!(read_floats(&out.join("eigenvalues.npy")).shape, vec![3]);
    assert_eq!(read_floats(&out.join("eigenvectors.npy")).shape, vec![3, 3]);
    assert_eq!(read_i32(&out.join("status.npy")), (vec![], vec![0]));
}

#[test]
fn a_non_finite_matrix_gets_status_1_and_nan_outputs_without_failing_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = samples::random_symmetric(&mut Rng::new(6), N, 3);
    a[N * N + 5] = f64::NAN;
    let input = dir.path().join("a.npy");
    write_npy(&input, &[3, 4, 4], &a);
    let out = dir.path().join("out");
    let r = eigh_cpu(&input, &out, &[]);
    r.assert_ok();
    assert!(r.stderr.contains("warning:"), "{}", r.stderr);
    assert_eq!(read_i32(&out.join("status.npy")).1, vec![0, 1, 0]);
    let w = read_floats(&out.join("eigenvalues.npy")).data;
    assert!(w[N..2 * N].iter().all(|x| x.is_nan()));
    assert!(w[..N].iter().chain(&w[2 * N..]).all(|x| x.is_finite()));
}

#[test]
fn eigh_creates_a_missing_out_dir() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("a.npy");
    write_npy(
        &input,
        &[4, 4],
        &samples::random_symmetric(&mut Rng::new(7), N, 1),
    );
    let out = dir.path().join("x/y/z");
    eigh_cpu(&input, &out, &[]).assert_ok();
    assert_eq!(
        listing(&out),
        ["eigenvalues.npy", "eigenvectors.npy", "status.npy"]
    );
}

// ---------------------------------------------------------------------------------------------
// vjp and jvp

/// Writes A (2, 3, 4, 4) with separated spectra and cotangents; returns (A, λ̄, V̄) and paths.
fn vjp_fixture(dir: &Path) -> (Vec<f64>, Vec<f64>, Vec<f64>, PathBuf, PathBuf, PathBuf) {
    let a = separated(8, N, 6);
    let gw = normals(9, 6 * N);
    let gv = normals(10, 6 * N * N);
    let (pa, pw, pv) = (dir.join("a.npy"), dir.join("gw.npy"), dir.join("gv.npy"));
    write_npy(&pa, &[2, 3, 4, 4], &a);
    write_npy(&pw, &[2, 3, 4], &gw);
    write_npy(&pv, &[2, 3, 4, 4], &gv);
    (a, gw, gv, pa, pw, pv)
}

#[test]
fn vjp_matches_the_library_for_both_cotangents_and_for_each_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (a, gw, gv, pa, pw, pv) = vjp_fixture(dir.path());
    let eig = cpu::jacobi_eigh(&a, N, &EighOptions::default()).unwrap();
    let out = dir.path().join("ga.npy");
    let cases: [(&[&str], Vec<f64>); 3] = [
        (
            &[
                "--grad-eigenvalues",
                &p(&pw),
                "--grad-eigenvectors",
                &p(&pv),
            ],
            cpu::eigh_vjp(&eig, Some(&gw), Some(&gv), Degeneracy::default()).unwrap(),
        ),
        (
            &["--grad-eigenvalues", &p(&pw)],
            cpu::eigvalsh_vjp(&eig, &gw).unwrap(),
        ),
        (
            &["--grad-eigenvectors", &p(&pv)],
            cpu::eigh_vjp(&eig, None, Some(&gv), Degeneracy::default()).unwrap(),
        ),
    ];
    for (grads, want) in cases {
        let mut args: Vec<String> = vec![
            "vjp".into(),
            "--input".into(),
            p(&pa),
            "--output".into(),
            p(&out),
        ];
        args.extend(
            ["--device", "cpu"]
                .iter()
                .chain(grads)
                .map(|s| s.to_string()),
        );
        cli(&args).assert_ok();
        let got = read_floats(&out);
        assert_eq!(
            (got.shape.as_slice(), got.descr.as_str()),
            (&[2u64, 3, 4, 4][..], "'<f8'")
        );
        assert_close(&got.data, &want, 0.0, &format!("vjp {grads:?}"));
    }
}

#[test]
fn vjp_degeneracy_options_reach_the_library() {
    let dir = tempfile::tempdir().unwrap();
    // A repeated eigenvalue, so that the three policies give different answers.
    let mut rng = Rng::new(11);
    let a = samples::with_spectrum(&mut rng, &[1.0, 1.0, 2.0, 3.5]);
    let gv = normals(12, N * N);
    let (pa, pv) = (dir.path().join("a.npy"), dir.path().join("gv.npy"));
    write_npy(&pa, &[4, 4], &a);
    write_npy(&pv, &[4, 4], &gv);
    let eig = cpu::jacobi_eigh(&a, N, &EighOptions::default()).unwrap();
    let out = dir.path().join("ga.npy");
    let cases: [(&[&str], Degeneracy); 5] = [
        (&[], Degeneracy::Mask { rel_tol: None }),
        (
            &["--degeneracy", "mask", "--degeneracy-tol", "0.3"],
            Degeneracy::Mask { rel_tol: Some(0.3) },
        ),
        (
            &["--degeneracy", "lorentzian", "--degeneracy-tol", "1e-3"],
            Degeneracy::Lorentzian { eps: 1e-3 },
        ),
        (
            &["--degeneracy", "lorentzian"],
            Degeneracy::Lorentzian { eps: 1e-12 },
        ),
        (&["--degeneracy", "propagate"], Degeneracy::Propagate),
    ];
    for (flags, policy) in cases {
        let mut args: Vec<String> = [
            "vjp",
            "--input",
            &p(&pa),
            "--grad-eigenvectors",
            &p(&pv),
            "--output",
            &p(&out),
            "--device",
            "cpu",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(flags.iter().map(|s| s.to_string()));
        cli(&args).assert_ok();
        let want = cpu::eigh_vjp(&eig, None, Some(&gv), policy).unwrap();
        assert_close(&read_floats(&out).data, &want, 0.0, &format!("{flags:?}"));
    }
}

#[test]
fn vjp_without_any_gradient_is_a_usage_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, _, pa, _, _) = vjp_fixture(dir.path());
    let out = dir.path().join("ga.npy");
    let r = cli(&[
        "vjp",
        "--input",
        &p(&pa),
        "--output",
        &p(&out),
        "--device",
        "cpu",
    ]);
    r.assert_error("--grad-eigen");
    assert!(!out.exists());
}

#[test]
fn vjp_rejects_gradients_of_the_wrong_shape_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_, gw, gv, pa, _, _) = vjp_fixture(dir.path());
    let (bad_w, bad_v) = (dir.path().join("bw.npy"), dir.path().join("bv.npy"));
    write_npy(&bad_w, &[6, 4], &gw); // (6, 4) instead of (2, 3, 4)
    write_npy(&bad_v, &[2, 3, 16], &gv); // (2, 3, 16) instead of (2, 3, 4, 4)
    let out = dir.path().join("ga.npy");
    let r = cli(&[
        "vjp",
        "--input",
        &p(&pa),
        "--grad-eigenvalues",
        &p(&bad_w),
        "--output",
        &p(&out),
        "--device",
        "cpu",
    ]);
    r.assert_error("(2, 3, 4)");
    assert!(r.stderr.contains("--grad-eigenvalues"), "{}", r.stderr);
    let r = cli(&[
        "vjp",
        "--input",
        &p(&pa),
        "--grad-eigenvectors",
        &p(&bad_v),
        "--output",
        &p(&out),
        "--device",
        "cpu",
    ]);
    r.assert_error("(2, 3, 4, 4)");
    assert!(!out.exists());
    // A gradient file of a bad dtype is rejected like an input.
    let int_w = dir.path().join("iw.npy");
    write_npy(&int_w, &[2, 3, 4], &[1i32; 24]);
    let r = cli(&[
        "vjp",
        "--input",
        &p(&pa),
        "--grad-eigenvalues",
        &p(&int_w),
        "--output",
        &p(&out),
        "--device",
        "cpu",
    ]);
    r.assert_error("integer");
    assert!(!out.exists());
}

#[test]
fn vjp_rejects_meaningless_or_negative_degeneracy_tolerances() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, _, pa, pw, _) = vjp_fixture(dir.path());
    let out = dir.path().join("ga.npy");
    for (flags, needle) in [
        (
            ["--degeneracy", "propagate", "--degeneracy-tol", "0.1"],
            "propagate",
        ),
        (
            ["--degeneracy", "mask", "--degeneracy-tol", "-1"],
            "--degeneracy-tol: invalid argument: mask tolerance",
        ),
        (
            ["--degeneracy", "mask", "--degeneracy-tol", "-inf"],
            "--degeneracy-tol: invalid argument: mask tolerance must be finite",
        ),
        (
            ["--degeneracy", "lorentzian", "--degeneracy-tol", "0"],
            "eps",
        ),
        (
            ["--degeneracy", "median", "--degeneracy-tol", "1"],
            "median",
        ),
    ] {
        let mut args: Vec<String> = [
            "vjp",
            "--input",
            &p(&pa),
            "--grad-eigenvalues",
            &p(&pw),
            "--output",
            &p(&out),
            "--device",
            "cpu",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(flags.iter().map(|s| s.to_string()));
        cli(&args).assert_error(needle);
        assert!(!out.exists());
    }
}

#[test]
fn jvp_matches_the_library_and_rejects_a_mismatched_tangent() {
    let dir = tempfile::tempdir().unwrap();
    let a = separated(13, N, 6);
    let da = normals(14, 6 * N * N);
    let (pa, pt) = (dir.path().join("a.npy"), dir.path().join("da.npy"));
    write_npy(&pa, &[3, 2, 4, 4], &a);
    write_npy(&pt, &[3, 2, 4, 4], &da);
    let out = dir.path().join("out");
    cli(&[
        "jvp",
        "--input",
        &p(&pa),
        "--tangent",
        &p(&pt),
        "--out-dir",
        &p(&out),
        "--device",
        "cpu",
    ])
    .assert_ok();
    let eig = cpu::jacobi_eigh(&a, N, &EighOptions::default()).unwrap();
    let want = cpu::eigh_jvp(&eig, &da, Degeneracy::default()).unwrap();
    let wd = read_floats(&out.join("eigenvalues_dot.npy"));
    assert_eq!(
        (wd.shape.as_slice(), wd.descr.as_str()),
        (&[3u64, 2, 4][..], "'<f8'")
    );
    assert_close(&wd.data, &want.values_dot, 0.0, "eigenvalues_dot");
    let vd = read_floats(&out.join("eigenvectors_dot.npy"));
    assert_eq!(vd.shape, vec![3, 2, 4, 4]);
    assert_close(&vd.data, &want.vectors_dot, 0.0, "eigenvectors_dot");
    assert_eq!(
        listing(&out),
        ["eigenvalues_dot.npy", "eigenvectors_dot.npy"]
    );

    let bad = dir.path().join("bad.npy");
    write_npy(&bad, &[6, 4, 4], &da);
    let out2 = dir.path().join("out2");
    let r = cli(&[
        "jvp",
        "--input",
        &p(&pa),
        "--tangent",
        &p(&bad),
        "--out-dir",
        &p(&out2),
        "--device",
        "cpu",
    ]);
    r.assert_error("--tangent");
    assert!(!out2.exists());
}

// ---------------------------------------------------------------------------------------------
// spectral

#[test]
fn spectral_matches_the_library_or_fails_cleanly_while_the_library_lacks_it() {
    let dir = tempfile::tempdir().unwrap();
    // Positive definite input (spectrum in [0.5, 4.5]) for sqrt.
    let a: Vec<f64> = separated(15, N, 2)
        .chunks(N * N)
        .flat_map(|m| {
            let mut m = m.to_vec();
            for i in 0..N {
                m[i * N + i] += 1.5;
            }
            m
        })
        .collect();
    let g = normals(16, 2 * N * N);
    let (pa, pg) = (dir.path().join("a.npy"), dir.path().join("g.npy"));
    write_npy(&pa, &[2, 4, 4], &a);
    write_npy(&pg, &[2, 4, 4], &g);
    let (out, gout) = (dir.path().join("f.npy"), dir.path().join("ga.npy"));
    let r = cli(&[
        "spectral",
        "--function",
        "sqrt",
        "--input",
        &p(&pa),
        "--output",
        &p(&out),
        "--grad",
        &p(&pg),
        "--grad-output",
        &p(&gout),
        "--device",
        "cpu",
    ]);
    let opts = EighOptions::default();
    match cpu::spectral(&a, N, SpectralFn::Sqrt, &opts) {
        Ok(s) => {
            r.assert_ok();
            let f = read_floats(&out);
            assert_eq!(
                (f.shape.as_slice(), f.descr.as_str()),
                (&[2u64, 4, 4][..], "'<f8'")
            );
            assert_close(&f.data, &s.values, 0.0, "sqrt(A)");
            let want = cpu::spectral_vjp(&s, &g).unwrap();
            assert_close(&read_floats(&gout).data, &want, 0.0, "spectral VJP");
        }
        Err(e) => {
            r.assert_error(&e.to_string());
            assert!(!out.exists() && !gout.exists());
        }
    }
}

#[test]
fn spectral_rejects_a_lone_grad_flag_and_an_unknown_function() {
    let dir = tempfile::tempdir().unwrap();
    let pa = dir.path().join("a.npy");
    write_npy(&pa, &[4, 4], &separated(17, N, 1));
    let out = dir.path().join("f.npy");
    let r = cli(&[
        "spectral",
        "--function",
        "exp",
        "--input",
        &p(&pa),
        "--output",
        &p(&out),
        "--grad",
        &p(&pa),
    ]);
    r.assert_error("--grad-output");
    let r = cli(&[
        "spectral",
        "--function",
        "exp",
        "--input",
        &p(&pa),
        "--output",
        &p(&out),
        "--grad-output",
        &p(&dir.path().join("g.npy")),
    ]);
    r.assert_error("--grad");
    let r = cli(&[
        "spectral",
        "--function",
        "cbrt",
        "--input",
        &p(&pa),
        "--output",
        &p(&out),
    ]);
    r.assert_error("cbrt");
    for (function, needle) in [
        ("pow:x", "the exponent of pow must be a number, got 'x'"),
        ("pow:nan", "the exponent of pow must be finite"),
        ("pow:-inf", "the exponent of pow must be finite"),
    ] {
        let r = cli(&[
            "spectral",
            "--function",
            function,
            "--input",
            &p(&pa),
            "--output",
            &p(&out),
        ]);
        r.assert_error(needle);
    }
    // Counts and seeds that are negative reach their parsers (not taken for flags).
    for (flag, needle) in [("--n", "at least 1"), ("--seed", "whole number")] {
        cli(&["check", flag, "-1", "--device", "cpu"]).assert_error(needle);
    }
    // Inputs that are not files.
    let r = cli(&["eigh", "--input", &p(dir.path()), "--out-dir", &p(&out)]);
    r.assert_error("it is a directory");
    assert_eq!(listing(dir.path()), ["a.npy"]);
}

// ---------------------------------------------------------------------------------------------
// Bad inputs: exit 2, `error:` naming the problem, no output.

#[test]
fn bad_inputs_are_rejected_with_a_message_naming_the_problem_and_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = samples::random_symmetric(&mut Rng::new(18), N, 2);
    let mut cases: Vec<(PathBuf, &str)> = Vec::new();
    let mut case = |name: &str, needle: &'static str, make: &dyn Fn(&Path)| {
        let path = d.join(name);
        make(&path);
        cases.push((path, needle));
    };
    case("int32.npy", "integer", &|f| {
        write_npy(f, &[2, 4, 4], &[1i32; 32])
    });
    case("uint8.npy", "integer", &|f| {
        write_npy(f, &[4, 4], &[1u8; 16])
    });
    case("bool.npy", "boolean", &|f| {
        write_raw(f, "|b1", &[2, 4, 4], &[0u8; 32])
    });
    case("complex.npy", "complex", &|f| {
        write_raw(f, "<c8", &[2, 4, 4], &[0u8; 2 * 16 * 8])
    });
    case("fortran.npy", "fortran", &|f| {
        write_fortran(f, &[2, 4, 4], &good)
    });
    case("rank1.npy", "at least 2 dimensions", &|f| {
        write_npy(f, &[4], &good[..4])
    });
    case("nonsquare.npy", "not square", &|f| {
        write_npy(f, &[2, 3, 4], &good[..24])
    });
    case("empty.npy", "n = 0", &|f| {
        write_npy::<f64>(f, &[2, 0, 0], &[])
    });
    case("truncated.npy", "truncated", &|f| {
        write_npy(f, &[2, 4, 4], &good);
        let len = std::fs::metadata(f).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(f)
            .unwrap()
            .set_len(len - 9)
            .unwrap();
    });
    case("trailing.npy", "stray bytes", &|f| {
        write_npy(f, &[2, 4, 4], &good);
        std::fs::OpenOptions::new()
            .append(true)
            .open(f)
            .unwrap()
            .write_all(b"xyz")
            .unwrap();
    });
    case("header-cut.npy", "not a valid .npy", &|f| {
        write_npy(f, &[2, 4, 4], &good);
        std::fs::OpenOptions::new()
            .write(true)
            .open(f)
            .unwrap()
            .set_len(30)
            .unwrap();
    });
    case("garbage.npy", "not a valid .npy", &|f| {
        std::fs::write(f, b"this is not a numpy file at all\n").unwrap()
    });
    cases.push((d.join("missing.npy"), "cannot read"));

    for (path, needle) in &cases {
        let out = d.join("out");
        let r = cli(&[
            "eigh",
            "--input",
            &p(path),
            "--out-dir",
            &p(&out),
            "--device",
            "cpu",
        ]);
        r.assert_error(needle);
        assert!(
            r.stderr.contains(&p(path)),
            "the message should name the file:\n{}",
            r.stderr
        );
        assert!(
            !out.exists(),
            "{}: output directory left behind",
            path.display()
        );
        // The same file as the input of the other file commands.
        let ga = d.join("ga.npy");
        cli(&[
            "vjp",
            "--input",
            &p(path),
            "--grad-eigenvalues",
            &p(path),
            "--output",
            &p(&ga),
            "--device",
            "cpu",
        ])
        .assert_error(needle);
        cli(&[
            "jvp",
            "--input",
            &p(path),
            "--tangent",
            &p(path),
            "--out-dir",
            &p(&out),
            "--device",
            "cpu",
        ])
        .assert_error(needle);
        cli(&[
            "spectral",
            "--function",
            "exp",
            "--input",
            &p(path),
            "--output",
            &p(&ga),
            "--device",
            "cpu",
        ])
        .assert_error(needle);
        assert!(!ga.exists() && !out.exists());
    }
    // Nothing but the fixtures: no outputs, no temporaries.
    assert_eq!(listing(d).len(), cases.len() - 1);
}

#[test]
fn a_failure_while_writing_leaves_no_partial_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("a.npy");
    write_npy(
        &input,
        &[2, 4, 4],
        &samples::random_symmetric(&mut Rng::new(19), N, 2),
    );
    // eigenvectors.npy cannot be replaced (it is a non-empty directory): eigenvalues.npy and
    // status.npy must not appear either, and no temporary may remain.
    let out = dir.path().join("out");
    std::fs::create_dir_all(out.join("eigenvectors.npy/keep")).unwrap();
    let r = eigh_cpu(&input, &out, &[]);
    r.assert_error("eigenvectors.npy");
    assert_eq!(listing(&out), ["eigenvectors.npy"]);
    // An --output in a directory that does not exist.
    let ga = dir.path().join("nowhere/ga.npy");
    let r = cli(&[
        "vjp",
        "--input",
        &p(&input),
        "--grad-eigenvalues",
        &p(&input),
        "--output",
        &p(&ga),
        "--device",
        "cpu",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(!dir.path().join("nowhere").exists());
    // Earlier outputs in place, and status.npy a directory: the command fails before it
    // replaces anything (it used to replace the first two, then delete them).
    let out = dir.path().join("out2");
    std::fs::create_dir_all(out.join("status.npy/keep")).unwrap();
    for name in ["eigenvalues.npy", "eigenvectors.npy"] {
        std::fs::write(out.join(name), "OLD").unwrap();
    }
    let r = eigh_cpu(&input, &out, &[]);
    r.assert_error("status.npy: it is a directory");
    assert_eq!(
        listing(&out),
        ["eigenvalues.npy", "eigenvectors.npy", "status.npy"]
    );
    for name in ["eigenvalues.npy", "eigenvectors.npy"] {
        assert_eq!(std::fs::read_to_string(out.join(name)).unwrap(), "OLD");
    }
    // The same for the spectral command's two outputs.
    let f = dir.path().join("f.npy");
    std::fs::write(&f, "OLD").unwrap();
    spectral_exp(&input, &p(&f), Some(&out)).assert_error("is a directory");
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "OLD");
    // An --out-dir that is a file.
    let r = eigh_cpu(&input, &f, &[]);
    r.assert_error("is not a directory");
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "OLD");
}

/// `eigrad eigh` of `input` on the CPU into `out`, with the `extra` arguments.
fn eigh_cpu(input: &Path, out: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["eigh".to_string(), "--input".into(), p(input)];
    args.extend(["--out-dir".into(), p(out), "--device".into(), "cpu".into()]);
    args.extend(extra.iter().map(|x| x.to_string()));
    cli(&args)
}

/// `eigrad spectral --function exp` of `input` on the CPU into `output`, and with `--grad input
/// --grad-output G` where `grad_output` is given.
fn spectral_exp(input: &Path, output: &str, grad_output: Option<&Path>) -> Run {
    let mut args: Vec<String> = ["spectral", "--function", "exp", "--device", "cpu"]
        .map(String::from)
        .to_vec();
    args.extend(["--input".into(), p(input), "--output".into(), output.into()]);
    if let Some(g) = grad_output {
        args.extend(["--grad".into(), p(input), "--grad-output".into(), p(g)]);
    }
    cli(&args)
}

#[test]
fn outputs_naming_one_file_twice_are_refused_and_links_are_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("a.npy");
    let a = samples::random_symmetric(&mut Rng::new(20), N, 2);
    write_npy(&input, &[2, 4, 4], &a);
    // The same file spelt two ways.
    let f = dir.path().join("f.npy");
    let again = dir.path().join(".").join("f.npy");
    spectral_exp(&input, &p(&f), Some(&again)).assert_error("are the same file");
    assert!(!f.exists());
    // An output that is a symbolic link: the file it points to gets the result, the link stays.
    let target = dir.path().join("target.npy");
    std::fs::write(&target, "OLD").unwrap();
    let link = dir.path().join("link.npy");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let r = spectral_exp(&input, &p(&link), None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(read_floats(&target).shape, [2, 4, 4]);
    // A device file cannot take the temporary-then-rename write.
    spectral_exp(&input, "/dev/null", None).assert_error("not a regular file");
    // --values-only next to an earlier run's eigenvectors: a warning.
    let out = dir.path().join("out");
    assert_eq!(eigh_cpu(&input, &out, &[]).code, 0);
    let r = eigh_cpu(&input, &out, &["--values-only"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("eigenvectors.npy is from an earlier run"),
        "{}",
        r.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// Devices

#[test]
fn an_unknown_device_is_a_usage_error() {
    cli(&["demo", "--device", "tpu"]).assert_error("tpu");
    cli(&["check", "--n", "0"]).assert_error("at least 1");
    cli(&["frobnicate"]).assert_error("frobnicate");
}

#[test]
fn device_gpu_either_runs_on_the_gpu_or_fails_cleanly_without_an_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let a = separated(20, N, 3);
    let input = dir.path().join("a.npy");
    write_npy(&input, &[3, 4, 4], &a);
    let out = dir.path().join("out");
    let r = cli(&[
        "eigh",
        "--input",
        &p(&input),
        "--out-dir",
        &p(&out),
        "--device",
        "gpu",
    ]);
    if r.code == 0 {
        assert_eq!(r.device(), "gpu");
        let want = cpu::jacobi_eigh(&a, N, &EighOptions::default()).unwrap();
        let w = read_floats(&out.join("eigenvalues.npy"));
        assert_eq!(w.descr, "'<f4'");
        assert_close(
            &w.data,
            &want.eigenvalues,
            8.0 * N as f64 * EPS32 * 4.0,
            "gpu eigenvalues",
        );
        // A float64 entry beyond the float32 range: its matrix gets status 1 on the GPU, and
        // the command says why.
        let mut big = a.clone();
        big[N * N] = 1e300;
        write_npy(&input, &[3, 4, 4], &big);
        let r = cli(&["eigh", "--input", &p(&input), "--out-dir", &p(&out)]);
        r.assert_ok();
        assert!(
            r.stderr
                .contains("1 finite float64 entries are outside the float32 range"),
            "{}",
            r.stderr
        );
        assert_eq!(read_i32(&out.join("status.npy")).1, [0, 1, 0]);
        // Non-zero entries below it read as 0: said too (a matrix of them is the zero matrix).
        let mut tiny = a.clone();
        tiny[2 * N * N..].iter_mut().for_each(|x| *x *= 1e-50);
        write_npy(&input, &[3, 4, 4], &tiny);
        let r = cli(&["eigh", "--input", &p(&input), "--out-dir", &p(&out)]);
        r.assert_ok();
        assert!(
            r.stderr.contains(&format!(
                "{} non-zero float64 entries are below the float32 range and read as 0",
                tiny[2 * N * N..].iter().filter(|&&x| x != 0.0).count()
            )),
            "{}",
            r.stderr
        );
    } else {
        r.assert_error("gpu");
        assert!(!out.exists());
    }
}

#[test]
fn device_gpu_rejects_matrices_larger_than_64_and_auto_falls_back_to_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let a = samples::random_symmetric(&mut Rng::new(21), 65, 1);
    let input = dir.path().join("a.npy");
    write_npy(&input, &[65, 65], &a);
    let out = dir.path().join("out");
    let r = cli(&[
        "eigh",
        "--input",
        &p(&input),
        "--out-dir",
        &p(&out),
        "--device",
        "gpu",
    ]);
    r.assert_error("64");
    assert!(!out.exists());
    let r = cli(&[
        "eigh",
        "--input",
        &p(&input),
        "--out-dir",
        &p(&out),
        "--values-only",
    ]);
    r.assert_ok();
    assert_eq!(r.device(), "cpu");
    assert!(r.stderr.contains("64"), "{}", r.stderr);
    let w = read_floats(&out.join("eigenvalues.npy"));
    assert_eq!(w.descr, "'<f8'");
    let want = cpu::tridiagonal_eigvalsh(&a, 65, &EighOptions::default()).unwrap();
    assert_close(&w.data, &want.eigenvalues, 0.0, "n = 65 eigenvalues");
}

#[test]
fn device_auto_says_which_device_ran_and_matches_the_cpu_reference() {
    let dir = tempfile::tempdir().unwrap();
    let (a, gw, gv, pa, pw, pv) = vjp_fixture(dir.path());
    let opts = EighOptions::default();
    let eig = cpu::jacobi_eigh(&a, N, &opts).unwrap();
    let rel = |got: &[f64], want: &[f64]| {
        let num: f64 = got.iter().zip(want).map(|(x, y)| (x - y).powi(2)).sum();
        let den: f64 = want.iter().map(|y| y * y).sum();
        (num / den).sqrt()
    };

    let out = dir.path().join("out");
    let r = cli(&["eigh", "--input", &p(&pa), "--out-dir", &p(&out)]);
    r.assert_ok();
    let on_gpu = r.device() == "gpu";
    // `eigh` on the CPU uses the fast tridiagonal solver (bitwise), the GPU is compared with the
    // reference; the derivative commands recompute the forward with the reference.
    let eigh_want = if on_gpu {
        eig.clone()
    } else {
        cpu::tridiagonal_eigh(&a, N, &opts).unwrap()
    };
    let (descr, tol) = if on_gpu {
        ("'<f4'", 1e-4)
    } else {
        ("'<f8'", 0.0)
    };
    let w = read_floats(&out.join("eigenvalues.npy"));
    assert_eq!(w.descr, descr);
    assert_close(
        &w.data,
        &eigh_want.eigenvalues,
        8.0 * N as f64 * EPS32 * 4.0 * f64::from(on_gpu),
        "eigenvalues",
    );
    let v = read_floats(&out.join("eigenvectors.npy"));
    assert_close(
        &v.data,
        eigh_want.eigenvectors.as_ref().unwrap(),
        tol,
        "eigenvectors (same sign gauge)",
    );

    let ga = dir.path().join("ga.npy");
    let r = cli(&[
        "vjp",
        "--input",
        &p(&pa),
        "--grad-eigenvalues",
        &p(&pw),
        "--grad-eigenvectors",
        &p(&pv),
        "--output",
        &p(&ga),
    ]);
    r.assert_ok();
    assert_eq!(r.device(), if on_gpu { "gpu" } else { "cpu" });
    let want = cpu::eigh_vjp(&eig, Some(&gw), Some(&gv), Degeneracy::default()).unwrap();
    let got = read_floats(&ga);
    assert_eq!(got.descr, descr);
    assert!(
        rel(&got.data, &want) <= tol,
        "vjp relative error {}",
        rel(&got.data, &want)
    );

    let da = normals(22, 6 * N * N);
    let pt = dir.path().join("da.npy");
    write_npy(&pt, &[2, 3, 4, 4], &da);
    let jout = dir.path().join("jvp");
    cli(&[
        "jvp",
        "--input",
        &p(&pa),
        "--tangent",
        &p(&pt),
        "--out-dir",
        &p(&jout),
    ])
    .assert_ok();
    let want = cpu::eigh_jvp(&eig, &da, Degeneracy::default()).unwrap();
    let got = read_floats(&jout.join("eigenvectors_dot.npy"));
    assert!(
        rel(&got.data, &want.vectors_dot) <= tol,
        "jvp relative error"
    );
}

#[test]
fn progress_and_logs_stay_off_a_piped_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("a.npy");
    write_npy(&input, &[4, 4], &separated(23, N, 1));
    let r = cli(&[
        "eigh",
        "--input",
        &p(&input),
        "--out-dir",
        &p(&dir.path().join("o")),
        "--device",
        "cpu",
    ]);
    r.assert_ok();
    assert_eq!(r.stderr, "device: cpu\n");
    assert_eq!(r.stdout, "");
}

// ---------------------------------------------------------------------------------------------
// demo, check, bench

#[test]
fn plain_eigrad_runs_the_demo() {
    let r = cli::<&str>(&[]);
    r.assert_ok();
    r.device();
    for needle in [
        "eigrad demo",
        "4096",
        "matrices per second",
        "eigenvalue error",
        "VJP error",
        "result: pass",
    ] {
        assert!(
            r.stdout.contains(needle),
            "{needle:?} missing from:\n{}",
            r.stdout
        );
    }
}

#[test]
fn demo_on_the_cpu_reports_accuracy_and_throughput() {
    let r = cli(&["demo", "--n", "5", "--batch", "300", "--device", "cpu"]);
    r.assert_ok();
    assert_eq!(r.device(), "cpu");
    for needle in [
        "300 sample covariance matrices (5×5",
        "cpu f64 reference",
        "residual",
        "orthogonality",
        "per matrix ≤ max(1e-4, 16·n·eps/gap)",
        "result: pass",
    ] {
        assert!(
            r.stdout.contains(needle),
            "{needle:?} missing from:\n{}",
            r.stdout
        );
    }
    // The VJP is judged too (ok or FAIL on its line), not only printed.
    let vjp = r.stdout.lines().find(|l| l.contains("worst error / bound"));
    assert!(
        vjp.is_some_and(|l| l.trim_end().ends_with("ok")),
        "{}",
        r.stdout
    );
}

#[test]
fn check_on_the_cpu_passes_every_size_and_says_it_checks_f32_io() {
    let r = cli(&[
        "check",
        "--device",
        "cpu",
        "--n",
        "1,2,3,8,17",
        "--batch",
        "8",
        "--seed",
        "3",
    ]);
    r.assert_ok();
    assert!(
        r.stdout.contains("f32 input and f32 outputs"),
        "{}",
        r.stdout
    );
    let rows: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.contains(" cpu ") && l.trim_end().ends_with("pass"))
        .collect();
    assert_eq!(rows.len(), 5, "{}", r.stdout);
    assert!(r.stdout.contains("all 5 sizes pass"));
}

#[test]
fn check_with_auto_passes_and_runs_sizes_above_64_on_the_cpu() {
    let r = cli(&["check", "--n", "2,7,65", "--batch", "4"]);
    r.assert_ok();
    let row65 = r
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("65 "))
        .expect("row for n = 65");
    assert!(row65.contains("cpu") && row65.ends_with("pass"), "{row65}");
    // The kernel column: `-` on the CPU; on the GPU Auto's register kernel at n = 2 and 7.
    assert_eq!(row65.split_whitespace().nth(2), Some("-"), "{row65}");
    for n in ["2", "7"] {
        let row = (r.stdout.lines())
            .find(|l| l.split_whitespace().next() == Some(n))
            .expect("row");
        let cols: Vec<&str> = row.split_whitespace().collect();
        if cols[1] == "gpu" && std::env::var_os("EIGRAD_GPU_FORWARD").is_none() {
            assert_eq!(cols[2], "registers", "{row}");
        }
    }
}

#[test]
fn bench_prints_end_to_end_throughput_and_writes_json() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let r = cli(&[
        "bench",
        "--device",
        "cpu",
        "--n",
        "2,3",
        "--batch",
        "16",
        "--json",
        &p(&json),
    ]);
    r.assert_ok();
    assert!(
        r.stdout.contains("eigh e2e") && r.stdout.contains("vjp e2e"),
        "{}",
        r.stdout
    );
    let text = std::fs::read_to_string(&json).unwrap();
    assert_eq!(text.matches("\"op\"").count(), 6, "{text}");
    for needle in [
        "\"eigh\"",
        "\"eigvalsh\"",
        "\"vjp\"",
        "\"end_to_end\"",
        "\"matrices_per_second\"",
        "\"batch\": 16",
    ] {
        assert!(text.contains(needle), "{needle} missing from {text}");
    }
    assert_eq!(listing(dir.path()), ["bench.json"]);

    let r = cli(&[
        "bench",
        "--device",
        "cpu",
        "--n",
        "2",
        "--json",
        &p(&dir.path().join("no/such/dir.json")),
    ]);
    r.assert_error("does not exist");
}

#[test]
fn values_a_narrower_output_dtype_cannot_hold_are_status_3_not_infinity() {
    // diag(1e5, 1, 2) beside diag(1, 2, 3): 1e5 is beyond f16 (largest 65504).
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("a.npy");
    // Two 3×3 diagonal matrices, diag(first, 1, 2) and diag(1, 2, 3).
    let write_diagonals = |first: f64| {
        let mut a = vec![0f64; 18];
        for (i, d) in [first, 1.0, 2.0, 1.0, 2.0, 3.0].into_iter().enumerate() {
            a[(i / 3) * 9 + (i % 3) * 4] = d;
        }
        write_npy(&input, &[2, 3, 3], &a);
    };
    write_diagonals(1e5);
    for device in ["cpu", "auto"] {
        let out = dir.path().join(format!("eigh-{device}"));
        let eigh = |dtype: &str| {
            let (i, o) = (p(&input), p(&out));
            let r = cli(&[
                "eigh",
                "--input",
                &i,
                "--out-dir",
                &o,
                "--device",
                device,
                "--output-dtype",
                dtype,
            ]);
            r.assert_ok();
            (r, read_i32(&out.join("status.npy")).1)
        };
        let (r, status) = eigh("f16");
        assert!(
            r.stderr.contains("1 of 2 matrices") && r.stderr.contains("range"),
            "{}",
            r.stderr
        );
        assert_eq!(status, [3, 0], "{device}");
        let w = read_floats(&out.join("eigenvalues.npy")).data;
        assert!(
            w[..3].iter().all(|x| x.is_nan()) && w[3..] == [1.0, 2.0, 3.0],
            "{device}: {w:?}"
        );
        let v = read_floats(&out.join("eigenvectors.npy")).data;
        assert!(v[..9].iter().all(|x| x.is_nan()) && v[9..].iter().all(|x| x.is_finite()));
        // f32 holds every value.
        assert_eq!(eigh("f32").1, [0, 0], "{device}");
    }
    // exp(12) ≈ 1.6e5 in f16: f(A) and its gradient NaN for that matrix only.
    write_diagonals(12.0);
    let grad = dir.path().join("g.npy");
    write_npy(&grad, &[2, 3, 3], &[1e-3f64; 18]);
    let (f, ga) = (dir.path().join("f.npy"), dir.path().join("ga.npy"));
    let r = cli(&[
        "spectral",
        "--function",
        "exp",
        "--input",
        &p(&input),
        "--output",
        &p(&f),
        "--grad",
        &p(&grad),
        "--grad-output",
        &p(&ga),
        "--device",
        "cpu",
        "--output-dtype",
        "f16",
    ]);
    r.assert_ok();
    assert!(r.stderr.contains("1 of 2 matrices"), "{}", r.stderr);
    for path in [&f, &ga] {
        let x = read_floats(path).data;
        assert!(x[..9].iter().all(|v| v.is_nan()), "{x:?}");
        assert!(x[9..].iter().all(|v| v.is_finite()), "{x:?}");
    }
}

#[test]
fn bench_tunes_each_gpu_size_when_asked() {
    // A bad value is a usage error, before any work.
    let bad = cli_with(
        &["bench", "--device", "cpu", "--n", "2", "--batch", "2"],
        &[("EIGRAD_GPU_TUNE", "yes")],
    );
    bad.assert_error("EIGRAD_GPU_TUNE=\"yes\": expected 0 or 1");
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let args = [
        "bench",
        "--device",
        "auto",
        "--n",
        "3",
        "--batch",
        "8",
        "--json",
        &p(&json),
    ];
    let r = cli_with(&args, &[("EIGRAD_GPU_TUNE", "1")]);
    r.assert_ok();
    if r.device() == "cpu" {
        eprintln!("no GPU adapter: tuning in bench not tested");
        assert!(!r.stdout.contains("tuned"), "{}", r.stdout);
        return;
    }
    // What tuning measured, then the size timed with what it chose.
    let mut lines = r
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("tuned n = 3 (batch 8):"));
    assert!(lines.next().is_some(), "{}", r.stdout);
    let chosen = |line: Option<&str>, what: &str| -> String {
        let line = line.unwrap_or_else(|| panic!("no {what} line:\n{}", r.stdout));
        let rest = line.strip_prefix(&format!("  {what}: ")).expect(what);
        let (timed, choice) = rest.rsplit_once(" -> ").expect("a choice");
        assert!(timed.contains(choice), "{line}");
        choice.to_string()
    };
    let eigh = chosen(lines.next(), "eigh");
    let values = chosen(lines.next(), "eigvalsh");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).expect("valid JSON");
    for row in bench_rows(&report, "gpu", "resident") {
        let want = if row["op"] == "eigvalsh" && values == "tridiagonal" {
            "tridiagonal"
        } else {
            &eigh
        };
        assert_eq!(row["kernel"], want, "{row}");
    }
}

/// The rows of a bench report's `results` with the given device and mode.
fn bench_rows<'a>(
    report: &'a serde_json::Value,
    device: &str,
    mode: &str,
) -> Vec<&'a serde_json::Value> {
    report["results"]
        .as_array()
        .expect("results array")
        .iter()
        .filter(|r| r["device"] == device && r["mode"] == mode)
        .collect()
}

#[test]
fn bench_with_auto_adds_resident_and_copy_times_for_the_gpu() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let r = cli(&[
        "bench",
        "--device",
        "auto",
        "--n",
        "3,16",
        "--batch",
        "8",
        "--json",
        &p(&json),
    ]);
    r.assert_ok();
    for needle in [
        "eigh e2e",
        "eigh res",
        "vjp res",
        "eigh+vjp res",
        "resident",
    ] {
        assert!(
            r.stdout.contains(needle),
            "{needle:?} missing:\n{}",
            r.stdout
        );
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).expect("valid JSON");
    assert!(report["mode_note"].as_str().unwrap().contains("resident"));
    // Every timing is positive and its throughput is batch / median.
    for row in report["results"].as_array().unwrap() {
        let s = row["median_seconds"].as_f64().unwrap();
        let rate = row["matrices_per_second"].as_f64().unwrap();
        assert!(s > 0.0 && row["reps"].as_u64().unwrap() >= 3, "{row}");
        assert!((rate * s / 8.0 - 1.0).abs() < 1e-9, "{row}");
        assert_eq!(row["batch"], 8);
    }
    // The CPU: end to end only (resident would be the same number).
    let ops = |rows: &[&serde_json::Value]| -> Vec<String> {
        rows.iter()
            .map(|r| format!("{}:{}", r["n"], r["op"].as_str().unwrap()))
            .collect()
    };
    assert_eq!(
        ops(&bench_rows(&report, "cpu", "end_to_end")),
        [
            "3:eigh",
            "3:eigvalsh",
            "3:vjp",
            "16:eigh",
            "16:eigvalsh",
            "16:vjp"
        ]
    );
    assert!(bench_rows(&report, "cpu", "resident").is_empty());
    let transfers = report["transfers"].as_array().expect("transfers array");
    if r.device() == "cpu" {
        eprintln!("no GPU adapter: only the CPU half of the bench report was checked");
        assert!(transfers.is_empty());
        return;
    }
    let e2e = bench_rows(&report, "gpu", "end_to_end");
    // GPU rows name the eigendecomposition kernel (the default's, resolved), CPU rows none;
    // eigenvalues-only rows from n = 16 the tridiagonal kernel.
    for row in report["results"].as_array().unwrap() {
        let tridiagonal = row["op"] == "eigvalsh"
            && match std::env::var("EIGRAD_GPU_EIGVALSH") {
                Ok(k) if k != "auto" => k == "tridiagonal",
                _ => row["n"] == 16,
            };
        let want = if row["device"] != "gpu" {
            serde_json::Value::Null
        } else if tridiagonal {
            serde_json::json!("tridiagonal")
        } else {
            // Auto (and `registers`) is the register kernel up to n = 8 on any adapter, and
            // the one-sided kernel at n = 16.
            let small = row["n"].as_u64().unwrap() as usize <= eigrad::gpu::REGISTERS_MAX_N;
            match std::env::var("EIGRAD_GPU_FORWARD") {
                Ok(k) if k != "auto" && k != "registers" => serde_json::json!(k),
                _ if small => serde_json::json!("registers"),
                _ => serde_json::json!("one-sided"),
            }
        };
        assert_eq!(row["kernel"], want, "{row}");
    }
    // Kernel times (timestamp queries) on resident GPU rows where the adapter has them (every
    // such row or none), null on every other row.
    let rows = report["results"].as_array().unwrap();
    let timed: Vec<bool> = rows
        .iter()
        .filter(|r| r["device"] == "gpu" && r["mode"] == "resident")
        .map(|r| r["kernel_seconds"].as_f64().is_some_and(|k| k > 0.0))
        .collect();
    assert!(
        timed.iter().all(|&t| t) || timed.iter().all(|&t| !t),
        "{timed:?}"
    );
    for r in rows {
        let kernels = r["kernels"].as_object().expect("kernels object");
        if r["kernel_seconds"].is_null() {
            assert!(kernels.is_empty(), "{r}");
            continue;
        }
        assert!(r["device"] == "gpu" && r["mode"] == "resident", "{r}");
        // Each kernel the op dispatches, by entry point: the eigendecomposition kernel of the
        // row (`registers` → registers_eigh, …) among them for eigh.
        assert!(!kernels.is_empty(), "{r}");
        assert!(kernels.values().all(|t| t.as_f64().unwrap() > 0.0), "{r}");
        if r["op"] == "eigh" {
            let want = match r["kernel"].as_str().unwrap() {
                "registers" => "registers_eigh",
                "two-sided" => "jacobi_eigh",
                _ => "hestenes_eigh",
            };
            assert!(kernels.contains_key(want), "{r}");
        }
    }
    assert_eq!(
        ops(&e2e),
        [
            "3:eigh",
            "3:eigvalsh",
            "3:vjp",
            "16:eigh",
            "16:eigvalsh",
            "16:vjp"
        ]
    );
    assert_eq!(
        ops(&bench_rows(&report, "gpu", "resident")),
        [
            "3:eigh",
            "3:eigvalsh",
            "3:vjp",
            "3:eigh+vjp",
            "16:eigh",
            "16:eigvalsh",
            "16:vjp",
            "16:eigh+vjp"
        ]
    );
    assert!(r.stdout.contains("e2e/copy"), "{}", r.stdout);
    // The copies: the bytes one end-to-end call moves, and the ratio to its time.
    assert_eq!(transfers.len(), 6);
    for (t, row) in transfers.iter().zip(&e2e) {
        let n = t["n"].as_u64().unwrap();
        let (b, nn) = (8, n * n);
        let (up, down) = match t["op"].as_str().unwrap() {
            "eigh" => (b * nn, b * (nn + n + 1)),
            "eigvalsh" => (b * nn, b * (n + 1)),
            "vjp" => (b * (2 * nn + 2 * n + 1), b * nn),
            op => panic!("unexpected op {op}"),
        };
        assert_eq!(t["op"], row["op"]);
        assert_eq!(t["n"], row["n"]);
        assert_eq!(t["upload_bytes"].as_u64().unwrap(), 4 * up, "{t}");
        assert_eq!(t["readback_bytes"].as_u64().unwrap(), 4 * down, "{t}");
        let f = |k: &str| t[k].as_f64().unwrap();
        assert!(
            f("upload_seconds") > 0.0 && f("readback_seconds") > 0.0,
            "{t}"
        );
        let copy = f("upload_seconds") + f("readback_seconds");
        assert!((f("copy_seconds") / copy - 1.0).abs() < 1e-9, "{t}");
        assert_eq!(
            f("end_to_end_seconds"),
            row["median_seconds"].as_f64().unwrap()
        );
        let ratio = f("end_to_end_seconds") / f("copy_seconds");
        assert!(
            (f("end_to_end_over_copy") / ratio - 1.0).abs() < 1e-9,
            "{t}"
        );
    }
}

#[test]
fn big_endian_input_and_an_empty_batch_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let a = samples::random_symmetric(&mut Rng::new(24), N, 2);
    let input = dir.path().join("be.npy");
    let payload: Vec<u8> = a.iter().flat_map(|x| x.to_be_bytes()).collect();
    write_raw(&input, ">f8", &[2, 4, 4], &payload);
    let out = dir.path().join("out");
    eigh_cpu(&input, &out, &[]).assert_ok();
    let want = cpu::tridiagonal_eigh(&a, N, &EighOptions::default()).unwrap();
    assert_close(
        &read_floats(&out.join("eigenvalues.npy")).data,
        &want.eigenvalues,
        0.0,
        "big-endian input",
    );

    // Float descriptors without a byte order, or with '=' or '|' (numpy reads them all as the
    // machine's order): read as '<f8'.
    let payload: Vec<u8> = a.iter().flat_map(|x| x.to_le_bytes()).collect();
    for descr in ["f8", "=f8", "|f8"] {
        let text = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (2, 4, 4), }}");
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(text.len() as u16 + 1).to_le_bytes());
        bytes.extend(text.bytes().chain([b'\n']).chain(payload.iter().copied()));
        let input = dir.path().join("plain.npy");
        std::fs::write(&input, bytes).unwrap();
        let out = dir.path().join("out-plain");
        eigh_cpu(&input, &out, &[]).assert_ok();
        assert_close(
            &read_floats(&out.join("eigenvalues.npy")).data,
            &want.eigenvalues,
            0.0,
            descr,
        );
    }

    // Zero matrices of size 4: empty outputs of the right shapes.
    let empty = dir.path().join("empty.npy");
    write_npy::<f32>(&empty, &[0, 4, 4], &[]);
    let out = dir.path().join("out-empty");
    eigh_cpu(&empty, &out, &[]).assert_ok();
    assert_eq!(read_floats(&out.join("eigenvalues.npy")).shape, vec![0, 4]);
    assert_eq!(
        read_floats(&out.join("eigenvectors.npy")).shape,
        vec![0, 4, 4]
    );
    assert_eq!(read_i32(&out.join("status.npy")), (vec![0], vec![]));

    // Zero matrices of a size whose byte count overflows (4·2³² entries squared), or that no
    // machine this runs on has the memory for: usage errors, not a panic or an abort.
    let known_memory = std::path::Path::new("/proc/meminfo").exists();
    for n in [1u64 << 32, 1 << 20]
        .into_iter()
        .take(1 + usize::from(known_memory))
    {
        let huge = dir.path().join("huge.npy");
        write_raw(&huge, "<f8", &[0, n, n], &[]);
        let out = dir.path().join("out-huge");
        eigh_cpu(&huge, &out, &[]).assert_error(&format!("n = {n}"));
        assert!(!out.exists());
    }
}

#[test]
fn generated_workloads_too_large_for_memory_are_usage_errors() {
    // An overflowing byte count, and (where the machine's memory is known, as on Linux) 10¹⁶
    // bytes: refused before anything is allocated.
    for (cmd, n, batch) in [
        ("demo", "8", "18446744073709551615"),
        ("check", "4294967296", "1"),
        ("bench", "4", "18446744073709551615"),
    ] {
        let r = cli(&[cmd, "--n", n, "--batch", batch, "--device", "cpu"]);
        r.assert_error("too large");
    }
    if std::path::Path::new("/proc/meminfo").exists() {
        for cmd in ["demo", "check", "bench"] {
            let r = cli(&[
                cmd,
                "--n",
                "4",
                "--batch",
                "100000000000000",
                "--device",
                "cpu",
            ]);
            r.assert_error("of memory; this machine has");
        }
    }
    // Sizes listed twice run once.
    let r = cli(&["check", "--n", "3,3,2", "--batch", "4", "--device", "cpu"]);
    r.assert_ok();
    assert!(r.stdout.contains("all 2 sizes pass"), "{}", r.stdout);
}

#[test]
fn a_bad_kernel_variable_is_an_error_not_a_cpu_fallback() {
    for var in ["EIGRAD_GPU_FORWARD", "EIGRAD_GPU_EIGVALSH"] {
        for device in ["auto", "gpu"] {
            let out = Command::new(env!("CARGO_BIN_EXE_eigrad"))
                .args(["check", "--device", device, "--n", "4"])
                .env_remove("RUST_LOG")
                .env(var, "bogus")
                .output()
                .expect("run eigrad");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{var} --device {device}: {stderr}"
            );
            assert!(
                stderr.contains(var) && stderr.contains("bogus"),
                "{var} --device {device}: {stderr}"
            );
        }
    }
}
