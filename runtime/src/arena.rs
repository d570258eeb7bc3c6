//! The caller's arena, and typed views of its bytes (the plan splits it:
//! [`crate::plan`]).
//!
//! This is one of the two places with `unsafe` (the other being
//! `kernels/fast/engine.rs`): reinterpreting aligned bytes as `f32`, `i8`
//! or `i32`, and scratch words as bytes.

use crate::error::{Error, Result};

/// A 4-byte-aligned byte buffer of `N` bytes, for a static arena:
/// `static mut ARENA: Arena<{ ARENA_BYTES }> = Arena::new();`.
#[repr(C, align(4))]
#[derive(Debug)]
pub struct Arena<const N: usize>(pub [u8; N]);

impl<const N: usize> Arena<N> {
    /// A zeroed arena.
    pub const fn new() -> Self {
        Arena([0; N])
    }
    /// The bytes, to hand to a sampler.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl<const N: usize> Default for Arena<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// Checks that `arena` holds at least `need` bytes and is 4-byte aligned.
pub(crate) fn check_bytes(need: u32, arena: &[u8]) -> Result<()> {
    if arena.len() < need as usize {
        return Err(Error::PlanArenaTooSmall {
            need,
            have: u32::try_from(arena.len()).unwrap_or(u32::MAX),
        });
    }
    if !(arena.as_ptr() as usize).is_multiple_of(4) {
        return Err(Error::PlanArenaMisaligned);
    }
    Ok(())
}

pub(crate) fn as_f32(bytes: &mut [u8]) -> &mut [f32] {
    // SAFETY: every bit pattern is a valid f32, and `align_to_mut` only
    // returns the correctly aligned middle part; the arena was checked to be
    // 4-byte aligned and each buffer starts at a multiple of 4, so the prefix
    // is empty and the whole buffer is used.
    let (pre, mid, _) = unsafe { bytes.align_to_mut::<f32>() };
    debug_assert!(pre.is_empty());
    mid
}

pub(crate) fn as_i8(bytes: &mut [u8]) -> &mut [i8] {
    let len = bytes.len();
    // SAFETY: i8 and u8 have the same size, alignment and validity; the
    // pointer and length come from a live `&mut [u8]` that this borrow
    // replaces.
    unsafe { core::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<i8>(), len) }
}

pub(crate) fn as_u32(bytes: &mut [u8]) -> &mut [u32] {
    // SAFETY: every bit pattern is a valid u32, and `align_to_mut` only
    // returns the correctly aligned middle part; callers pass 4-aligned
    // regions of a 4-aligned arena whose length is a multiple of 4.
    let (pre, mid, _) = unsafe { bytes.align_to_mut::<u32>() };
    debug_assert!(pre.is_empty());
    mid
}

pub(crate) fn as_i32(bytes: &mut [u8]) -> &mut [i32] {
    // SAFETY: every bit pattern is a valid i32, and `align_to_mut` only
    // returns the correctly aligned middle part; callers pass 4-aligned
    // regions of a 4-aligned arena whose length is a multiple of 4, so the
    // prefix and suffix are empty.
    let (pre, mid, _) = unsafe { bytes.align_to_mut::<i32>() };
    debug_assert!(pre.is_empty());
    mid
}

/// Scratch words as bytes (the optimized transposed convolution gathers
/// weights into them).
pub(crate) fn words_as_bytes(words: &[u32]) -> &[u8] {
    // SAFETY: u8 has no alignment or validity requirements, and the byte
    // length of `words` is 4 * len; the borrow keeps the words alive and
    // unaliased by writers.
    unsafe { core::slice::from_raw_parts(words.as_ptr().cast::<u8>(), 4 * words.len()) }
}

/// Scratch words as bytes, to write (the optimized kernels' gathered
/// weights).
pub(crate) fn words_as_bytes_mut(words: &mut [u32]) -> &mut [u8] {
    // SAFETY: every bit pattern is a valid u8, and the byte length of
    // `words` is 4 * len; this borrow replaces the caller's.
    unsafe { core::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), 4 * words.len()) }
}

/// Scratch words as i16 halves (the optimized kernels' columns).
pub(crate) fn words_as_halves(words: &mut [u32]) -> &mut [i16] {
    // SAFETY: every bit pattern is a valid i16, u32 is aligned for i16,
    // and the half length of `words` is 2 * len; this borrow replaces the
    // caller's.
    unsafe { core::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<i16>(), 2 * words.len()) }
}
