//! QEMU's Arm MPS2 boards, one per Cargo feature:
//!
//! | feature | machine | core | target |
//! | --- | --- | --- | --- |
//! | `qemu` | `mps2-an386` | Cortex-M4F | thumbv7em-none-eabihf |
//! | `qemu-m7` | `mps2-an500` | Cortex-M7 | thumbv7em-none-eabihf |
//! | `qemu-m33` | `mps2-an505` | Cortex-M33 (TrustZone; runs Secure) | thumbv8m.main-none-eabihf |
//!
//! - Logs: defmt over semihosting stdout (`defmt-semihosting`), decoded on
//!   the host by `defmt-print` (see `qemu-run.sh`).
//! - Status LED: user LED 0 of the FPGA I/O block (register LED0 at offset
//!   0, bit 0; at 0x4002_8000 on AN386/AN500, at 0x5030_2000, the Secure
//!   alias of 0x4030_2000, on AN505).
//! - Counter: SysTick at the core clock (25 MHz on AN386/AN500, 20 MHz on
//!   AN505). Under `-icount shift=0` one instruction is 1 ns of virtual
//!   time, so one tick is 40 (50 on AN505) instructions.
//! - Samples: written to a host file over semihosting.
//! - Exit: semihosting `SYS_EXIT`; QEMU exits 0 on success, 1 otherwise.

use crate::bsp;
use crate::semihosting::{exit, HostFiles};
use crate::ticks;
use crate::Failure;

/// The QEMU mps2 board.
pub struct Qemu {
    /// The host files the samples and their counts go to.
    files: HostFiles,
}

#[cfg(all(feature = "qemu-m7", feature = "qemu-m33"))]
compile_error!("features `qemu-m7` and `qemu-m33` are mutually exclusive: choose one QEMU machine");

/// The machine's name, for the log; `qemu-run.sh` finds the machine to
/// start by this string in the ELF.
#[cfg(not(any(feature = "qemu-m7", feature = "qemu-m33")))]
const NAME: &str = "QEMU mps2-an386";
#[cfg(feature = "qemu-m7")]
const NAME: &str = "QEMU mps2-an500";
#[cfg(all(feature = "qemu-m33", not(feature = "qemu-m7")))]
const NAME: &str = "QEMU mps2-an505";

/// Core clock, which clocks SysTick: 25 MHz on the mps2 boards (hw/arm/mps2.c
/// `SYSCLK_FRQ`), 20 MHz on the AN505 (hw/arm/mps2-tz.c).
#[cfg(not(feature = "qemu-m33"))]
const TICK_HZ: u32 = 25_000_000;
#[cfg(feature = "qemu-m33")]
const TICK_HZ: u32 = 20_000_000;

/// Address of the FPGA I/O block's `LED0` register (one bit per user LED).
#[cfg(not(feature = "qemu-m33"))]
const FPGAIO_LED0: *mut u32 = 0x4002_8000 as *mut u32;
/// The Secure alias (the firmware runs Secure) of the AN505's FPGAIO at
/// 0x4030_2000, behind a Peripheral Protection Controller whose ports are
/// all Secure at reset.
#[cfg(feature = "qemu-m33")]
const FPGAIO_LED0: *mut u32 = 0x5030_2000 as *mut u32;

impl bsp::Board for Qemu {
    const NAME: &'static str = NAME;
    const COUNT_UNIT: &'static str = "instructions";
    const TICK_HZ: u32 = TICK_HZ;
    /// Instructions per SysTick tick under `-icount shift=0` (1 ns each):
    /// 1e9 / 25 MHz = 40 (1e9 / 20 MHz = 50 on the AN505).
    const COUNTS_PER_TICK: u64 = 1_000_000_000 / TICK_HZ as u64;
    /// Virtual time: 1 ms = 1e6 instructions.
    const BLINK_MS: u32 = 1;

    fn init() -> Self {
        let cp = defmt::unwrap!(cortex_m::Peripherals::take());
        ticks::start(cp.SYST);
        Qemu {
            files: HostFiles::new(),
        }
    }

    fn set_led(&mut self, on: bool) -> Result<(), Failure> {
        fpgaio_led(on);
        Ok(())
    }

    /// Creates (truncates) the host files [`crate::config::RAW_OUT`] and
    /// [`crate::config::COUNTS_OUT`], in binary mode.
    fn open_samples(&mut self) -> Result<(), Failure> {
        self.files.open()
    }

    /// Appends one sample's pixels to the host file.
    fn write_sample(&mut self, _index: u32, bytes: &[u8]) -> Result<(), Failure> {
        self.files.write_sample(bytes)
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

/// Turns user LED 0 of the MPS2 FPGA I/O block on or off.
fn fpgaio_led(on: bool) {
    // SAFETY: LED0 is the FPGAIO LED register of the mps2 board, a plain
    // read/write 32-bit register; this firmware is single-threaded and no
    // interrupt handler touches it.
    unsafe {
        let v = FPGAIO_LED0.read_volatile();
        FPGAIO_LED0.write_volatile(if on { v | 1 } else { v & !1 });
    }
}
