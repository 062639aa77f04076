//! # eigrad
//!
//! Batched symmetric eigendecompositions of many small matrices (n ≈ 1..64) and their
//! derivatives, on any GPU that wgpu reaches (WGSL compute shaders) and on the CPU (an f64
//! reference that is the oracle for every GPU result).
//!
//! Conventions (DESIGN §1): a batch is `B` row-major `n×n` matrices stored contiguously; the input
//! is symmetrised (`(A + Aᵀ)/2`) unless [`Symmetry::Lower`] is chosen; eigenvalues are ascending;
//! `eigenvectors[b][i][j]` is component `i` of eigenvector `j`; each eigenvector is signed so that
//! its component of largest magnitude is positive (the first of those within [`GAUGE_TIE`] of the
//! largest, so that components equal up to rounding count as ties); every matrix
//! gets a [`Status`], and a bad matrix gets NaN outputs without disturbing the rest of the batch.
//!
//! Derivatives (DESIGN §2): the reverse rule
//! `Ā = V (diag(λ̄) + F∘skew(VᵀV̄)) Vᵀ` with `F_ij = 1/(λ_j − λ_i)` under a [`Degeneracy`] policy,
//! the forward rule `λ̇ = diag(P)`, `V̇ = V (F∘P)` with `P = VᵀȦV`, and the eigenvalues-only rule
//! `Ā = V diag(λ̄) Vᵀ`.
//!
//! Stable objectives ([`spectral`]): spectral functions `V f(Λ) Vᵀ` with the Daleckii–Krein VJP,
//! projectors onto the `k` lowest/highest eigenvectors, `λ_max`, `λ_min` and the spectral norm,
//! and the dominant eigenpair by power iteration: derivatives that stay finite and correct when
//! eigenvalues coincide.
#![deny(missing_docs)]

#[cfg(feature = "burn")]
pub mod burn;
pub mod cpu;
mod eigh;
mod error;
pub mod gpu;
mod options;
pub mod samples;
mod scalar;
pub mod spectral;
mod status;

pub use eigh::{Eigh, Jvp, GAUGE_TIE};
pub use error::{Error, Result};
pub use options::{Degeneracy, EighOptions, Precision, Symmetry, Vectors};
pub use scalar::Scalar;
pub use status::Status;

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
