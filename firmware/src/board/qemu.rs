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
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};

use cortex_m_rt::{exception, ExceptionFrame};
use cortex_m_semihosting::{debug, nr, syscall};
use defmt_semihosting as _; // the global logger

use crate::ticks;
use crate::Failure;

/// Board name, for the log.
pub const NAME: &str = "QEMU mps2-an386";
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

/// Where the samples go: a host file, opened for writing in binary mode.
pub struct Sink {
    fd: usize,
}

impl Sink {
    /// Creates (truncates) the host file [`crate::config::RAW_OUT`].
    pub fn open() -> Result<Sink, Failure> {
        let name = crate::config::RAW_OUT;
        // SAFETY: SYS_OPEN reads `len` bytes of the name (NUL-terminated, as
        // semihosting wants: the length excludes the NUL) and nothing else.
        let fd = unsafe {
            syscall!(
                OPEN,
                name.as_ptr(),
                nr::open::W_TRUNC_BINARY,
                name.len() - 1
            )
        };
        if fd as isize == -1 {
            return Err(Failure::HostIo);
        }
        Ok(Sink { fd })
    }

    /// Appends one sample's pixels.
    pub fn write(&mut self, _index: u32, mut bytes: &[u8]) -> Result<(), Failure> {
        while !bytes.is_empty() {
            // SAFETY: SYS_WRITE reads `len` bytes from a live slice.
            let not_written = unsafe { syscall!(WRITE, self.fd, bytes.as_ptr(), bytes.len()) };
            if not_written >= bytes.len() {
                return Err(Failure::HostIo);
            }
            bytes = &bytes[bytes.len() - not_written..];
        }
        Ok(())
    }

    /// Closes the file.
    pub fn close(self) -> Result<(), Failure> {
        // SAFETY: SYS_CLOSE takes the handle SYS_OPEN returned.
        match unsafe { syscall!(CLOSE, self.fd) } {
            0 => Ok(()),
            _ => Err(Failure::HostIo),
        }
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

/// Ends the program: QEMU exits with status 0 on success, 1 on failure.
pub fn exit(success: bool) -> ! {
    debug::exit(if success {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    // Only reached without semihosting (not under QEMU).
    loop {
        cortex_m::asm::wfi();
    }
}

static PANICKING: AtomicBool = AtomicBool::new(false);

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    cortex_m::interrupt::disable();
    // A panic inside the logger must not recurse: exit at once.
    if !PANICKING.swap(true, Ordering::Relaxed) {
        defmt::error!("panicked: {}", defmt::Display2Format(info));
    }
    exit(false)
}

/// `defmt::panic!` and `defmt::unwrap!` have logged the message already: exit
/// without the core panic handler's second report.
#[defmt::panic_handler]
fn defmt_panic() -> ! {
    exit(false)
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    if !PANICKING.swap(true, Ordering::Relaxed) {
        defmt::error!("HardFault at pc {=u32:#010x}", frame.pc());
    }
    exit(false)
}
