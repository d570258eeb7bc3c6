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
//!   16-bit multiply-accumulates per instruction). On targets that have it
//!   (see `build.rs`) the inner loops are hand-scheduled `asm!` (two groups
//!   of four taps per iteration, no spills); elsewhere the same arithmetic
//!   runs emulated exactly in plain Rust, so the host tests check the very
//!   arithmetic the board does (the QEMU contract test checks the `asm!`);
//! - [`Portable`]: plain Rust, for cores without the DSP extension
//!   (Cortex-M0/M0+) and for the host.
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
///
/// Values are stored as i16 in tap order (one store each, the cheap part of
/// building a column); [`ColWriter::finish`] then swaps the middle two of
/// every group of four into the SXTB16 order.
pub struct ColWriter<'c> {
    /// The column's words (written as i16 halves, see [`ColWriter::h`]).
    col: &'c mut [u32],
    /// Next half to write.
    p: usize,
}

// The column packing assumes half 2k is the low half of word k.
#[cfg(target_endian = "big")]
compile_error!("tinygen's int8 kernels assume a little-endian target");

impl<'c> ColWriter<'c> {
    /// A writer at the start of column `col`.
    #[inline(always)]
    pub fn new(col: &'c mut [u32]) -> Self {
        ColWriter { col, p: 0 }
    }

    /// The column as i16 halves.
    #[inline(always)]
    fn h(&mut self) -> &mut [i16] {
        crate::arena::words_as_halves(self.col)
    }

    /// Appends one value (in i16 range).
    #[inline(always)]
    pub fn push(&mut self, v: i32) {
        let p = self.p;
        self.h()[p] = v as i16;
        self.p += 1;
    }

    /// Appends `k` zeros.
    #[inline(always)]
    pub fn zeros(&mut self, k: usize) {
        let p = self.p;
        self.h()[p..p + k].fill(0);
        self.p += k;
    }

    /// Appends `x[i] - zp` for each `i8` of `x`.
    #[inline(always)]
    pub fn run(&mut self, x: &[i8], zp: i32) {
        let p = self.p;
        let dst = &mut self.h()[p..p + x.len()];
        for (d, &v) in dst.iter_mut().zip(x) {
            *d = (v as i32 - zp) as i16;
        }
        self.p += x.len();
    }

    /// Appends `x[j * stride] - zp` for `j < n` (one pixel's channels of a
    /// CHW tensor).
    #[inline(always)]
    pub fn strided(&mut self, x: &[i8], n: usize, stride: usize, zp: i32) {
        if n == 0 {
            return;
        }
        let src = &x[..(n - 1) * stride + 1];
        let p = self.p;
        self.p += n;
        let mut k = 0;
        for d in &mut self.h()[p..p + n] {
            // SAFETY: k = j * stride <= (n - 1) * stride < src.len().
            *d = (unsafe { *src.get_unchecked(k) } as i32 - zp) as i16;
            k += stride;
        }
    }

    /// Appends a patch of the CHW tensor `x`: for each of `n_i` channels
    /// (`ch_stride` apart) and each of `n_a` rows (row `a` starting at
    /// `row(a)` within the channel, `None` for a row outside the image: all
    /// zeros), the `n_j` taps from column `x0`: `x[.. + x0 + j] - zp` for
    /// `j` in `js` (the taps inside the row), zero for the others.
    ///
    /// In an image's interior, one bounds check for the whole patch
    /// (`ColWriter::patch_inside`); at its edges, one per row, covering
    /// the row's taps in every channel.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub fn patch(
        &mut self,
        x: &[i8],
        n_i: usize,
        ch_stride: usize,
        n_a: usize,
        row: impl Fn(usize) -> Option<usize>,
        n_j: usize,
        x0: isize,
        (jlo, jhi): (usize, usize),
        zp: i32,
    ) {
        let (p, total) = (self.p, n_i * n_a * n_j);
        self.p += total;
        let out = &mut self.h()[p..p + total];
        if n_i == 0
            || (jlo == 0
                && jhi == n_j
                && Self::patch_inside(x, out, (n_i, ch_stride), n_a, &row, (x0, n_j), zp))
        {
            return;
        }
        let (jlo, jhi) = (jlo.min(n_j), jhi.min(n_j).max(jlo.min(n_j)));
        let seg = n_a * n_j;
        for a in 0..n_a {
            // The row's first tap inside, in channel 0, and its last read
            // in channel n_i - 1.
            let src = row(a)
                .filter(|_| jhi > jlo)
                .map(|r| (r as isize + x0 + jlo as isize) as usize);
            let Some(src) = src else {
                for i in 0..n_i {
                    out[i * seg + a * n_j..][..n_j].fill(0);
                }
                continue;
            };
            let last = (n_i - 1)
                .checked_mul(ch_stride)
                .and_then(|v| v.checked_add(src + (jhi - jlo)));
            assert!(
                last.is_some_and(|l| l <= x.len()) && (n_i - 1) * seg + (a + 1) * n_j <= out.len(),
                "patch outside its tensor"
            );
            // SAFETY: channel i reads src + i * ch_stride + (0..jhi - jlo),
            // at most `last` <= x.len(), and writes i * seg + a * n_j +
            // (0..n_j) < out.len() (both asserted above).
            unsafe {
                let (s, d) = (x.as_ptr().add(src), out.as_mut_ptr().add(a * n_j));
                Self::copy_row(s, d, (n_i, ch_stride, seg), (n_j, jlo, jhi), zp);
            }
        }
    }

    /// [`ColWriter::patch`] where every row and tap is inside (the
    /// interior of an image): one bounds check for the whole patch, then
    /// plain copies, unrolled for the common kernel widths. Returns false
    /// (writing nothing) unless every row is inside and the whole patch
    /// lies within `x`.
    #[inline(always)]
    fn patch_inside(
        x: &[i8],
        out: &mut [i16],
        (n_i, ch_stride): (usize, usize),
        n_a: usize,
        row: &impl Fn(usize) -> Option<usize>,
        (x0, n_j): (isize, usize),
        zp: i32,
    ) -> bool {
        if n_i == 0 || n_a == 0 || n_a > 8 || n_j == 0 {
            return false;
        }
        let mut rows = [0usize; 8];
        let (mut lo, mut hi) = (usize::MAX, 0usize);
        for (a, r) in rows.iter_mut().enumerate().take(n_a) {
            let Some(v) = row(a) else {
                return false;
            };
            let Ok(v) = usize::try_from(v as isize + x0) else {
                return false;
            };
            *r = v;
            lo = lo.min(v);
            hi = hi.max(v);
        }
        // The last value read: channel n_i - 1, the highest row, tap n_j - 1.
        let Some(last) = (n_i - 1)
            .checked_mul(ch_stride)
            .and_then(|v| v.checked_add(hi + n_j - 1))
        else {
            return false;
        };
        if last >= x.len() || out.len() != n_i * n_a * n_j {
            return false;
        }
        let rows = &rows[..n_a];
        // SAFETY: every read is at most `last` < x.len() and every write
        // below n_i * n_a * n_j = out.len() (checked above).
        unsafe {
            match n_j {
                3 => Self::copy_inside(x, out, (n_i, ch_stride), rows, 3, zp),
                5 => Self::copy_inside(x, out, (n_i, ch_stride), rows, 5, zp),
                7 => Self::copy_inside(x, out, (n_i, ch_stride), rows, 7, zp),
                _ => Self::copy_inside(x, out, (n_i, ch_stride), rows, n_j, zp),
            }
        }
        true
    }

    /// The copy of [`ColWriter::patch_inside`]: for each channel and row,
    /// `n_j` values.
    ///
    /// # Safety
    ///
    /// `(n_i - 1) * ch_stride + max(rows) + n_j <= x.len()` and
    /// `n_i * rows.len() * n_j <= out.len()`.
    #[inline(always)]
    unsafe fn copy_inside(
        x: &[i8],
        out: &mut [i16],
        (n_i, ch_stride): (usize, usize),
        rows: &[usize],
        n_j: usize,
        zp: i32,
    ) {
        let mut d = out.as_mut_ptr();
        for i in 0..n_i {
            let base = i * ch_stride;
            for &r in rows {
                // SAFETY: the caller bounds base + r + n_j by x.len() and
                // the n_i * rows.len() * n_j writes by out.len().
                unsafe {
                    let src = x.as_ptr().add(base + r);
                    for j in 0..n_j {
                        *d.add(j) = (*src.add(j) as i32 - zp) as i16;
                    }
                    d = d.add(n_j);
                }
            }
        }
    }

    /// One row of [`ColWriter::patch`] in every channel: `n_j` values per
    /// channel at `d + i * seg`, zeros outside `jlo..jhi`, `s[i * ch_stride
    /// + j - jlo] - zp` inside.
    ///
    /// # Safety
    ///
    /// The reads `s + i * ch_stride + (0..jhi - jlo)` and the writes
    /// `d + i * seg + (0..n_j)` are in bounds for every `i < n_i`.
    #[inline(always)]
    unsafe fn copy_row(
        s: *const i8,
        d: *mut i16,
        (n_i, ch_stride, seg): (usize, usize, usize),
        (n_j, jlo, jhi): (usize, usize, usize),
        zp: i32,
    ) {
        let (mut s, mut d) = (s, d);
        for _ in 0..n_i {
            // SAFETY: the caller bounds every access.
            unsafe {
                for j in 0..jlo {
                    *d.add(j) = 0;
                }
                for j in jlo..jhi {
                    *d.add(j) = (*s.add(j - jlo) as i32 - zp) as i16;
                }
                for j in jhi..n_j {
                    *d.add(j) = 0;
                }
                s = s.wrapping_add(ch_stride);
                d = d.wrapping_add(seg);
            }
        }
    }

    /// Appends a patch of the CHW tensor `x` tap-major: for each of `n_a`
    /// rows (as in [`ColWriter::patch`]) and each tap `j < n_j` from column
    /// `x0`, the `n_i` channels (`ch_stride` apart) of that pixel, minus
    /// `zp`; zeros for rows outside the image and taps outside `js`. One
    /// bounds check per tap, then a strided copy.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub fn patch_tap_major(
        &mut self,
        x: &[i8],
        n_i: usize,
        ch_stride: usize,
        n_a: usize,
        row: impl Fn(usize) -> Option<usize>,
        n_j: usize,
        x0: isize,
        (jlo, jhi): (usize, usize),
        zp: i32,
    ) {
        let (p, total) = (self.p, n_i * n_a * n_j);
        self.p += total;
        let out = &mut self.h()[p..p + total];
        for (t, dst) in out.chunks_exact_mut(n_i.max(1)).enumerate().take(n_a * n_j) {
            let (a, j) = (t / n_j, t % n_j);
            let src = match row(a) {
                Some(r) if (jlo..jhi).contains(&j) => {
                    // Inside the row: r + x0 + j >= r >= 0.
                    let s = (r as isize + x0 + j as isize) as usize;
                    x.get(s..=s + (n_i - 1) * ch_stride)
                }
                _ => None,
            };
            match src {
                Some(src) => {
                    for (i, d) in dst.iter_mut().enumerate() {
                        // SAFETY: i * ch_stride <= (n_i - 1) * ch_stride <
                        // src.len() (the slice above).
                        let v = unsafe { *src.get_unchecked(i * ch_stride) };
                        *d = (v as i32 - zp) as i16;
                    }
                }
                None => dst.iter_mut().for_each(|d| *d = 0),
            }
        }
    }

    /// Ends a segment: pads the last group with zeros, so that the next
    /// value starts a new group.
    #[inline(always)]
    pub fn end_segment(&mut self) {
        while self.p & 3 != 0 {
            self.push(0);
        }
    }

    /// Ends the column: pads the last group and puts every group in the
    /// SXTB16 order.
    #[inline(always)]
    pub fn finish(mut self) {
        self.end_segment();
        // Words (v0 | v1 << 16, v2 | v3 << 16) -> (v0 | v2 << 16, v1 | v3 << 16).
        for pair in self.col[..self.p / 2].chunks_exact_mut(2) {
            let (w0, w1) = (pair[0], pair[1]);
            pair[0] = (w0 & 0xffff) | (w1 << 16);
            pair[1] = (w0 >> 16) | (w1 & 0xffff_0000);
        }
    }
}

#[cfg(test)]
const fn pack(lo: i32, hi: i32) -> u32 {
    (lo as u16 as u32) | ((hi as u16 as u32) << 16)
}

/// The taps `j < n_j` from column `x0` that read inside a row `w` wide
/// (and, with `valid`, are not masked): `(first, end)`.
#[inline(always)]
pub fn inside(x0: isize, n_j: usize, w: usize, valid: usize) -> (usize, usize) {
    let lo = (-x0).clamp(0, n_j as isize) as usize;
    let hi = ((w as isize - x0).clamp(0, n_j as isize) as usize).min(valid);
    (lo, hi.max(lo))
}

/// Value `t` of a column.
#[inline(always)]
fn col_at(col: &[u32], t: usize) -> i32 {
    let j = t & 3;
    let word = col[(t / 4) * 2 + (j & 1)];
    (if j < 2 {
        word as u16
    } else {
        (word >> 16) as u16
    }) as i16 as i32
}

/// Blocked dot products of int8 weight rows with columns.
pub trait Engine {
    /// Adds to `acc[r]` the dot product of weight row `w[r]` (its first `n`
    /// bytes, int8) with the column `col` (its first `n` values; at least
    /// [`col_words`]`(n)` words), wrapping. `R` is 1, 2 or 3.
    fn rows<const R: usize>(acc: &mut [i32; R], w: [&[u8]; R], col: &[u32], n: usize);
    /// Adds to `acc[c]` the dot product of weight row `w` with column
    /// `col[c]`, wrapping. `C` is 2 or 3.
    fn cols<const C: usize>(acc: &mut [i32; C], w: &[u8], col: [&[u32]; C], n: usize);
}

/// The partial last group: weights read one by one.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
fn tail<const R: usize, const C: usize>(
    acc: &mut [[i32; C]; R],
    w: [&[u8]; R],
    col: [&[u32]; C],
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

/// Word `i` of `col`.
///
/// # Safety
///
/// `i < col.len()`.
#[inline(always)]
unsafe fn cw(col: &[u32], i: usize) -> u32 {
    // SAFETY: the caller guarantees `i` is in bounds.
    unsafe { *col.get_unchecked(i) }
}

/// The DSP engine (see the module doc).
#[derive(Debug, Clone, Copy)]
pub struct Dsp;

/// Groups `from..to` of [`Dsp::rows`] through the (native or emulated)
/// instructions one at a time.
#[inline(always)]
fn dsp_rows_groups<const R: usize>(
    a: &mut [i32; R],
    w: &[&[u8]; R],
    col: &[u32],
    from: usize,
    to: usize,
) {
    for g in from..to {
        // SAFETY: g < n / 4 for the callers' n: 2g + 1 < col_words(n) <=
        // col.len() and 4g + 4 <= n <= w[r].len().
        let (c0, c1) = unsafe { (cw(col, 2 * g), cw(col, 2 * g + 1)) };
        for r in 0..R {
            // SAFETY: as above.
            let word = unsafe { word_at(w[r], 4 * g) };
            a[r] = dsp::smlad(dsp::sxtb16(word), c0, a[r]);
            a[r] = dsp::smlad(dsp::sxtb16_ror8(word), c1, a[r]);
        }
    }
}

/// Groups `from..to` of [`Dsp::cols`] one at a time.
#[inline(always)]
fn dsp_cols_groups<const C: usize>(
    a: &mut [i32; C],
    w: &[u8],
    col: [&[u32]; C],
    from: usize,
    to: usize,
) {
    for g in from..to {
        // SAFETY: g < n / 4: 4g + 4 <= n <= w.len().
        let word = unsafe { word_at(w, 4 * g) };
        let (lo, hi) = (dsp::sxtb16(word), dsp::sxtb16_ror8(word));
        for c in 0..C {
            // SAFETY: g < n / 4: 2g + 1 < col_words(n) <= col[c].len().
            let (c0, c1) = unsafe { (cw(col[c], 2 * g), cw(col[c], 2 * g + 1)) };
            a[c] = dsp::smlad(hi, c1, dsp::smlad(lo, c0, a[c]));
        }
    }
}

impl Engine for Dsp {
    #[inline(always)]
    fn rows<const R: usize>(acc: &mut [i32; R], w: [&[u8]; R], col: &[u32], n: usize) {
        // Bounds once, outside the loops (a failure here is a kernel bug).
        let w = w.map(|r| &r[..n]);
        let col = &col[..col_words(n)];
        let groups = n / 4;
        #[cfg(tinygen_dsp)]
        let done = if groups >= 2 && (1..=3).contains(&R) {
            let pairs = groups / 2;
            // SAFETY: reads `pairs` * 8 weight bytes from each row and
            // `pairs` * 16 column bytes, within the slices bounded above
            // (2 * pairs <= n / 4); registers only otherwise.
            unsafe {
                match R {
                    3 => asm_rows3(acc, &w, col, pairs),
                    2 => asm_rows2(acc, &w, col, pairs),
                    _ => asm_rows1(acc, &w, col, pairs),
                }
            };
            2 * pairs
        } else {
            0
        };
        #[cfg(not(tinygen_dsp))]
        let done = 0;
        let mut a = *acc;
        dsp_rows_groups(&mut a, &w, col, done, groups);
        let mut t = a.map(|v| [v]);
        tail(&mut t, w, [col], groups * 4, n);
        *acc = t.map(|v| v[0]);
    }

    #[inline(always)]
    fn cols<const C: usize>(acc: &mut [i32; C], w: &[u8], col: [&[u32]; C], n: usize) {
        let w = &w[..n];
        let col = col.map(|c| &c[..col_words(n)]);
        let groups = n / 4;
        #[cfg(tinygen_dsp)]
        let done = if groups >= 2 && (2..=3).contains(&C) {
            let pairs = groups / 2;
            // SAFETY: reads `pairs` * 8 weight bytes and `pairs` * 16
            // bytes of each column, within the slices bounded above.
            unsafe {
                if C == 3 {
                    asm_cols3(acc, w, &col, pairs)
                } else {
                    asm_cols2(acc, w, &col, pairs)
                }
            };
            2 * pairs
        } else {
            0
        };
        #[cfg(not(tinygen_dsp))]
        let done = 0;
        dsp_cols_groups(acc, w, col, done, groups);
        let mut t = [*acc];
        tail(&mut t, [w], col, groups * 4, n);
        *acc = t[0];
    }
}

/// Three weight rows over one column, two groups of four taps per
/// iteration: 34 instructions per 24 multiply-accumulates.
///
/// # Safety
///
/// Each `w[r]` holds at least `8 * pairs` bytes and `col` at least
/// `4 * pairs` words; `pairs >= 1`.
#[cfg(tinygen_dsp)]
#[inline(always)]
unsafe fn asm_rows3<const R: usize>(acc: &mut [i32; R], w: &[&[u8]; R], col: &[u32], pairs: usize) {
    let (mut a0, mut a1, mut a2) = (acc[0], acc[1], acc[2]);
    // SAFETY: the caller bounds the reads; every register written is an
    // output or clobber; no stack use.
    unsafe {
        core::arch::asm!(
            "2:",
            "ldrd {c0}, {c1}, [{cp}], #8",
            "ldr {t}, [{w0}], #4",
            "sxtb16 {u}, {t}",
            "sxtb16 {t}, {t}, ror #8",
            "smlad {a0}, {u}, {c0}, {a0}",
            "smlad {a0}, {t}, {c1}, {a0}",
            "ldr {t}, [{w1}], #4",
            "sxtb16 {u}, {t}",
            "sxtb16 {t}, {t}, ror #8",
            "smlad {a1}, {u}, {c0}, {a1}",
            "smlad {a1}, {t}, {c1}, {a1}",
            "ldr {t}, [{w2}], #4",
            "sxtb16 {u}, {t}",
            "sxtb16 {t}, {t}, ror #8",
            "smlad {a2}, {u}, {c0}, {a2}",
            "smlad {a2}, {t}, {c1}, {a2}",
            "ldrd {c0}, {c1}, [{cp}], #8",
            "ldr {t}, [{w0}], #4",
            "sxtb16 {u}, {t}",
            "sxtb16 {t}, {t}, ror #8",
            "smlad {a0}, {u}, {c0}, {a0}",
            "smlad {a0}, {t}, {c1}, {a0}",
            "ldr {t}, [{w1}], #4",
            "sxtb16 {u}, {t}",
            "sxtb16 {t}, {t}, ror #8",
            "smlad {a1}, {u}, {c0}, {a1}",
            "smlad {a1}, {t}, {c1}, {a1}",
            "ldr {t}, [{w2}], #4",
            "sxtb16 {u}, {t}",
            "sxtb16 {t}, {t}, ror #8",
            "smlad {a2}, {u}, {c0}, {a2}",
            "smlad {a2}, {t}, {c1}, {a2}",
            "subs {k}, {k}, #1",
            "bne 2b",
            a0 = inout(reg) a0,
            a1 = inout(reg) a1,
            a2 = inout(reg) a2,
            w0 = inout(reg) w[0].as_ptr() => _,
            w1 = inout(reg) w[1].as_ptr() => _,
            w2 = inout(reg) w[2].as_ptr() => _,
            cp = inout(reg) col.as_ptr() => _,
            k = inout(reg) pairs => _,
            c0 = out(reg) _,
            c1 = out(reg) _,
            t = out(reg) _,
            u = out(reg) _,
            options(nostack, readonly),
        );
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
}

/// Two weight rows over one column, two groups per iteration: 24
/// instructions per 16 multiply-accumulates.
///
/// # Safety
///
/// `R >= 2`; each of the first two rows holds at least `8 * pairs` bytes
/// and `col` at least `4 * pairs` words; `pairs >= 1`.
#[cfg(tinygen_dsp)]
#[inline(always)]
unsafe fn asm_rows2<const R: usize>(acc: &mut [i32; R], w: &[&[u8]; R], col: &[u32], pairs: usize) {
    let (mut a0, mut a1) = (acc[0], acc[1]);
    // SAFETY: the caller bounds the reads; registers only otherwise.
    unsafe {
        core::arch::asm!(
            "2:",
            "ldrd {c0}, {c1}, [{cp}], #8",
            "ldr {t}, [{w0}], #4",
            "sxtb16 {u}, {t}",
            "sxtb16 {t}, {t}, ror #8",
            "smlad {a0}, {u}, {c0}, {a0}",
            "smlad {a0}, {t}, {c1}, {a0}",
            "ldr {t}, [{w1}], #4",
            "sxtb16 {u}, {t}",
            "sxtb16 {t}, {t}, ror #8",
            "smlad {a1}, {u}, {c0}, {a1}",
            "smlad {a1}, {t}, {c1}, {a1}",
            "ldrd {c0}, {c1}, [{cp}], #8",
            "ldr {t}, [{w0}], #4",
            "sxtb16 {u}, {t}",
            "sxtb16 {t}, {t}, ror #8",
            "smlad {a0}, {u}, {c0}, {a0}",
            "smlad {a0}, {t}, {c1}, {a0}",
            "ldr {t}, [{w1}], #4",
            "sxtb16 {u}, {t}",
            "sxtb16 {t}, {t}, ror #8",
            "smlad {a1}, {u}, {c0}, {a1}",
            "smlad {a1}, {t}, {c1}, {a1}",
            "subs {k}, {k}, #1",
            "bne 2b",
            a0 = inout(reg) a0,
            a1 = inout(reg) a1,
            w0 = inout(reg) w[0].as_ptr() => _,
            w1 = inout(reg) w[1].as_ptr() => _,
            cp = inout(reg) col.as_ptr() => _,
            k = inout(reg) pairs => _,
            c0 = out(reg) _,
            c1 = out(reg) _,
            t = out(reg) _,
            u = out(reg) _,
            options(nostack, readonly),
        );
    }
    acc[0] = a0;
    acc[1] = a1;
}

/// One weight row over one column, two groups per iteration: 14
/// instructions per 8 multiply-accumulates.
///
/// # Safety
///
/// `R >= 1`; the first row holds at least `8 * pairs` bytes and `col` at
/// least `4 * pairs` words; `pairs >= 1`.
#[cfg(tinygen_dsp)]
#[inline(always)]
unsafe fn asm_rows1<const R: usize>(acc: &mut [i32; R], w: &[&[u8]; R], col: &[u32], pairs: usize) {
    let mut a0 = acc[0];
    // SAFETY: the caller bounds the reads; registers only otherwise.
    unsafe {
        core::arch::asm!(
            "2:",
            "ldrd {c0}, {c1}, [{cp}], #8",
            "ldr {t}, [{w0}], #4",
            "sxtb16 {u}, {t}",
            "sxtb16 {t}, {t}, ror #8",
            "smlad {a0}, {u}, {c0}, {a0}",
            "smlad {a0}, {t}, {c1}, {a0}",
            "ldrd {c0}, {c1}, [{cp}], #8",
            "ldr {t}, [{w0}], #4",
            "sxtb16 {u}, {t}",
            "sxtb16 {t}, {t}, ror #8",
            "smlad {a0}, {u}, {c0}, {a0}",
            "smlad {a0}, {t}, {c1}, {a0}",
            "subs {k}, {k}, #1",
            "bne 2b",
            a0 = inout(reg) a0,
            w0 = inout(reg) w[0].as_ptr() => _,
            cp = inout(reg) col.as_ptr() => _,
            k = inout(reg) pairs => _,
            c0 = out(reg) _,
            c1 = out(reg) _,
            t = out(reg) _,
            u = out(reg) _,
            options(nostack, readonly),
        );
    }
    acc[0] = a0;
}

/// One weight row over two columns, two groups per iteration: 20
/// instructions per 16 multiply-accumulates.
///
/// # Safety
///
/// `C >= 2`; `w` holds at least `8 * pairs` bytes and each of the first
/// two columns at least `4 * pairs` words; `pairs >= 1`.
#[cfg(tinygen_dsp)]
#[inline(always)]
unsafe fn asm_cols2<const C: usize>(acc: &mut [i32; C], w: &[u8], col: &[&[u32]; C], pairs: usize) {
    let (mut a0, mut a1) = (acc[0], acc[1]);
    // SAFETY: the caller bounds the reads; registers only otherwise.
    unsafe {
        core::arch::asm!(
            "2:",
            "ldrd {x0}, {x1}, [{ca}], #8",
            "ldrd {y0}, {y1}, [{cb}], #8",
            "ldr {t}, [{wp}], #4",
            "sxtb16 {u}, {t}",
            "sxtb16 {t}, {t}, ror #8",
            "smlad {a0}, {u}, {x0}, {a0}",
            "smlad {a0}, {t}, {x1}, {a0}",
            "smlad {a1}, {u}, {y0}, {a1}",
            "smlad {a1}, {t}, {y1}, {a1}",
            "ldrd {x0}, {x1}, [{ca}], #8",
            "ldrd {y0}, {y1}, [{cb}], #8",
            "ldr {t}, [{wp}], #4",
            "sxtb16 {u}, {t}",
            "sxtb16 {t}, {t}, ror #8",
            "smlad {a0}, {u}, {x0}, {a0}",
            "smlad {a0}, {t}, {x1}, {a0}",
            "smlad {a1}, {u}, {y0}, {a1}",
            "smlad {a1}, {t}, {y1}, {a1}",
            "subs {k}, {k}, #1",
            "bne 2b",
            a0 = inout(reg) a0,
            a1 = inout(reg) a1,
            wp = inout(reg) w.as_ptr() => _,
            ca = inout(reg) col[0].as_ptr() => _,
            cb = inout(reg) col[1].as_ptr() => _,
            k = inout(reg) pairs => _,
            t = out(reg) _,
            u = out(reg) _,
            x0 = out(reg) _,
            x1 = out(reg) _,
            y0 = out(reg) _,
            y1 = out(reg) _,
            options(nostack, readonly),
        );
    }
    acc[0] = a0;
    acc[1] = a1;
}

/// One weight row over three columns, two groups per iteration: 26
/// instructions per 24 multiply-accumulates (each weight word is widened
/// once for three columns; twelve registers, all the allocator has).
///
/// # Safety
///
/// `C >= 3`; `w` holds at least `8 * pairs` bytes and each of the first
/// three columns at least `4 * pairs` words; `pairs >= 1`.
#[cfg(tinygen_dsp)]
#[inline(always)]
unsafe fn asm_cols3<const C: usize>(acc: &mut [i32; C], w: &[u8], col: &[&[u32]; C], pairs: usize) {
    let (mut a0, mut a1, mut a2) = (acc[0], acc[1], acc[2]);
    // SAFETY: the caller bounds the reads; registers only otherwise.
    unsafe {
        core::arch::asm!(
            "2:",
            "ldr {t}, [{wp}], #4",
            "sxtb16 {u}, {t}",
            "sxtb16 {t}, {t}, ror #8",
            "ldrd {x}, {y}, [{ca}], #8",
            "smlad {a0}, {u}, {x}, {a0}",
            "smlad {a0}, {t}, {y}, {a0}",
            "ldrd {x}, {y}, [{cb}], #8",
            "smlad {a1}, {u}, {x}, {a1}",
            "smlad {a1}, {t}, {y}, {a1}",
            "ldrd {x}, {y}, [{cc}], #8",
            "smlad {a2}, {u}, {x}, {a2}",
            "smlad {a2}, {t}, {y}, {a2}",
            "ldr {t}, [{wp}], #4",
            "sxtb16 {u}, {t}",
            "sxtb16 {t}, {t}, ror #8",
            "ldrd {x}, {y}, [{ca}], #8",
            "smlad {a0}, {u}, {x}, {a0}",
            "smlad {a0}, {t}, {y}, {a0}",
            "ldrd {x}, {y}, [{cb}], #8",
            "smlad {a1}, {u}, {x}, {a1}",
            "smlad {a1}, {t}, {y}, {a1}",
            "ldrd {x}, {y}, [{cc}], #8",
            "smlad {a2}, {u}, {x}, {a2}",
            "smlad {a2}, {t}, {y}, {a2}",
            "subs {k}, {k}, #1",
            "bne 2b",
            a0 = inout(reg) a0,
            a1 = inout(reg) a1,
            a2 = inout(reg) a2,
            wp = inout(reg) w.as_ptr() => _,
            ca = inout(reg) col[0].as_ptr() => _,
            cb = inout(reg) col[1].as_ptr() => _,
            cc = inout(reg) col[2].as_ptr() => _,
            k = inout(reg) pairs => _,
            t = out(reg) _,
            u = out(reg) _,
            x = out(reg) _,
            y = out(reg) _,
            options(nostack, readonly),
        );
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
}

/// The portable engine (see the module doc).
#[derive(Debug, Clone, Copy)]
pub struct Portable;

/// Four packed column values of group `g`, in tap order.
#[inline(always)]
fn group(col: &[u32], g: usize) -> [i32; 4] {
    let at = 2 * g;
    // SAFETY: callers pass g < n / 4, so at + 1 < col_words(n) <=
    // col.len().
    let (w0, w1) = unsafe { (cw(col, at), cw(col, at + 1)) };
    [
        w0 as u16 as i16 as i32,
        w1 as u16 as i16 as i32,
        (w0 >> 16) as u16 as i16 as i32,
        (w1 >> 16) as u16 as i16 as i32,
    ]
}

/// Four weights of group `g`, sign-extended.
#[inline(always)]
fn weights(w: &[u8], g: usize) -> [i32; 4] {
    // SAFETY: callers pass g < n / 4 <= w.len() / 4.
    let b = unsafe { w.get_unchecked(4 * g..4 * g + 4) };
    [
        b[0] as i8 as i32,
        b[1] as i8 as i32,
        b[2] as i8 as i32,
        b[3] as i8 as i32,
    ]
}

#[inline(always)]
fn dot4(w: [i32; 4], c: [i32; 4]) -> i32 {
    w[0] * c[0] + w[1] * c[1] + w[2] * c[2] + w[3] * c[3]
}

impl Engine for Portable {
    #[inline(always)]
    fn rows<const R: usize>(acc: &mut [i32; R], w: [&[u8]; R], col: &[u32], n: usize) {
        let w = w.map(|r| &r[..n]);
        let col = &col[..col_words(n)];
        let groups = n / 4;
        let mut a = *acc;
        for g in 0..groups {
            let c = group(col, g);
            for r in 0..R {
                a[r] = a[r].wrapping_add(dot4(weights(w[r], g), c));
            }
        }
        let mut t = a.map(|v| [v]);
        tail(&mut t, w, [col], groups * 4, n);
        *acc = t.map(|v| v[0]);
    }

    #[inline(always)]
    fn cols<const C: usize>(acc: &mut [i32; C], w: &[u8], col: [&[u32]; C], n: usize) {
        let w = &w[..n];
        let col = col.map(|c| &c[..col_words(n)]);
        let groups = n / 4;
        for g in 0..groups {
            let wv = weights(w, g);
            for c in 0..C {
                acc[c] = acc[c].wrapping_add(dot4(wv, group(col[c], g)));
            }
        }
        let mut t = [*acc];
        tail(&mut t, [w], col, groups * 4, n);
        *acc = t[0];
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
            wr.finish();
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
    fn patch_zeroes_taps_outside_and_masked() {
        let row = [1i8, 2, 3, 4, 5];
        for x0 in -6isize..7 {
            for k in 0..6 {
                for valid in 0..=k {
                    let mut col = [0x5555_5555u32; 4];
                    let mut wr = ColWriter::new(&mut col);
                    let js = inside(x0, k, row.len(), valid);
                    wr.patch(&row, 1, 0, 1, |_| Some(0), k, x0, js, 10);
                    wr.finish();
                    for j in 0..k {
                        let ix = x0 + j as isize;
                        let want = if j < valid && (0..5).contains(&ix) {
                            row[ix as usize] as i32 - 10
                        } else {
                            0
                        };
                        assert_eq!(col_at(&col, j), want, "x0 {x0} k {k} valid {valid} j {j}");
                    }
                }
            }
        }
    }

    #[test]
    fn dsp_emulation_matches_definition() {
        let a = 0x80ff_7f01u32;
        assert_eq!(dsp::sxtb16(a), 0xffff_0001);
        assert_eq!(dsp::sxtb16_ror8(a) as u16 as i16, 127);
        assert_eq!((dsp::sxtb16_ror8(a) >> 16) as u16 as i16, -128);
        let x = pack(-255, 300);
        let y = pack(-128, 127);
        assert_eq!(dsp::smlad(x, y, 5), 5 + 255 * 128 + 300 * 127);
        // Wraps like the core.
        assert_eq!(
            dsp::smlad(x, y, i32::MAX),
            i32::MAX.wrapping_add(255 * 128 + 300 * 127)
        );
    }

    /// Random rows and columns, and the plain dot products.
    fn data(seed: u64, rows: usize, cols: usize, n: usize) -> (Vec<Vec<u8>>, Vec<Vec<i32>>) {
        let mut rng = crate::Rng::new(seed);
        let w = (0..rows)
            .map(|_| (0..n).map(|_| rng.next_u32() as u8).collect())
            .collect();
        let v = (0..cols)
            .map(|_| {
                (0..n)
                    .map(|_| (rng.next_u32() % 511) as i32 - 255)
                    .collect()
            })
            .collect();
        (w, v)
    }

    fn dot(w: &[u8], v: &[i32]) -> i32 {
        w.iter()
            .zip(v)
            .fold(7i32, |a, (&w, &v)| a.wrapping_add(w as i8 as i32 * v))
    }

    fn rows_agree<const R: usize>(seed: u64, n: usize) {
        let (w, v) = data(seed, R, 1, n);
        let mut col = std::vec![0u32; col_words(n)];
        let mut wr = ColWriter::new(&mut col);
        v[0].iter().for_each(|&x| wr.push(x));
        wr.finish();
        let want: [i32; R] = core::array::from_fn(|r| dot(&w[r], &v[0]));
        let wr: [&[u8]; R] = core::array::from_fn(|r| &w[r][..]);
        let mut a = [7i32; R];
        Dsp::rows(&mut a, wr, &col, n);
        assert_eq!(a, want, "dsp rows n {n}");
        let mut a = [7i32; R];
        Portable::rows(&mut a, wr, &col, n);
        assert_eq!(a, want, "portable rows n {n}");
    }

    fn cols_agree<const C: usize>(seed: u64, n: usize) {
        let (w, v) = data(seed, 1, C, n);
        let cols: Vec<Vec<u32>> = v
            .iter()
            .map(|vals| {
                let mut col = std::vec![0u32; col_words(n)];
                let mut wr = ColWriter::new(&mut col);
                vals.iter().for_each(|&x| wr.push(x));
                wr.finish();
                col
            })
            .collect();
        let want: [i32; C] = core::array::from_fn(|c| dot(&w[0], &v[c]));
        let c: [&[u32]; C] = core::array::from_fn(|c| &cols[c][..]);
        let mut a = [7i32; C];
        Dsp::cols(&mut a, &w[0], c, n);
        assert_eq!(a, want, "dsp cols {C} n {n}");
        let mut a = [7i32; C];
        Portable::cols(&mut a, &w[0], c, n);
        assert_eq!(a, want, "portable cols {C} n {n}");
    }

    #[test]
    fn engines_equal_plain_dot_products() {
        for n in 0..40 {
            rows_agree::<1>(n as u64, n);
            rows_agree::<2>(n as u64 + 100, n);
            rows_agree::<3>(n as u64 + 200, n);
            cols_agree::<2>(n as u64 + 300, n);
            cols_agree::<3>(n as u64 + 400, n);
        }
    }
}
