//! QEMU `mps2-an386` (Arm MPS2 board, AN386 image: Cortex-M4F).
//!
//! - Logs: defmt over semihosting stdout (`defmt-semihosting`), decoded on
//!   the host by `defmt-print` (see `qemu-run.sh`).
//! - Status LED: user LED 0 of the FPGA I/O block (FPGAIO at 0x4002_8000,
//!   register LED0 at offset 0, bit 0).
//! - Counter: SysTick at the 25 MHz core clock. Under `-icount shift=0` one
//!   instruction is 1 ns of virtual time, so one tick is 40 instructions.
//! - Samples: written to a host file over semihosting.
//! - Exit: semihosting `SYS_EXIT`; QEMU exits 0 on success, 1 otherwise.

use core::convert::Infallible;

use defmt_semihosting as _; // the global logger

use crate::ticks;

#[path = "semihosting.rs"]
mod semihosting;
pub use semihosting::{exit, Sink};

/// Board name, for the log.
pub const NAME: &str = "QEMU mps2-an386";
/// The counter, for the log.
pub const COUNTER: &str = "SysTick";
/// What [`COUNTS_PER_TICK`] counts.
pub const COUNT_UNIT: &str = "instructions";
/// Core clock of the mps2 boards, which clocks SysTick.
pub const TICK_HZ: u32 = 25_000_000;
/// Instructions per SysTick tick under `-icount shift=0` (1 ns each):
/// 1e9 / 25 MHz.
pub const COUNTS_PER_TICK: u64 = 1_000_000_000 / TICK_HZ as u64;
/// Length of each of the final blinks (virtual time: 1 ms = 1e6 instructions).
pub const BLINK_MS: u32 = 1;

/// The board's peripherals, as the app uses them.
pub struct Board {
    /// Status LED.
    pub led: FpgaioLed,
    /// A delay (SysTick-based).
    pub delay: TickDelay,
}

/// Takes the core peripherals and starts the tick counter.
pub fn init() -> Board {
    let cp = defmt::unwrap!(cortex_m::Peripherals::take());
    ticks::start(cp.SYST);
    Board {
        led: FpgaioLed { bit: 0 },
        delay: TickDelay { hz: TICK_HZ },
    }
}

/// A user LED of the MPS2 FPGA I/O block (`LED0` register, one bit per LED).
pub struct FpgaioLed {
    bit: u8,
}

impl FpgaioLed {
    const LED0: *mut u32 = 0x4002_8000 as *mut u32;

    fn update(&mut self, on: bool) {
        let mask = 1u32 << self.bit;
        // SAFETY: LED0 is the FPGAIO LED register of mps2-an386, a plain
        // read/write 32-bit register; this firmware is single-threaded and
        // no interrupt handler touches it.
        unsafe {
            let v = Self::LED0.read_volatile();
            Self::LED0.write_volatile(if on { v | mask } else { v & !mask });
        }
    }
}

impl embedded_hal::digital::ErrorType for FpgaioLed {
    type Error = Infallible;
}

impl embedded_hal::digital::OutputPin for FpgaioLed {
    fn set_high(&mut self) -> Result<(), Infallible> {
        self.update(true);
        Ok(())
    }
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.update(false);
        Ok(())
    }
}

/// [`embedded_hal::delay::DelayNs`] by busy-waiting on the SysTick counter
/// (which [`init`] starts). The mps2 FPGA timers would do as well; SysTick is
/// already running.
pub struct TickDelay {
    hz: u32,
}

impl embedded_hal::delay::DelayNs for TickDelay {
    fn delay_ns(&mut self, ns: u32) {
        let ticks = (u64::from(ns) * u64::from(self.hz)).div_ceil(1_000_000_000);
        let end = ticks::now() + ticks;
        while ticks::now() < end {}
    }
}
