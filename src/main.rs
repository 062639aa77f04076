//! The `eigrad` command line (DESIGN §5).
fn main() {}
