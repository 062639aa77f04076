//! CPU benchmarks (criterion; placeholder until the benchmark work lands).
fn main() {}
