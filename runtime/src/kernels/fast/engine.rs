//! The inner products of the optimized int8 kernels, and the column buffer
//! they read.
//!
//! Every optimized int8 kernel reduces to blocks of dot products between
//! int8 weight rows (read straight from the model file) and *columns*: the
//! activations one output reads, minus the input zero point, widened to
//! i16 and written once to scratch memory of the arena (zeros where a tap
//! falls outside the image or under a mask, so they add nothing). One
//! column serves every output channel, and one weight load serves up to
//! four columns or rows: that reuse, and two multiplies per instruction
//! where the core has SMLAD, is where the speed comes from.
//!
//! A column of `n` values is packed two i16 per u32 word in groups of four
//! values: `v0, v1, v2, v3` are stored as the words `(v0 | v2 << 16)` and
//! `(v1 | v3 << 16)`, which is the order in which SXTB16 widens a word of
//! four int8 weights (bytes 0 and 2, then bytes 1 and 3 with ROR #8). The
//! last group is padded with zeros; the weights of a partial group are
//! read one by one, so no kernel reads past a weight row.
//!
//! Two engines implement [`Engine`]:
//! - [`Dsp`]: the Cortex-M4/M7/M33 DSP extension (SXTB16 + SMLAD, two
//!   16-bit multiply-accumulates per instruction), through `asm!` on
//!   targets that have it (see `build.rs`) and emulated exactly in plain
//!   Rust elsewhere, so the host tests run the very arithmetic the board
//!   does;
//! - [`Portable`]: plain Rust with the same blocking, for cores without
//!   the DSP extension (Cortex-M0/M0+) and for the host.
//!
//! Accumulation is i32 with wrapping adds, as in the reference kernels:
//! integer addition in any order gives the same bits.

/// Words of a column of `n` values (groups of four, two words each).
#[inline(always)]
pub const fn col_words(n: usize) -> usize {
    n.div_ceil(4) * 2
}

/// Writes values into a column in order (see the module doc for the
/// packing).
pub struct ColWriter<'c> {
    col: &'c mut [u32],
    /// Values written so far.
    n: usize,
    /// The pending group.
    v: [i32; 4],
}

impl<'c> ColWriter<'c> {
    /// A writer at the start of `col`.
    #[inline(always)]
    pub fn new(col: &'c mut [u32]) -> Self {
        ColWriter {
            col,
            n: 0,
            v: [0; 4],
        }
    }

    #[inline(always)]
    fn flush(&mut self) {
        let g = self.n.div_ceil(4) * 2 - 2;
        self.col[g] = pack(self.v[0], self.v[2]);
        self.col[g + 1] = pack(self.v[1], self.v[3]);
    }

    /// Appends one value (in i16 range).
    #[inline(always)]
    pub fn push(&mut self, v: i32) {
        self.v[self.n & 3] = v;
        self.n += 1;
        if self.n & 3 == 0 {
            self.flush();
        }
    }

    /// Appends `k` zeros.
    #[inline(always)]
    pub fn zeros(&mut self, k: usize) {
        for _ in 0..k {
            self.push(0);
        }
    }

    /// Ends a segment: pads the last group with zeros, so that the next
    /// value starts a new group. Returns the values written (excluding
    /// padding) since the writer was made.
    #[inline(always)]
    pub fn end_segment(&mut self) -> usize {
        let n = self.n;
        if n & 3 != 0 {
            for j in n & 3..4 {
                self.v[j] = 0;
            }
            self.flush();
            self.n = n.div_ceil(4) * 4;
        }
        n
    }
}

#[inline(always)]
const fn pack(lo: i32, hi: i32) -> u32 {
    (lo as u16 as u32) | ((hi as u16 as u32) << 16)
}

/// Value `t` of a column (the packing of the module doc).
#[inline(always)]
fn col_at(col: &[u32], t: usize) -> i32 {
    let j = t & 3;
    let word = col[(t & !3) / 2 + (j & 1)];
    (if j < 2 { word as u16 } else { (word >> 16) as u16 }) as i16 as i32
}

/// Blocked dot products of int8 weight rows with columns.
pub trait Engine {
    /// Adds to `acc[r][c]` the dot product of weight row `w[r]` (its first
    /// `n` bytes, int8) with column `col[c]` (its first `n` values, packed;
    /// at least [`col_words`]`(n)` words), wrapping.
    fn mac<const R: usize, const C: usize>(
        acc: &mut [[i32; C]; R],
        w: [&[u8]; R],
        col: [&[u32]; C],
        n: usize,
    );
}

/// The partial last group: weights read one by one.
#[inline(always)]
fn mac_tail<const R: usize, const C: usize>(
    acc: &mut [[i32; C]; R],
    w: &[&[u8]; R],
    col: &[&[u32]; C],
    from: usize,
    n: usize,
) {
    for t in from..n {
        for r in 0..R {
            let wt = w[r][t] as i8 as i32;
            for c in 0..C {
                acc[r][c] = acc[r][c].wrapping_add(wt * col_at(col[c], t));
            }
        }
    }
}

/// The DSP extension's SXTB16 and SMLAD: native instructions on targets
/// with the extension, exact emulations elsewhere.
pub mod dsp {
    /// `SXTB16 a`: bytes 0 and 2 of `a`, sign-extended to the low and high
    /// halfwords.
    #[cfg(not(tinygen_dsp))]
    #[inline(always)]
    pub fn sxtb16(a: u32) -> u32 {
        (a as u8 as i8 as i16 as u16 as u32) | (((a >> 16) as u8 as i8 as i16 as u16 as u32) << 16)
    }
    /// `SXTB16 a, ROR #8`: bytes 1 and 3 of `a`, sign-extended.
    #[cfg(not(tinygen_dsp))]
    #[inline(always)]
    pub fn sxtb16_ror8(a: u32) -> u32 {
        sxtb16(a.rotate_right(8))
    }
    /// `SMLAD acc, a, b`: `acc + a.lo * b.lo + a.hi * b.hi` (signed
    /// halfwords), wrapping.
    #[cfg(not(tinygen_dsp))]
    #[inline(always)]
    pub fn smlad(a: u32, b: u32, acc: i32) -> i32 {
        let lo = (a as u16 as i16 as i32) * (b as u16 as i16 as i32);
        let hi = ((a >> 16) as u16 as i16 as i32) * ((b >> 16) as u16 as i16 as i32);
        acc.wrapping_add(lo).wrapping_add(hi)
    }

    /// `SXTB16 a`: bytes 0 and 2 of `a`, sign-extended to the low and high
    /// halfwords.
    #[cfg(tinygen_dsp)]
    #[inline(always)]
    pub fn sxtb16(a: u32) -> u32 {
        let r: u32;
        // SAFETY: one register-to-register instruction of the DSP
        // extension, which build.rs enables only on cores that have it; no
        // memory, stack or flags are touched.
        unsafe {
            core::arch::asm!("sxtb16 {r}, {a}", r = lateout(reg) r, a = in(reg) a,
                options(pure, nomem, nostack, preserves_flags));
        }
        r
    }
    /// `SXTB16 a, ROR #8`: bytes 1 and 3 of `a`, sign-extended.
    #[cfg(tinygen_dsp)]
    #[inline(always)]
    pub fn sxtb16_ror8(a: u32) -> u32 {
        let r: u32;
        // SAFETY: as for `sxtb16`.
        unsafe {
            core::arch::asm!("sxtb16 {r}, {a}, ror #8", r = lateout(reg) r, a = in(reg) a,
                options(pure, nomem, nostack, preserves_flags));
        }
        r
    }
    /// `SMLAD acc, a, b`: `acc + a.lo * b.lo + a.hi * b.hi` (signed
    /// halfwords), wrapping.
    #[cfg(tinygen_dsp)]
    #[inline(always)]
    pub fn smlad(a: u32, b: u32, acc: i32) -> i32 {
        let r: i32;
        // SAFETY: one register-to-register instruction of the DSP
        // extension (it may set the sticky Q flag, which nothing reads).
        unsafe {
            core::arch::asm!("smlad {r}, {a}, {b}, {c}", r = lateout(reg) r, a = in(reg) a,
                b = in(reg) b, c = in(reg) acc, options(pure, nomem, nostack));
        }
        r
    }
}

/// Four weights as a little-endian word.
///
/// # Safety
///
/// `i + 4 <= w.len()`.
#[inline(always)]
unsafe fn word_at(w: &[u8], i: usize) -> u32 {
    // SAFETY: the caller guarantees bytes i..i + 4 are in `w`; the read
    // is unaligned-safe.
    unsafe { core::ptr::read_unaligned(w.as_ptr().add(i).cast::<u32>()) }.to_le()
}

/// The DSP engine (see the module doc).
#[derive(Debug, Clone, Copy)]
pub struct Dsp;

impl Engine for Dsp {
    #[inline(always)]
    fn mac<const R: usize, const C: usize>(
        acc: &mut [[i32; C]; R],
        w: [&[u8]; R],
        col: [&[u32]; C],
        n: usize,
    ) {
        let groups = n / 4;
        // Bounds once, outside the loop (a failure here is a kernel bug).
        let w = w.map(|r| &r[..n]);
        let col = col.map(|c| &c[..col_words(n)]);
        let mut a = *acc;
        for g in 0..groups {
            let mut cw = [(0u32, 0u32); C];
            for c in 0..C {
                // SAFETY: g < n / 4, so 2g + 1 < col_words(n) = col[c].len().
                cw[c] = unsafe {
                    (
                        *col[c].get_unchecked(2 * g),
                        *col[c].get_unchecked(2 * g + 1),
                    )
                };
            }
            for r in 0..R {
                // SAFETY: 4g + 4 <= n = w[r].len().
                let word = unsafe { word_at(w[r], 4 * g) };
                let (lo, hi) = (dsp::sxtb16(word), dsp::sxtb16_ror8(word));
                for c in 0..C {
                    a[r][c] = dsp::smlad(lo, cw[c].0, a[r][c]);
                    a[r][c] = dsp::smlad(hi, cw[c].1, a[r][c]);
                }
            }
        }
        mac_tail(&mut a, &w, &col, groups * 4, n);
        *acc = a;
    }
}

/// The portable engine (see the module doc).
#[derive(Debug, Clone, Copy)]
pub struct Portable;

impl Engine for Portable {
    #[inline(always)]
    fn mac<const R: usize, const C: usize>(
        acc: &mut [[i32; C]; R],
        w: [&[u8]; R],
        col: [&[u32]; C],
        n: usize,
    ) {
        let groups = n / 4;
        let w = w.map(|r| &r[..n]);
        let col = col.map(|c| &c[..col_words(n)]);
        let mut a = *acc;
        for g in 0..groups {
            let mut cv = [[0i32; 4]; C];
            for c in 0..C {
                // SAFETY: g < n / 4, so 2g + 1 < col_words(n) = col[c].len().
                let (w0, w1) = unsafe {
                    (
                        *col[c].get_unchecked(2 * g),
                        *col[c].get_unchecked(2 * g + 1),
                    )
                };
                cv[c] = [
                    w0 as u16 as i16 as i32,
                    w1 as u16 as i16 as i32,
                    (w0 >> 16) as u16 as i16 as i32,
                    (w1 >> 16) as u16 as i16 as i32,
                ];
            }
            for r in 0..R {
                // SAFETY: 4g + 4 <= n = w[r].len().
                let b = unsafe { w[r].get_unchecked(4 * g..4 * g + 4) };
                let b = [b[0] as i8 as i32, b[1] as i8 as i32, b[2] as i8 as i32, b[3] as i8 as i32];
                for c in 0..C {
                    let s = b[0] * cv[c][0] + b[1] * cv[c][1] + b[2] * cv[c][2] + b[3] * cv[c][3];
                    a[r][c] = a[r][c].wrapping_add(s);
                }
            }
        }
        mac_tail(&mut a, &w, &col, groups * 4, n);
        *acc = a;
    }
}

/// The engine the optimized kernels use on this target: [`Dsp`] where the
/// core has the DSP extension, [`Portable`] elsewhere.
#[cfg(tinygen_dsp)]
pub type Native = Dsp;
/// The engine the optimized kernels use on this target: [`Dsp`] where the
/// core has the DSP extension, [`Portable`] elsewhere.
#[cfg(not(tinygen_dsp))]
pub type Native = Portable;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_packing_round_trips() {
        for n in 0..13 {
            let mut col = [0xdead_beefu32; 8];
            let mut wr = ColWriter::new(&mut col);
            for t in 0..n {
                wr.push(t as i32 * 37 - 200);
            }
            assert_eq!(wr.end_segment(), n);
            for t in 0..n {
                assert_eq!(col_at(&col, t), t as i32 * 37 - 200);
            }
            // Padding is zero.
            for t in n..n.div_ceil(4) * 4 {
                assert_eq!(col_at(&col, t), 0);
            }
        }
    }

    #[test]
    fn dsp_emulation_matches_definition() {
        let a = 0x80ff_7f01u32;
        assert_eq!(dsp::sxtb16(a), 0xffff_0001);
        assert_eq!(dsp::sxtb16(a) as u16 as i16, 1);
        assert_eq!((dsp::sxtb16(a) >> 16) as u16 as i16, -1);
        assert_eq!(dsp::sxtb16_ror8(a) as u16 as i16, 127);
        assert_eq!((dsp::sxtb16_ror8(a) >> 16) as u16 as i16, -128);
        let x = pack(-255, 300);
        let y = pack(-128, 127);
        assert_eq!(dsp::smlad(x, y, 5), 5 + 255 * 128 + 300 * 127);
        // Wraps like the core.
        assert_eq!(dsp::smlad(x, y, i32::MAX), i32::MAX.wrapping_add(255 * 128 + 300 * 127));
    }

    fn engines_agree<const R: usize, const C: usize>(seed: u64, n: usize) {
        let mut rng = crate::Rng::new(seed);
        let w: std::vec::Vec<std::vec::Vec<u8>> = (0..R)
            .map(|_| (0..n).map(|_| rng.next_u32() as u8).collect())
            .collect();
        let vals: std::vec::Vec<std::vec::Vec<i32>> = (0..C)
            .map(|_| (0..n).map(|_| (rng.next_u32() % 511) as i32 - 255).collect())
            .collect();
        let cols: std::vec::Vec<std::vec::Vec<u32>> = vals
            .iter()
            .map(|v| {
                let mut c = std::vec![0u32; col_words(n)];
                let mut wr = ColWriter::new(&mut c);
                v.iter().for_each(|&x| wr.push(x));
                wr.end_segment();
                c
            })
            .collect();
        let mut want = [[7i32; C]; R];
        for r in 0..R {
            for c in 0..C {
                for t in 0..n {
                    want[r][c] = want[r][c].wrapping_add(w[r][t] as i8 as i32 * vals[c][t]);
                }
            }
        }
        let wr: [&[u8]; R] = core::array::from_fn(|r| &w[r][..]);
        let cr: [&[u32]; C] = core::array::from_fn(|c| &cols[c][..]);
        let mut a = [[7i32; C]; R];
        Dsp::mac(&mut a, wr, cr, n);
        assert_eq!(a, want, "dsp n {n}");
        let mut a = [[7i32; C]; R];
        Portable::mac(&mut a, wr, cr, n);
        assert_eq!(a, want, "portable n {n}");
    }

    #[test]
    fn engines_equal_plain_dot_products() {
        for n in 0..40 {
            engines_agree::<1, 1>(n as u64, n);
            engines_agree::<2, 2>(n as u64 + 100, n);
            engines_agree::<4, 1>(n as u64 + 200, n);
            engines_agree::<2, 1>(n as u64 + 300, n);
            engines_agree::<1, 2>(n as u64 + 400, n);
        }
    }
}
