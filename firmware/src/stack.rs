//! The stack's high-water mark (micro:bit): [`paint`] fills the free stack
//! with a pattern at startup, [`used`] finds the deepest word overwritten
//! since. The stack runs from the end of RAM (`_stack_start`) down to the
//! end of the statics (`_stack_end`, cortex-m-rt's symbols).

const PATTERN: u32 = 0x5354_4b21;

extern "C" {
    static mut _stack_end: u32;
    static mut _stack_start: u32;
}

/// Bytes between the end of the statics and the end of RAM.
pub fn size() -> usize {
    let (lo, hi) = bounds();
    hi - lo
}

fn bounds() -> (usize, usize) {
    (
        (&raw const _stack_end) as usize,
        (&raw const _stack_start) as usize,
    )
}

/// Fills the stack below the current frame (less a margin) with the
/// pattern.
#[inline(never)]
pub fn paint() {
    let (lo, _) = bounds();
    let sp = cortex_m::register::msp::read() as usize;
    let mut p = lo;
    // 64 bytes below the stack pointer: this function's own frame.
    while p + 4 <= sp - 64 {
        // SAFETY: [lo, sp - 64) is free stack (nothing lives below the
        // stack pointer) between the statics and this frame; word-aligned.
        unsafe { (p as *mut u32).write_volatile(PATTERN) };
        p += 4;
    }
}

/// Bytes of stack used at the deepest since [`paint`].
pub fn used() -> usize {
    let (lo, hi) = bounds();
    let mut p = lo;
    // SAFETY: reads of the stack region, word-aligned.
    while p < hi && unsafe { (p as *const u32).read_volatile() } == PATTERN {
        p += 4;
    }
    hi - p
}
