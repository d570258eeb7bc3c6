//! Raspberry Pi Pico (feature `pico`: RP2040, Cortex-M0+ at 125 MHz) and
//! Pico 2 (feature `pico2`: RP2350, Cortex-M33 at 150 MHz), flashed and run
//! through a debug probe by `probe-rs run` (see README.md). The two HALs,
//! rp2040-hal and rp235x-hal, share the API this module uses; only the boot
//! block, the clock and the timer's name differ.
//!
//! - Logs: defmt over RTT (`defmt-rtt`); probe-rs decodes them.
//! - Status LED: the green LED on GPIO25, active high.
//! - Counter: SysTick at the core clock (the PLL's 125 or 150 MHz from the
//!   12 MHz crystal), so counts are core cycles.
//! - Samples: each image logged as a defmt byte list, as on the nRF52840-DK.
//! - Exit: a breakpoint on success (probe-rs stops and exits 0), a HardFault
//!   through panic-probe on failure (probe-rs prints a backtrace and exits
//!   non-zero).

use defmt_rtt as _; // the global logger
use embedded_hal::delay::DelayNs;
use embedded_hal::digital::OutputPin;
use hal::gpio::{bank0::Gpio25, FunctionSioOutput, Pin, PullDown};
use panic_probe as _; // the panic handler: logs over defmt, then HardFault
#[cfg(feature = "pico")]
use rp2040_hal as hal;
#[cfg(all(feature = "pico2", not(feature = "pico")))]
use rp235x_hal as hal;

use crate::bsp;
use crate::ticks;
use crate::Failure;

/// The second-stage bootloader the RP2040's boot ROM runs from the first
/// 256 bytes of flash (`.boot2`, memory/pico.x): it sets up the flash for
/// execute-in-place.
#[cfg(feature = "pico")]
#[link_section = ".boot2"]
#[used]
static BOOT2: [u8; 256] = rp2040_boot2::BOOT_LOADER_W25Q080;

/// The image definition the RP2350's boot ROM looks for in the first 4 KiB
/// of flash (`.start_block`, memory/pico2.x): a Secure Arm executable.
#[cfg(all(feature = "pico2", not(feature = "pico")))]
#[link_section = ".start_block"]
#[used]
static IMAGE_DEF: hal::block::ImageDef = hal::block::ImageDef::secure_exe();

/// The crystal on both boards.
const XTAL_HZ: u32 = 12_000_000;

#[cfg(feature = "pico")]
const NAME: &str = "Raspberry Pi Pico (RP2040)";
#[cfg(all(feature = "pico2", not(feature = "pico")))]
const NAME: &str = "Raspberry Pi Pico 2 (RP2350)";

/// The system clock `init_clocks_and_plls` sets up from the crystal (the
/// HAL's `PLL_SYS_125MHZ` or `PLL_SYS_150MHZ`); checked at init.
#[cfg(feature = "pico")]
const CORE_HZ: u32 = 125_000_000;
#[cfg(all(feature = "pico2", not(feature = "pico")))]
const CORE_HZ: u32 = 150_000_000;

#[cfg(feature = "pico")]
type Timer = hal::Timer;
#[cfg(all(feature = "pico2", not(feature = "pico")))]
type Timer = hal::Timer<hal::timer::CopyableTimer0>;

/// The Pico's peripherals, as the app uses them.
pub struct Pico {
    /// The LED on GPIO25, active high.
    led: Pin<Gpio25, FunctionSioOutput, PullDown>,
    /// The 1 MHz timer (the HAL's `embedded_hal::delay::DelayNs`).
    delay: Timer,
}

impl bsp::Board for Pico {
    const NAME: &'static str = NAME;
    const COUNT_UNIT: &'static str = "cycles";
    /// Core clock, which clocks SysTick.
    const TICK_HZ: u32 = CORE_HZ;
    /// One SysTick tick is one core cycle.
    const COUNTS_PER_TICK: u64 = 1;
    /// Visible to the eye.
    const BLINK_MS: u32 = 150;

    fn init() -> Self {
        use hal::clocks::Clock as _;

        let cp = defmt::unwrap!(cortex_m::Peripherals::take());
        let mut p = defmt::unwrap!(hal::pac::Peripherals::take());
        let mut watchdog = hal::Watchdog::new(p.WATCHDOG);
        let clocks = defmt::unwrap!(
            hal::clocks::init_clocks_and_plls(
                XTAL_HZ,
                p.XOSC,
                p.CLOCKS,
                p.PLL_SYS,
                p.PLL_USB,
                &mut p.RESETS,
                &mut watchdog,
            )
            .ok(),
            "clock setup failed"
        );
        defmt::assert_eq!(clocks.system_clock.freq().to_Hz(), CORE_HZ);
        ticks::start(cp.SYST);
        #[cfg(feature = "pico")]
        let delay = hal::Timer::new(p.TIMER, &mut p.RESETS, &clocks);
        #[cfg(all(feature = "pico2", not(feature = "pico")))]
        let delay = hal::Timer::new_timer0(p.TIMER0, &mut p.RESETS, &clocks);
        let sio = hal::Sio::new(p.SIO);
        let pins = hal::gpio::Pins::new(p.IO_BANK0, p.PADS_BANK0, sio.gpio_bank0, &mut p.RESETS);
        let mut led = pins.gpio25.into_push_pull_output();
        // Off until the first sample (its error type is Infallible).
        let _ = led.set_low();
        Pico { led, delay }
    }

    fn set_led(&mut self, on: bool) -> Result<(), Failure> {
        if on {
            self.led.set_high()
        } else {
            self.led.set_low()
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
