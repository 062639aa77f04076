//! Element types accepted at the boundary: f16 (the `half` crate), f32 and f64.
//!
//! Computation happens in f64 on the CPU and in f32 on the GPU whatever the I/O type; this trait
//! is only the conversion at the edges.

/// A floating-point element type eigrad reads and writes.
pub trait Scalar: Copy + Send + Sync + bytemuck::Pod + std::fmt::Debug + 'static {
    /// The numpy dtype name (`float16`, `float32`, `float64`).
    const NAME: &'static str;
    /// Widens to f64 (exact).
    fn to_f64(self) -> f64;
    /// Narrows from f64 (round to nearest).
    fn from_f64(x: f64) -> Self;
    /// Converts to f32 (exact for f16 and f32, rounded for f64).
    fn to_f32(self) -> f32;
    /// Converts from f32 (exact for f32 and f64, rounded for f16).
    fn from_f32(x: f32) -> Self;
}

impl Scalar for f64 {
    const NAME: &'static str = "float64";
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(x: f64) -> Self {
        x
    }
    fn to_f32(self) -> f32 {
        self as f32
    }
    fn from_f32(x: f32) -> Self {
        x as f64
    }
}

impl Scalar for f32 {
    const NAME: &'static str = "float32";
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    fn to_f32(self) -> f32 {
        self
    }
    fn from_f32(x: f32) -> Self {
        x
    }
}

impl Scalar for half::f16 {
    const NAME: &'static str = "float16";
    fn to_f64(self) -> f64 {
        self.to_f64()
    }
    fn from_f64(x: f64) -> Self {
        half::f16::from_f64(x)
    }
    fn to_f32(self) -> f32 {
        self.to_f32()
    }
    fn from_f32(x: f32) -> Self {
        half::f16::from_f32(x)
    }
}
