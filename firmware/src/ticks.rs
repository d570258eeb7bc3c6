//! A free-running 64-bit tick counter over SysTick.
//!
//! SysTick counts down from 2^24 - 1 at the core clock; its exception counts
//! the wraps. On QEMU under `-icount shift=0` one instruction takes 1 ns of
//! virtual time, so at mps2's 25 MHz one tick is 40 instructions; on a real
//! chip a tick is one core cycle.

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::{SCB, SYST};
use cortex_m_rt::exception;

const RELOAD: u32 = 0x00FF_FFFF;

static WRAPS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    // Load and store, not fetch_add: ARMv6-M (thumbv6m) has no atomic
    // read-modify-write, and only this handler writes WRAPS.
    WRAPS.store(
        WRAPS.load(Ordering::Relaxed).wrapping_add(1),
        Ordering::Relaxed,
    );
}

/// Starts SysTick as a free-running counter at the core clock.
pub fn start(mut syst: SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(RELOAD);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

/// Ticks since [`start`].
pub fn now() -> u64 {
    loop {
        let wraps = WRAPS.load(Ordering::Acquire);
        let val = SYST::get_current();
        // A wrap whose exception is pending (not yet counted) while the value
        // read is already past the reload.
        let pending = SCB::is_pendst_pending() && val > RELOAD / 2;
        if WRAPS.load(Ordering::Acquire) == wraps {
            let wraps = u64::from(wraps) + u64::from(pending);
            return (wraps << 24) + u64::from(RELOAD - val);
        }
    }
}
