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
use embedded_hal::delay::DelayNs;
use embedded_hal::digital::OutputPin;
use nrf52840_hal::gpio::{p0, Level, Output, Pin, PushPull};
use nrf52840_hal::pac;
use nrf52840_hal::timer::{OneShot, Timer};
use panic_probe as _; // the panic handler: logs over defmt, then HardFault

use crate::bsp;
use crate::ticks;
use crate::Failure;

/// The nRF52840-DK's peripherals, as the app uses them.
pub struct Nrf52840Dk {
    /// LED1 (P0.13), active low.
    led: Pin<Output<PushPull>>,
    /// A delay on TIMER0 (the HAL's `embedded_hal::delay::DelayNs`).
    delay: Timer<pac::TIMER0, OneShot>,
}

impl bsp::Board for Nrf52840Dk {
    const NAME: &'static str = "nRF52840-DK";
    const COUNT_UNIT: &'static str = "cycles";
    /// Core clock (HFCLK), which clocks SysTick.
    const TICK_HZ: u32 = 64_000_000;
    /// One SysTick tick is one core cycle.
    const COUNTS_PER_TICK: u64 = 1;
    /// Visible to the eye.
    const BLINK_MS: u32 = 150;

    fn init() -> Self {
        let cp = defmt::unwrap!(cortex_m::Peripherals::take());
        let p = defmt::unwrap!(pac::Peripherals::take());
        ticks::start(cp.SYST);
        let port0 = p0::Parts::new(p.P0);
        // Level::High: LED1 off.
        let led = port0.p0_13.into_push_pull_output(Level::High).degrade();
        Nrf52840Dk {
            led,
            delay: Timer::new(p.TIMER0),
        }
    }

    /// LED1 is active low: on drives the pin low.
    fn set_led(&mut self, on: bool) -> Result<(), Failure> {
        if on {
            self.led.set_low()
        } else {
            self.led.set_high()
        }
        .map_err(|_| Failure::Pin)
    }

    fn delay_ms(&mut self, ms: u32) {
        self.delay.delay_ms(ms);
    }

    /// Logs the pixels (see [`crate::probe`]).
    fn write_sample(&mut self, index: u32, pixels: &[u8]) -> Result<(), Failure> {
        crate::probe::write_sample(index, pixels)
    }

    /// See [`crate::probe::exit`].
    fn exit(success: bool) -> ! {
        crate::probe::exit(success)
    }
}
