//! Nordic nRF52840-DK (PCA10056): Cortex-M4F at 64 MHz, on-board J-Link
//! probe, flashed and run by `probe-rs run` (see README.md).
//!
//! - Logs: defmt over RTT (`defmt-rtt`); probe-rs decodes them.
//! - Status LED: LED1 on P0.13, active low.
//! - Counter: SysTick at the 64 MHz core clock, so counts are core cycles.
//! - Samples: each image logged as a defmt byte list.
//! - Exit: a breakpoint on success (probe-rs stops and exits 0), a HardFault
//!   through panic-probe on failure (probe-rs prints a backtrace and exits
//!   non-zero).

use defmt_rtt as _; // the global logger
use embedded_hal::digital::OutputPin;
use nrf52840_hal::gpio::{p0, Level, Output, Pin, PushPull};
use nrf52840_hal::pac;
use nrf52840_hal::timer::{OneShot, Timer};
use panic_probe as _; // the panic handler: logs over defmt, then HardFault

use crate::ticks;
use crate::Failure;

/// Board name, for the log.
pub const NAME: &str = "nRF52840-DK";
/// The counter, for the log.
pub const COUNTER: &str = "SysTick";
/// What [`COUNTS_PER_TICK`] counts.
pub const COUNT_UNIT: &str = "cycles";
/// Core clock (HFCLK), which clocks SysTick.
pub const TICK_HZ: u32 = 64_000_000;
/// One SysTick tick is one core cycle.
pub const COUNTS_PER_TICK: u64 = 1;
/// Length of each of the final blinks, visible to the eye.
pub const BLINK_MS: u32 = 150;

/// The board's peripherals, as the app uses them.
pub struct Board {
    /// LED1 (P0.13).
    pub led: ActiveLow<Pin<Output<PushPull>>>,
    /// A delay on TIMER0 (the HAL's `embedded_hal::delay::DelayNs`).
    pub delay: Timer<pac::TIMER0, OneShot>,
}

/// Takes the peripherals and starts the tick counter.
pub fn init() -> Board {
    let cp = defmt::unwrap!(cortex_m::Peripherals::take());
    let p = defmt::unwrap!(pac::Peripherals::take());
    ticks::start(cp.SYST);
    let port0 = p0::Parts::new(p.P0);
    // Level::High: LED1 off.
    let led = port0.p0_13.into_push_pull_output(Level::High).degrade();
    Board {
        led: ActiveLow(led),
        delay: Timer::new(p.TIMER0),
    }
}

/// An output pin driving an active-low load: `set_high` turns it on.
pub struct ActiveLow<P>(pub P);

impl<P: OutputPin> embedded_hal::digital::ErrorType for ActiveLow<P> {
    type Error = P::Error;
}

impl<P: OutputPin> OutputPin for ActiveLow<P> {
    fn set_high(&mut self) -> Result<(), P::Error> {
        self.0.set_low()
    }
    fn set_low(&mut self) -> Result<(), P::Error> {
        self.0.set_high()
    }
}

/// Where the samples go: the defmt log.
pub struct Sink;

impl Sink {
    /// Nothing to open: the log is the output.
    pub fn open() -> Result<Sink, Failure> {
        Ok(Sink)
    }

    /// Logs one sample's pixels (row-major bytes, 0..=255).
    pub fn write(&mut self, index: u32, bytes: &[u8]) -> Result<(), Failure> {
        defmt::info!("pixels {=u32}: {=[u8]}", index, bytes);
        Ok(())
    }

    /// Nothing to close.
    pub fn close(self) -> Result<(), Failure> {
        Ok(())
    }
}

/// `defmt::panic!` and `defmt::unwrap!` have logged the message already: go
/// straight to panic-probe's HardFault, without a second report.
#[defmt::panic_handler]
fn defmt_panic() -> ! {
    panic_probe::hard_fault()
}

/// Ends the program: a breakpoint on success (probe-rs exits 0), a
/// HardFault on failure (probe-rs reports it and exits non-zero).
pub fn exit(success: bool) -> ! {
    if success {
        loop {
            cortex_m::asm::bkpt();
        }
    }
    panic_probe::hard_fault()
}
