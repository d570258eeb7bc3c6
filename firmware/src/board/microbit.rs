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

use crate::bsp;
use crate::semihosting::{exit, HostFiles};
use crate::Failure;

/// TIMER0's count rate: 16 MHz / 2^1.
const TICK_HZ: u32 = 8_000_000;

/// The micro:bit v1 under QEMU.
pub struct Microbit {
    /// The host files the samples and their counts go to.
    files: HostFiles,
}

impl bsp::Board for Microbit {
    /// `qemu-run.sh` starts `-machine microbit` for an ELF holding this
    /// string.
    const NAME: &'static str = "QEMU microbit (nRF51822, Cortex-M0)";
    const COUNT_UNIT: &'static str = "instructions";
    const COUNTER: &'static str = "TIMER0";
    /// TIMER0's rate, which the counter counts (there is no SysTick).
    const TICK_HZ: u32 = TICK_HZ;
    /// Instructions per TIMER0 tick under `-icount shift=0` (1 ns each):
    /// 1e9 / 8 MHz = 125.
    const COUNTS_PER_TICK: u64 = 1_000_000_000 / TICK_HZ as u64;
    /// Virtual time: 1 ms = 1e6 instructions.
    const BLINK_MS: u32 = 1;

    fn init() -> Self {
        ticks::start();
        matrix_led_init();
        Microbit {
            files: HostFiles::new(),
        }
    }

    fn set_led(&mut self, on: bool) -> Result<(), Failure> {
        // SAFETY: write-one-to-set/clear GPIO registers of the nRF51; only
        // this module touches P0.13 and P0.04, from thread mode.
        unsafe {
            if on {
                gpio::OUTSET.write_volatile(ROW1);
            } else {
                gpio::OUTCLR.write_volatile(ROW1);
            }
        }
        Ok(())
    }

    /// Creates (truncates) the host files [`crate::config::RAW_OUT`] and
    /// [`crate::config::COUNTS_OUT`], in binary mode.
    fn open_samples(&mut self) -> Result<(), Failure> {
        self.files.open()
    }

    fn write_sample(&mut self, _index: u32, pixels: &[u8]) -> Result<(), Failure> {
        self.files.write_sample(pixels)
    }

    /// Appends one sample's instruction count (u64, little-endian).
    fn write_count(&mut self, _index: u32, count: u64) -> Result<(), Failure> {
        self.files.write_count(count)
    }

    fn close_samples(&mut self) -> Result<(), Failure> {
        self.files.close()
    }

    /// QEMU exits with status 0 on success, 1 on failure.
    fn exit(success: bool) -> ! {
        exit(success)
    }
}

/// nRF51 GPIO (P0) registers.
mod gpio {
    pub const OUTSET: *mut u32 = 0x5000_0508 as *mut u32;
    pub const OUTCLR: *mut u32 = 0x5000_050C as *mut u32;
    pub const DIRSET: *mut u32 = 0x5000_0518 as *mut u32;
}

/// The status LED is LED (1, 1) of the micro:bit's matrix: lit while ROW1
/// (P0.13) is high and COL1 (P0.04) is low.
const ROW1: u32 = 1 << 13;
const COL1: u32 = 1 << 4;

/// Both pins outputs, low: the LED off.
fn matrix_led_init() {
    // SAFETY: as in `set_led`.
    unsafe {
        gpio::OUTCLR.write_volatile(ROW1 | COL1);
        gpio::DIRSET.write_volatile(ROW1 | COL1);
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
