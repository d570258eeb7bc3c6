//! The one trait every board implements (`src/board/*.rs`), and all that the
//! sampling loop in `main.rs` knows of a board.
//!
//! Logging is not part of it: each board module links its defmt global
//! logger (`defmt-semihosting` under QEMU, `defmt-rtt` on a chip) and its
//! panic handler, and the app logs with the `defmt` macros.

use crate::Failure;

/// A board: its clock and counter constants, a status LED, a delay, the tick
/// counter, where the samples go, and how the program ends.
pub trait Board: Sized {
    /// Board name, for the log.
    const NAME: &'static str;
    /// What the counter counts: `"instructions"` under QEMU `-icount
    /// shift=0`, `"cycles"` on a chip.
    const COUNT_UNIT: &'static str;
    /// The counter, for the log.
    const COUNTER: &'static str = "SysTick";
    /// Frequency of the counter's clock (SysTick's: the core clock).
    const TICK_HZ: u32;
    /// [`Self::COUNT_UNIT`]s per SysTick tick.
    const COUNTS_PER_TICK: u64;
    /// Length of each of the final blinks, in milliseconds.
    const BLINK_MS: u32;

    /// Takes the peripherals and starts the tick counter; the LED is off.
    fn init() -> Self;

    /// Turns the status LED on or off.
    ///
    /// # Errors
    ///
    /// [`Failure::Pin`] if the pin cannot be driven.
    fn set_led(&mut self, on: bool) -> Result<(), Failure>;

    /// Busy-waits `ms` milliseconds on the tick counter (the default; a
    /// board with a HAL timer may use that instead).
    fn delay_ms(&mut self, ms: u32) {
        let end = self.ticks() + u64::from(ms) * u64::from(Self::TICK_HZ / 1000);
        while self.ticks() < end {}
    }

    /// SysTick ticks since [`Board::init`] (see `ticks.rs`).
    fn ticks(&self) -> u64 {
        crate::ticks::now()
    }

    /// Opens the output the samples go to.
    ///
    /// # Errors
    ///
    /// If the output cannot be opened (a host file under QEMU). Nothing to
    /// open where the log is the output (the default).
    fn open_samples(&mut self) -> Result<(), Failure> {
        Ok(())
    }

    /// Writes sample `index`'s pixels (row-major bytes, 0..=255).
    ///
    /// # Errors
    ///
    /// If the bytes cannot be written.
    fn write_sample(&mut self, index: u32, pixels: &[u8]) -> Result<(), Failure>;

    /// Records sample `index`'s count (see [`Self::COUNT_UNIT`]) where a
    /// host program can read it without decoding the defmt log: under QEMU
    /// the host file `RAW_OUT.counts`, one little-endian u64 per sample. On
    /// a chip the log, which has every count, is enough (the default).
    ///
    /// # Errors
    ///
    /// If the count cannot be written.
    fn write_count(&mut self, index: u32, count: u64) -> Result<(), Failure> {
        let _ = (index, count);
        Ok(())
    }

    /// Closes the output after the last sample.
    ///
    /// # Errors
    ///
    /// If the output cannot be closed. Nothing to close where the log is
    /// the output (the default).
    fn close_samples(&mut self) -> Result<(), Failure> {
        Ok(())
    }

    /// Ends the program with a status the host sees: `success` or not.
    fn exit(success: bool) -> !;
}
