//! Refusing work that cannot fit in memory before allocating any of it: sizes whose byte counts
//! overflow, or that need more than the machine has, are usage errors (exit 2), not an abort
//! in the allocator.

use super::error::{fail, CliResult};

/// Bytes of one f64.
const F64: u64 = 8;

/// The machine's physical memory in bytes (`MemTotal` of `/proc/meminfo`), where known.
fn physical_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// `bytes` as `12.3 GB` (10⁹ bytes).
fn gb(bytes: u64) -> String {
    format!("{:.1} GB", bytes as f64 / 1e9)
}

/// An error unless `copies` arrays of `batch` f64 `n×n` matrices fit in memory: their size must
/// not overflow and, where the machine's memory is known, not exceed it. `what` names the
/// workload in the message (`--batch 100 with n = 8`).
pub fn check_fits(what: &str, n: usize, batch: usize, copies: u64) -> CliResult<()> {
    let bytes = (n as u64)
        .checked_mul(n as u64)
        .and_then(|x| x.checked_mul(batch as u64))
        .and_then(|x| x.checked_mul(F64 * copies))
        .filter(|&b| b <= isize::MAX as u64);
    let Some(bytes) = bytes else {
        fail!("{what} is too large: its matrices' size overflows");
    };
    if let Some(total) = physical_memory().filter(|&t| bytes > t) {
        fail!(
            "{what} needs about {} of memory; this machine has {}",
            gb(bytes),
            gb(total)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_that_overflow_or_exceed_memory_are_errors() {
        assert!(check_fits("small", 8, 4096, 8).is_ok());
        let overflow = check_fits("n", 1 << 32, 1, 1).unwrap_err();
        assert!(overflow.0.contains("overflows"), "{}", overflow.0);
        assert!(check_fits("b", 4, usize::MAX, 1).is_err());
        if physical_memory().is_some() {
            // 10¹⁵ bytes: more than any machine this runs on.
            let big = check_fits("--batch", 1000, 1_000_000_000, 1).unwrap_err();
            assert!(big.0.contains("needs about"), "{}", big.0);
        }
    }
}
