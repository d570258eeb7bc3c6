//! BBC micro:bit v1 (Nordic nRF51822: Cortex-M0 at 16 MHz, 256 KiB flash,
//! 16 KiB RAM), run under QEMU's `microbit` machine.
//!
//! - Logs: defmt over semihosting stdout (`defmt-semihosting`), decoded on
//!   the host by `defmt-print`, as on the QEMU Cortex-M4 board.
//! - Status LED: the top-left LED of the 5x5 matrix (ROW1 = P0.13 driven
//!   high, COL1 = P0.04 held low).
//! - Counter: the nRF51's TIMER0, 32-bit, at 8 MHz (16 MHz HFCLK, prescaler
//!   1). The nRF51's Cortex-M0 has no SysTick, so the counter is a
//!   peripheral of the chip, the same on QEMU and on a real micro:bit. Under
//!   `-icount shift=0` each instruction is 1 ns of virtual time, so one tick
//!   is 125 instructions (at 16 MHz, 62.5: not a whole number).
//! - Samples: written to a host file over semihosting.
//! - Exit: semihosting `SYS_EXIT`; QEMU exits 0 on success, 1 otherwise.

use core::convert::Infallible;

use defmt_semihosting as _; // the global logger

#[path = "semihosting.rs"]
mod semihosting;
pub use semihosting::{exit, Sink};

/// Board name, for the log.
pub const NAME: &str = "QEMU microbit (nRF51822, Cortex-M0)";
/// The counter, for the log.
pub const COUNTER: &str = "TIMER0";
/// What [`COUNTS_PER_TICK`] counts.
pub const COUNT_UNIT: &str = "instructions";
/// TIMER0's count rate: 16 MHz / 2^1.
pub const TICK_HZ: u32 = 8_000_000;
/// Instructions per TIMER0 tick under `-icount shift=0` (1 ns each):
/// 1e9 / 8 MHz.
pub const COUNTS_PER_TICK: u64 = 1_000_000_000 / TICK_HZ as u64;
/// Length of each of the final blinks (virtual time: 1 ms = 1e6 instructions).
pub const BLINK_MS: u32 = 1;

/// The board's peripherals, as the app uses them.
pub struct Board {
    /// Status LED.
    pub led: MatrixLed,
    /// A delay on the TIMER0 counter.
    pub delay: TickDelay,
}

/// Starts the tick counter and sets up the status LED.
pub fn init() -> Board {
    ticks::start();
    Board {
        led: MatrixLed::new(),
        delay: TickDelay,
    }
}

/// nRF51 GPIO (P0) registers.
mod gpio {
    pub const OUTSET: *mut u32 = 0x5000_0508 as *mut u32;
    pub const OUTCLR: *mut u32 = 0x5000_050C as *mut u32;
    pub const DIRSET: *mut u32 = 0x5000_0518 as *mut u32;
}

/// LED (1, 1) of the micro:bit's matrix: lit while ROW1 (P0.13) is high
/// and COL1 (P0.04) is low.
pub struct MatrixLed;

impl MatrixLed {
    const ROW1: u32 = 1 << 13;
    const COL1: u32 = 1 << 4;

    fn new() -> Self {
        // SAFETY: write-one-to-set/clear GPIO registers of the nRF51; only
        // this driver touches P0.13 and P0.04, from thread mode.
        unsafe {
            gpio::OUTCLR.write_volatile(Self::ROW1 | Self::COL1);
            gpio::DIRSET.write_volatile(Self::ROW1 | Self::COL1);
        }
        MatrixLed
    }
}

impl embedded_hal::digital::ErrorType for MatrixLed {
    type Error = Infallible;
}

impl embedded_hal::digital::OutputPin for MatrixLed {
    fn set_high(&mut self) -> Result<(), Infallible> {
        // SAFETY: as in `new`.
        unsafe { gpio::OUTSET.write_volatile(Self::ROW1) };
        Ok(())
    }
    fn set_low(&mut self) -> Result<(), Infallible> {
        // SAFETY: as in `new`.
        unsafe { gpio::OUTCLR.write_volatile(Self::ROW1) };
        Ok(())
    }
}

/// [`embedded_hal::delay::DelayNs`] by busy-waiting on the TIMER0 counter.
pub struct TickDelay;

impl embedded_hal::delay::DelayNs for TickDelay {
    fn delay_ns(&mut self, ns: u32) {
        let ticks = (u64::from(ns) * u64::from(TICK_HZ)).div_ceil(1_000_000_000);
        let end = ticks::now() + ticks;
        while ticks::now() < end {}
    }
}

/// A free-running 64-bit tick counter over the nRF51's TIMER0 (32-bit
/// mode, 8 MHz): the high word counts the wraps that [`now`] sees, so it
/// must be called at least once per wrap (2^32 ticks, 537 s; the sampling
/// loop calls it around every sample).
pub mod ticks {
    use core::sync::atomic::{AtomicU32, Ordering};

    const BASE: usize = 0x4000_8000;
    const TASKS_START: *mut u32 = BASE as *mut u32;
    const TASKS_CLEAR: *mut u32 = (BASE + 0x00C) as *mut u32;
    const TASKS_CAPTURE0: *mut u32 = (BASE + 0x040) as *mut u32;
    const MODE: *mut u32 = (BASE + 0x504) as *mut u32;
    const BITMODE: *mut u32 = (BASE + 0x508) as *mut u32;
    const PRESCALER: *mut u32 = (BASE + 0x510) as *mut u32;
    const CC0: *mut u32 = (BASE + 0x540) as *mut u32;

    static LAST: AtomicU32 = AtomicU32::new(0);
    static HIGH: AtomicU32 = AtomicU32::new(0);

    /// Starts TIMER0 as a 32-bit timer at 16 MHz / 2.
    pub fn start() {
        // SAFETY: TIMER0's registers; this module is its only user, in
        // thread mode.
        unsafe {
            MODE.write_volatile(0); // timer
            BITMODE.write_volatile(3); // 32 bit
            PRESCALER.write_volatile(1); // 16 MHz / 2^1
            TASKS_CLEAR.write_volatile(1);
            TASKS_START.write_volatile(1);
        }
    }

    /// Ticks since [`start`].
    pub fn now() -> u64 {
        // SAFETY: capture the counter into CC[0], then read it (as in
        // `start`).
        let low = unsafe {
            TASKS_CAPTURE0.write_volatile(1);
            CC0.read_volatile()
        };
        // Single-threaded (no interrupt reads the counter): a load and a
        // store, as ARMv6-M has no atomic read-modify-write.
        let mut high = HIGH.load(Ordering::Relaxed);
        if low < LAST.load(Ordering::Relaxed) {
            high += 1;
            HIGH.store(high, Ordering::Relaxed);
        }
        LAST.store(low, Ordering::Relaxed);
        (u64::from(high) << 32) | u64::from(low)
    }
}
