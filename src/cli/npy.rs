//! `.npy` files in and out.
//!
//! Reading accepts float16, float32 and float64 (either byte order) in C order and rejects, with a
//! message that names the problem, every other dtype, Fortran order, and files whose data is
//! truncated or followed by stray bytes. Writing is transactional: [`Outputs`] writes each file
//! under a temporary name in its target directory and renames them all into place only once every
//! output has been written, so a failed command leaves no partial output behind.

use super::error::{fail, CliError, CliResult};
use super::hostbuf::HostBuf;
use eigrad::Scalar;
use half::f16;
use npyz::{DType, Endianness, NpyHeader, Order, TypeChar, WriterBuilder};
use std::any::TypeId;
use std::borrow::Cow;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// An element type of a file, as chosen by `--output-dtype`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Dtype {
    /// IEEE half precision (numpy `float16`).
    F16,
    /// Single precision (numpy `float32`).
    F32,
    /// Double precision (numpy `float64`).
    F64,
}

impl Dtype {
    /// The numpy name (`float16`, `float32`, `float64`).
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F16 => f16::NAME,
            Dtype::F32 => f32::NAME,
            Dtype::F64 => f64::NAME,
        }
    }
}

/// Floating-point data of one of the supported dtypes, flat and in C order.
#[derive(Clone, Debug, PartialEq)]
pub enum Floats {
    /// float16 data.
    F16(HostBuf<f16>),
    /// float32 data.
    F32(HostBuf<f32>),
    /// float64 data.
    F64(HostBuf<f64>),
}

/// Evaluates `$body` with `$s` bound to the slice inside a [`Floats`], whatever its dtype (the
/// body is generic over [`Scalar`]).
macro_rules! with_slice {
    ($floats:expr, $s:ident => $body:expr) => {
        match $floats {
            $crate::cli::npy::Floats::F16($s) => $body,
            $crate::cli::npy::Floats::F32($s) => $body,
            $crate::cli::npy::Floats::F64($s) => $body,
        }
    };
}
pub(crate) use with_slice;

macro_rules! floats_from_vec {
    ($($t:ty => $variant:ident),*) => {$(
        impl From<Vec<$t>> for Floats {
            fn from(v: Vec<$t>) -> Self {
                Floats::$variant(v.into())
            }
        }
    )*};
}
floats_from_vec!(f16 => F16, f32 => F32, f64 => F64);

impl Floats {
    /// The element type.
    #[cfg(test)]
    pub fn dtype(&self) -> Dtype {
        match self {
            Floats::F16(_) => Dtype::F16,
            Floats::F32(_) => Dtype::F32,
            Floats::F64(_) => Dtype::F64,
        }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        with_slice!(self, s => s.len())
    }

    /// The data widened to f64 (exact).
    pub fn to_f64(&self) -> Vec<f64> {
        with_slice!(self, s => s.iter().map(|x| x.to_f64()).collect())
    }

    /// The data as f32 (exact from f16 and f32, rounded from f64).
    pub fn to_f32(&self) -> Vec<f32> {
        with_slice!(self, s => s.iter().map(|x| x.to_f32()).collect())
    }

    /// f32 data rounded from f64 values (what an f32 device sees of generated f64 data).
    pub fn rounded_f32(x: &[f64]) -> Floats {
        Floats::from(x.iter().map(|&v| v as f32).collect::<Vec<_>>())
    }
}

/// `(2, 3)`, `(5,)` or `()`, the way numpy prints shapes.
pub fn fmt_shape(shape: &[usize]) -> String {
    match shape {
        [] => "()".into(),
        [d] => format!("({d},)"),
        _ => {
            let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            format!("({})", dims.join(", "))
        }
    }
}

/// An array read from a `.npy` file.
#[derive(Clone, Debug)]
pub struct Array {
    /// The shape as stored.
    pub shape: Vec<usize>,
    /// The elements in C order.
    pub data: Floats,
}

/// Reads the header at the start of `file` (`len` bytes long), leaving the file at the data.
/// numpy also reads a `descr` without a byte order (`'f8'`) or with `=` or `|` (the machine's
/// order); npyz does not, so those are rewritten with the machine's order before npyz parses
/// the header.
fn read_header(file: &mut File, len: u64) -> Result<NpyHeader, String> {
    let mut pre = [0u8; 8];
    file.read_exact(&mut pre).map_err(|e| e.to_string())?;
    if &pre[..6] != b"\x93NUMPY" {
        return Err("no .npy magic string".into());
    }
    let width = match pre[6] {
        1 => 2,
        2 | 3 => 4,
        v => return Err(format!("unsupported format version {v}")),
    };
    let mut size = [0u8; 4];
    file.read_exact(&mut size[..width])
        .map_err(|e| e.to_string())?;
    let text_len = u32::from_le_bytes(size) as u64;
    if 8 + width as u64 + text_len > len {
        return Err(format!("a header of {text_len} bytes in a file of {len}"));
    }
    let mut text = vec![0u8; text_len as usize];
    file.read_exact(&mut text).map_err(|e| e.to_string())?;
    let text = with_byte_order(text);
    let mut bytes = pre.to_vec();
    bytes.extend_from_slice(&(text.len() as u32).to_le_bytes()[..width]);
    bytes.extend(text);
    NpyHeader::from_reader(io::Cursor::new(bytes)).map_err(|e| e.to_string())
}

/// The header text with a float `descr` of `'f8'`, `'=f8'` or `'|f8'` (any size) given the
/// machine's byte order; any other text unchanged (other kinds keep their own messages).
fn with_byte_order(text: Vec<u8>) -> Vec<u8> {
    const KEY: &[u8] = b"'descr': '";
    let Some(at) = text.windows(KEY.len()).position(|w| w == KEY) else {
        return text;
    };
    let start = at + KEY.len();
    let order = if cfg!(target_endian = "little") {
        b'<'
    } else {
        b'>'
    };
    let float_at =
        |i: usize| text.get(i) == Some(&b'f') && text.get(i + 1).is_some_and(u8::is_ascii_digit);
    match text.get(start) {
        Some(b'f') if float_at(start) => {
            let mut out = text[..start].to_vec();
            out.push(order);
            out.extend_from_slice(&text[start..]);
            out
        }
        Some(b'=' | b'|') if float_at(start + 1) => {
            let mut out = text;
            out[start] = order;
            out
        }
        _ => text,
    }
}

/// A human name for a non-float dtype, e.g. `integer dtype int32 ('<i4')`.
fn describe_dtype(dtype: &DType) -> String {
    match dtype {
        DType::Plain(ts) => {
            let bits = ts.size_field() * 8;
            match ts.type_char() {
                TypeChar::Int => format!("integer dtype int{bits} ('{ts}')"),
                TypeChar::Uint => format!("integer dtype uint{bits} ('{ts}')"),
                TypeChar::Bool => format!("boolean dtype ('{ts}')"),
                TypeChar::Complex => format!("complex dtype complex{bits} ('{ts}')"),
                TypeChar::Float => format!("dtype float{bits} ('{ts}')"),
                _ => format!("dtype '{ts}'"),
            }
        }
        other => format!("structured dtype {}", other.descr()),
    }
}

/// Reads a whole `.npy` file of float16, float32 or float64 in C order.
///
/// The header is parsed from the file and the data is read with one bulk read straight into the
/// final buffer (no intermediate copy, no per-element decoding); data in the other byte order
/// is swapped in place.
pub fn read(path: &Path) -> CliResult<Array> {
    let shown = path.display();
    let cannot = |e: io::Error| CliError(format!("cannot read {shown}: {e}"));
    let mut file = File::open(path).map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    if meta.is_dir() {
        fail!("cannot read {shown}: it is a directory");
    }
    if !meta.is_file() {
        fail!("cannot read {shown}: not a regular file (.npy inputs are read from files)");
    }
    let file_len = meta.len();
    let header = read_header(&mut file, file_len).map_err(|e| {
        CliError(format!(
            "{shown} is not a valid .npy file (corrupt or truncated header: {e})"
        ))
    })?;
    let data_len = file_len.saturating_sub(file.stream_position().map_err(cannot)?);
    let dtype = header.dtype();
    let (kind, swap) = match &dtype {
        DType::Plain(ts) if ts.type_char() == TypeChar::Float => {
            let swap = ts.endianness() != Endianness::of_machine()
                && ts.endianness() != Endianness::Irrelevant;
            let kind = match ts.size_field() {
                2 => Some(Dtype::F16),
                4 => Some(Dtype::F32),
                8 => Some(Dtype::F64),
                _ => None,
            };
            (kind, swap)
        }
        _ => (None, false),
    };
    let Some(kind) = kind else {
        fail!(
            "{shown} has {}; only float16, float32 and float64 are supported",
            describe_dtype(&dtype)
        );
    };
    let shape: Vec<usize> = header
        .shape()
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<_, _>>()
        .map_err(|_| CliError(format!("{shown} has a shape too large for this machine")))?;
    if header.order() == Order::Fortran && shape.len() >= 2 {
        fail!(
            "{shown} is stored in Fortran order (fortran_order: True); only C order is supported \
             (write it with numpy.ascontiguousarray)"
        );
    }
    let item = match kind {
        Dtype::F16 => 2,
        Dtype::F32 => 4,
        Dtype::F64 => 8,
    };
    let too_large = || CliError(format!("{shown} has a shape too large for this machine"));
    let count = shape
        .iter()
        .try_fold(1, |acc: usize, &d| acc.checked_mul(d))
        .ok_or_else(too_large)?;
    let expected = count.checked_mul(item).ok_or_else(too_large)?;
    if data_len < expected as u64 {
        fail!(
            "{shown} is truncated: shape {} of {} needs {expected} bytes of data but the file \
             holds {data_len}",
            fmt_shape(&shape),
            kind.name(),
        );
    }
    if data_len > expected as u64 {
        fail!(
            "{shown} is corrupt: {} stray bytes follow the {expected} bytes of data of shape {}",
            data_len - expected as u64,
            fmt_shape(&shape)
        );
    }
    let data = match kind {
        Dtype::F16 => read_values::<f16>(&mut file, count, swap).map(Floats::F16),
        Dtype::F32 => read_values::<f32>(&mut file, count, swap).map(Floats::F32),
        Dtype::F64 => read_values::<f64>(&mut file, count, swap).map(Floats::F64),
    }
    .map_err(|e| CliError(format!("{shown} could not be read: {e}")))?;
    log::info!("read {shown}: shape {} {}", fmt_shape(&shape), kind.name());
    Ok(Array { shape, data })
}

/// Reads `count` values with one `read_exact` into a fresh buffer (allocated zeroed, so its pages
/// are first touched by the read itself), swapping each value's bytes when `swap`.
fn read_values<T: bytemuck::Pod>(
    file: &mut File,
    count: usize,
    swap: bool,
) -> io::Result<HostBuf<T>> {
    let mut values = HostBuf::<T>::zeroed(count);
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut values);
    file.read_exact(bytes)?;
    if swap {
        bytes
            .chunks_exact_mut(std::mem::size_of::<T>())
            .for_each(<[u8]>::reverse);
    }
    Ok(values)
}

/// A batch of square matrices `(..., n, n)` read from a file.
#[derive(Clone, Debug)]
pub struct Matrices {
    /// The leading (batch) dimensions `...`, possibly empty.
    pub lead: Vec<usize>,
    /// The matrix size.
    pub n: usize,
    /// `[B][n][n]` in C order, `B` the product of `lead`.
    pub data: Floats,
}

impl Matrices {
    /// The number of matrices.
    pub fn batch(&self) -> usize {
        self.lead.iter().product()
    }

    /// The full shape `(..., n, n)`.
    pub fn shape(&self) -> Vec<usize> {
        let mut s = self.lead.clone();
        s.extend([self.n, self.n]);
        s
    }

    /// The shape of one vector per matrix, `(..., n)` (eigenvalues and their derivatives).
    pub fn vector_shape(&self) -> Vec<usize> {
        let mut s = self.lead.clone();
        s.push(self.n);
        s
    }
}

/// The `n×n` f64 arrays a command may hold besides its batch (per-thread workspaces, one
/// matrix's results): what an input's n must leave room for.
const MATRIX_WORK_COPIES: u64 = 16;

/// Reads a file of matrices `(..., n, n)`: rank at least 2, square trailing dimensions, `n ≥ 1`.
pub fn read_matrices(path: &Path) -> CliResult<Matrices> {
    let a = read(path)?;
    let shown = path.display();
    let rank = a.shape.len();
    if rank < 2 {
        fail!(
            "{shown} has shape {} (rank {rank}); matrices need at least 2 dimensions (..., n, n)",
            fmt_shape(&a.shape)
        );
    }
    let (rows, cols) = (a.shape[rank - 2], a.shape[rank - 1]);
    if rows != cols {
        fail!(
            "{shown} has shape {}: the trailing dimensions {rows}×{cols} are not square",
            fmt_shape(&a.shape)
        );
    }
    if rows == 0 {
        fail!(
            "{shown} has shape {}: empty matrices (n = 0) are not supported",
            fmt_shape(&a.shape)
        );
    }
    // The batch's matrices are in memory already; one matrix's working arrays must fit too
    // (an empty batch claims any n without data).
    let what = format!("{shown}'s matrix size n = {rows}");
    super::memory::check_fits(&what, rows, 1, MATRIX_WORK_COPIES)?;
    Ok(Matrices {
        lead: a.shape[..rank - 2].to_vec(),
        n: rows,
        data: a.data,
    })
}

/// Reads a file that must have exactly the shape `expected` (a gradient or tangent for
/// `for_what`); `flag` names the option it came from.
pub fn read_shaped(
    path: &Path,
    expected: &[usize],
    flag: &str,
    for_what: &str,
) -> CliResult<Floats> {
    let a = read(path)?;
    if a.shape != expected {
        fail!(
            "{flag} {} has shape {}, expected {} ({for_what})",
            path.display(),
            fmt_shape(&a.shape),
            fmt_shape(expected)
        );
    }
    Ok(a.data)
}

/// A file written under a temporary name, waiting to be renamed to its destination.
struct Staged {
    /// The temporary file, in the destination's directory.
    tmp: PathBuf,
    /// Where it goes: the destination as given, through any symbolic links.
    dest: PathBuf,
    /// The destination as the user named it (for messages).
    shown: PathBuf,
}

/// Where an output named `dest` goes: the file a symbolic link points to when `dest` is one (so
/// the link stays), else `dest` in its canonical directory. An error when `dest` is a directory
/// or anything else that is not a regular file, or its directory does not exist.
fn resolve_dest(dest: &Path) -> CliResult<PathBuf> {
    let shown = dest.display();
    let name = dest
        .file_name()
        .ok_or_else(|| CliError(format!("{shown} is not a file name")))?;
    if fs::symlink_metadata(dest).is_ok() {
        let target =
            fs::canonicalize(dest).map_err(|e| CliError(format!("cannot write {shown}: {e}")))?;
        let meta =
            fs::metadata(&target).map_err(|e| CliError(format!("cannot write {shown}: {e}")))?;
        if meta.is_dir() {
            fail!("cannot write {shown}: it is a directory");
        }
        if !meta.is_file() {
            fail!(
                "cannot write {shown}: not a regular file (outputs are written to a temporary \
                 file, then renamed into place)"
            );
        }
        return Ok(target);
    }
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => fail!("cannot write {shown}: {} is not a directory", dir.display()),
        Err(_) => fail!(
            "cannot write {shown}: directory {} does not exist",
            dir.display()
        ),
    }
    let dir = fs::canonicalize(dir).map_err(|e| CliError(format!("cannot write {shown}: {e}")))?;
    Ok(dir.join(name))
}

/// Checks, before any work, that an output can go to `dest` (see [`Outputs`]): its directory
/// exists and takes a new file, and it is not a directory or another kind of non-regular file.
pub fn check_dest(dest: &Path) -> CliResult<()> {
    let mut probe = Outputs::new();
    probe.stage(dest).map(drop)
}

/// Checks, before any work, a command's output files: none is a directory or another kind of
/// non-regular file, an output directory that exists is a directory, and no two name the same
/// file (through links or different spellings). Outputs in a directory that does not exist yet
/// (an `--out-dir` to be created) are checked when they are written.
pub fn check_outputs(dests: &[&Path]) -> CliResult<()> {
    // Staged and dropped: the temporaries go again, the checks are the writes' own.
    let mut probe = Outputs::new();
    for &dest in dests {
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if dir.exists() {
            probe.stage(dest)?;
        }
    }
    Ok(())
}

/// Distinguishes temporary names within one process.
static TMP_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A set of output files written together: each is staged under a temporary name in its target
/// directory, and [`Outputs::commit`] renames them all into place. Dropping the set without
/// committing (an error anywhere) deletes the temporaries and any directory the set created.
#[derive(Default)]
pub struct Outputs {
    /// Files written so far.
    staged: Vec<Staged>,
    /// Directories created by [`Outputs::ensure_dir`], deepest first.
    created_dirs: Vec<PathBuf>,
    /// Set once every file is in place; nothing is cleaned up then.
    committed: bool,
}

impl Outputs {
    /// An empty set.
    pub fn new() -> Self {
        Outputs::default()
    }

    /// Creates `dir` and its missing parents (an `--out-dir`); they are removed again (when
    /// still empty) if the command fails.
    pub fn ensure_dir(&mut self, dir: &Path) -> CliResult<()> {
        let mut missing = Vec::new();
        let mut d = Some(dir);
        while let Some(p) = d.filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
            missing.push(p.to_path_buf());
            d = p.parent();
        }
        fs::create_dir_all(dir)
            .map_err(|e| CliError(format!("cannot create directory {}: {e}", dir.display())))?;
        if !dir.is_dir() {
            fail!("{} is not a directory", dir.display());
        }
        self.created_dirs.extend(missing);
        Ok(())
    }

    /// Creates the temporary file for `dest` and records it for clean-up. An error when `dest`
    /// is already one of the set's files under another name.
    fn stage(&mut self, dest: &Path) -> CliResult<File> {
        let resolved = resolve_dest(dest)?;
        if let Some(other) = self.staged.iter().find(|s| s.dest == resolved) {
            fail!(
                "{} and {} are the same file",
                other.shown.display(),
                dest.display()
            );
        }
        let name = resolved.file_name().unwrap_or_default();
        let dir = resolved.parent().unwrap_or(Path::new("."));
        let tmp = dir.join(format!(
            ".{}.{}-{}.tmp",
            name.to_string_lossy(),
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| CliError(format!("cannot write {}: {e}", dest.display())))?;
        self.staged.push(Staged {
            tmp,
            dest: resolved,
            shown: dest.to_path_buf(),
        });
        Ok(file)
    }

    /// Writes `data` to `dest` as `.npy` of shape `shape` and element type `dtype`.
    pub fn floats(
        &mut self,
        dest: &Path,
        shape: &[usize],
        data: &Floats,
        dtype: Dtype,
    ) -> CliResult<()> {
        with_slice!(data, s => self.values(dest, shape, s, dtype))
    }

    /// Writes `data` (any [`Scalar`] type) to `dest` as `.npy` of shape `shape` and element type
    /// `dtype`: with one bulk write of `data` itself when the types agree, else of a converted
    /// copy.
    pub fn values<S: Scalar>(
        &mut self,
        dest: &Path,
        shape: &[usize],
        data: &[S],
        dtype: Dtype,
    ) -> CliResult<()> {
        check_len(dest, shape, data.len())?;
        let file = self.stage(dest)?;
        match dtype {
            Dtype::F16 => write_slice(file, shape, &converted(data, |x| f16::from_f64(x.to_f64()))),
            Dtype::F32 => write_slice(file, shape, &converted(data, |x| x.to_f32())),
            Dtype::F64 => write_slice(file, shape, &converted(data, |x| x.to_f64())),
        }
        .map_err(|e| CliError(format!("cannot write {}: {e}", dest.display())))?;
        log::info!(
            "wrote {}: shape {} {}",
            dest.display(),
            fmt_shape(shape),
            dtype.name()
        );
        Ok(())
    }

    /// Writes `data` to `dest` as an int32 `.npy` of shape `shape` (status codes).
    pub fn int32(&mut self, dest: &Path, shape: &[usize], data: &[i32]) -> CliResult<()> {
        check_len(dest, shape, data.len())?;
        let file = self.stage(dest)?;
        write_slice(file, shape, data)
            .map_err(|e| CliError(format!("cannot write {}: {e}", dest.display())))?;
        log::info!("wrote {}: shape {} int32", dest.display(), fmt_shape(shape));
        Ok(())
    }

    /// Writes raw bytes (a JSON report) to `dest`.
    pub fn bytes(&mut self, dest: &Path, contents: &[u8]) -> CliResult<()> {
        let file = self.stage(dest)?;
        let mut w = BufWriter::new(file);
        w.write_all(contents)
            .and_then(|_| w.flush())
            .map_err(|e| CliError(format!("cannot write {}: {e}", dest.display())))
    }

    /// Renames every staged file into place. Files the destinations held before are first
    /// renamed aside, and deleted only once every new file is in place; if a rename fails, the
    /// new files already in place are removed, the old ones put back and the remaining
    /// temporaries deleted, so a failed command leaves the destinations as they were.
    pub fn commit(mut self) -> CliResult<()> {
        // The old file (renamed aside) of each destination done so far, if it had one.
        let mut done: Vec<Option<PathBuf>> = Vec::with_capacity(self.staged.len());
        let mut failure = None;
        for s in &self.staged {
            let aside = s.tmp.with_extension("old");
            let old = fs::symlink_metadata(&s.dest);
            if old.as_ref().is_ok_and(|m| m.is_dir()) {
                // (Since staged: nothing but a file is moved aside.)
                failure = Some(format!(
                    "cannot write {}: it is a directory",
                    s.shown.display()
                ));
                break;
            }
            let had_old = old.is_ok();
            if had_old {
                if let Err(e) = fs::rename(&s.dest, &aside) {
                    failure = Some(format!("cannot replace {}: {e}", s.shown.display()));
                    break;
                }
            }
            if let Err(e) = fs::rename(&s.tmp, &s.dest) {
                if had_old {
                    let _ = fs::rename(&aside, &s.dest);
                }
                failure = Some(format!("cannot write {}: {e}", s.shown.display()));
                break;
            }
            done.push(had_old.then_some(aside));
        }
        if let Some(msg) = failure {
            for (s, old) in self.staged.iter().zip(&done) {
                match old {
                    Some(aside) => {
                        let _ = fs::rename(aside, &s.dest);
                    }
                    None => {
                        let _ = fs::remove_file(&s.dest);
                    }
                }
            }
            self.staged.drain(..done.len());
            return Err(CliError(msg));
        }
        for old in done.iter().flatten() {
            let _ = fs::remove_file(old);
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for Outputs {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        for s in &self.staged {
            let _ = fs::remove_file(&s.tmp);
        }
        for d in &self.created_dirs {
            // Only succeeds on an empty directory: never removes anything the user put there.
            let _ = fs::remove_dir(d);
        }
    }
}

/// Fails unless `len` elements fill `shape` (a result of the wrong size from a library call).
fn check_len(dest: &Path, shape: &[usize], len: usize) -> CliResult<()> {
    if len != shape.iter().product::<usize>() {
        fail!(
            "internal error: {} elements computed for {} of shape {}",
            len,
            dest.display(),
            fmt_shape(shape)
        );
    }
    Ok(())
}

/// `data` as `T`: borrowed when `S` is `T` already, else converted element by element with `f`.
fn converted<S: bytemuck::Pod, T: bytemuck::Pod>(data: &[S], f: impl Fn(S) -> T) -> Cow<'_, [T]> {
    if TypeId::of::<S>() == TypeId::of::<T>() {
        // The same type: the cast is the identity.
        Cow::Borrowed(bytemuck::cast_slice(data))
    } else {
        Cow::Owned(data.iter().map(|&x| f(x)).collect())
    }
}

/// Writes one `.npy` file of C order with the default dtype of `T` (little-endian): the header,
/// then the data with one bulk write on a little-endian machine (element by element otherwise).
fn write_slice<T: npyz::AutoSerialize + bytemuck::Pod>(
    mut file: File,
    shape: &[usize],
    data: &[T],
) -> io::Result<()> {
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    if cfg!(target_endian = "little") {
        let mut header = Vec::new();
        npyz::WriteOptions::<T>::new()
            .default_dtype()
            .shape(&shape)
            .writer(&mut header)
            .write_header_only()?;
        file.write_all(&header)?;
        file.write_all(bytemuck::cast_slice(data))?;
        return file.flush();
    }
    let mut buf = BufWriter::new(file);
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
        .writer(&mut buf)
        .begin_nd()?;
    w.extend(data.iter().copied())?;
    w.finish()?;
    buf.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_print_like_numpy() {
        assert_eq!(fmt_shape(&[]), "()");
        assert_eq!(fmt_shape(&[5]), "(5,)");
        assert_eq!(fmt_shape(&[2, 3, 4]), "(2, 3, 4)");
    }

    #[test]
    fn a_destination_failing_in_commit_restores_every_earlier_file() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = (dir.path().join("a.npy"), dir.path().join("b.npy"));
        std::fs::write(&first, "OLD").unwrap();
        let mut out = Outputs::new();
        out.int32(&first, &[1], &[1]).unwrap();
        out.int32(&second, &[1], &[2]).unwrap();
        // After staging, b.npy becomes a non-empty directory: its rename fails after a.npy's
        // has replaced the old a.npy, which must come back.
        std::fs::create_dir_all(second.join("keep")).unwrap();
        let err = out.commit().unwrap_err();
        assert!(err.0.contains("b.npy"), "{}", err.0);
        assert_eq!(std::fs::read_to_string(&first).unwrap(), "OLD");
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["a.npy", "b.npy"]);
        // Without the failure both are replaced and nothing else is left.
        std::fs::remove_dir_all(&second).unwrap();
        let mut out = Outputs::new();
        out.int32(&first, &[1], &[1]).unwrap();
        out.int32(&second, &[1], &[2]).unwrap();
        out.commit().unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        assert_ne!(std::fs::read(&first).unwrap(), b"OLD");
    }

    #[test]
    fn written_files_read_back_with_their_dtype_and_shape() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("x.npy");
        let data = Floats::from(vec![1.0f64, 2.5, -3.0, 0.125, 7.0, 8.0]);
        for dtype in [Dtype::F16, Dtype::F32, Dtype::F64] {
            let mut out = Outputs::new();
            out.floats(&dest, &[1, 2, 3], &data, dtype).unwrap();
            out.commit().unwrap();
            let back = read(&dest).unwrap();
            assert_eq!(back.shape, vec![1, 2, 3]);
            assert_eq!(back.data.dtype(), dtype);
            assert_eq!(back.data.to_f64(), data.to_f64());
        }
    }

    #[test]
    fn dropping_uncommitted_outputs_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let out_dir = dir.path().join("a/b");
        {
            let mut out = Outputs::new();
            out.ensure_dir(&out_dir).unwrap();
            out.int32(&out_dir.join("s.npy"), &[2], &[0, 1]).unwrap();
        }
        assert!(!dir.path().join("a").exists());
    }
}
