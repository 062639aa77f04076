//! Host buffers for file data. Large ones live in an anonymous mapping of their own for which
//! transparent huge pages are requested (on Linux), so reading a file into one faults its pages
//! in a few 2 MiB steps instead of thousands of 4 KiB ones; small ones are plain vectors.

use memmap2::MmapMut;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

/// Buffers of at least this many bytes get their own mapping (4 MiB).
const MAPPED_MIN: usize = 4 << 20;

/// A buffer of `T` that dereferences to a slice.
pub struct HostBuf<T> {
    repr: Repr<T>,
}

enum Repr<T> {
    Vec(Vec<T>),
    Mapped {
        map: MmapMut,
        len: usize,
        of: PhantomData<T>,
    },
}

impl<T: bytemuck::Pod> HostBuf<T> {
    /// `len` zeroed values: in a mapping with huge pages requested when large (the mapping's
    /// pages are zero until written), else in a vector.
    pub fn zeroed(len: usize) -> Self {
        let bytes = len.saturating_mul(std::mem::size_of::<T>());
        if bytes >= MAPPED_MIN {
            if let Ok(map) = MmapMut::map_anon(bytes) {
                // Only advice: without huge pages the mapping works the same, in 4 KiB pages.
                #[cfg(target_os = "linux")]
                let _ = map.advise(memmap2::Advice::HugePage);
                return HostBuf {
                    repr: Repr::Mapped {
                        map,
                        len,
                        of: PhantomData,
                    },
                };
            }
        }
        bytemuck::zeroed_vec(len).into()
    }
}

impl<T> From<Vec<T>> for HostBuf<T> {
    fn from(v: Vec<T>) -> Self {
        HostBuf { repr: Repr::Vec(v) }
    }
}

impl<T: bytemuck::Pod> Deref for HostBuf<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match &self.repr {
            Repr::Vec(v) => v,
            // A mapping starts on a page boundary, so it is aligned for any `T`.
            Repr::Mapped { map, len, .. } => {
                bytemuck::cast_slice(&map[..len * std::mem::size_of::<T>()])
            }
        }
    }
}

impl<T: bytemuck::Pod> DerefMut for HostBuf<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        match &mut self.repr {
            Repr::Vec(v) => v,
            Repr::Mapped { map, len, .. } => {
                bytemuck::cast_slice_mut(&mut map[..*len * std::mem::size_of::<T>()])
            }
        }
    }
}

impl<T: bytemuck::Pod> Clone for HostBuf<T> {
    fn clone(&self) -> Self {
        self.to_vec().into()
    }
}

impl<T: bytemuck::Pod + std::fmt::Debug> std::fmt::Debug for HostBuf<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: bytemuck::Pod + PartialEq> PartialEq for HostBuf<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_and_small_buffers_hold_what_is_written() {
        for len in [0, 5, MAPPED_MIN / 8 + 3] {
            let mut b = HostBuf::<f64>::zeroed(len);
            assert_eq!(b.len(), len);
            assert!(b.iter().all(|&x| x == 0.0));
            for (i, x) in b.iter_mut().enumerate() {
                *x = i as f64 * 0.5;
            }
            let c = b.clone();
            assert_eq!(c, b);
            assert!(c.iter().enumerate().all(|(i, &x)| x == i as f64 * 0.5));
        }
        assert!(matches!(
            HostBuf::<f64>::zeroed(MAPPED_MIN / 8).repr,
            Repr::Mapped { .. }
        ));
        assert!(matches!(HostBuf::<f64>::zeroed(5).repr, Repr::Vec(_)));
    }
}
