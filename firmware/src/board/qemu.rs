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

use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};

use cortex_m_rt::{exception, ExceptionFrame};
use cortex_m_semihosting::{debug, nr, syscall};
use defmt_semihosting as _; // the global logger

use crate::bsp;
use crate::ticks;
use crate::Failure;

/// The QEMU mps2 board.
pub struct Qemu {
    /// The host files the samples and their counts go to, once opened.
    fd: Option<(usize, usize)>,
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
        Qemu { fd: None }
    }

    fn set_led(&mut self, on: bool) -> Result<(), Failure> {
        fpgaio_led(on);
        Ok(())
    }

    /// Busy-waits on the SysTick counter, which [`bsp::Board::init`]
    /// started (the mps2 FPGA timers would do as well).
    fn delay_ms(&mut self, ms: u32) {
        let ticks = u64::from(ms) * u64::from(TICK_HZ / 1000);
        let end = ticks::now() + ticks;
        while ticks::now() < end {}
    }

    /// Creates (truncates) the host files [`crate::config::RAW_OUT`] and
    /// [`crate::config::COUNTS_OUT`], in binary mode.
    fn open_samples(&mut self) -> Result<(), Failure> {
        let pixels = host_create(crate::config::RAW_OUT)?;
        let counts = host_create(crate::config::COUNTS_OUT)?;
        self.fd = Some((pixels, counts));
        Ok(())
    }

    /// Appends one sample's pixels to the host file.
    fn write_sample(&mut self, _index: u32, bytes: &[u8]) -> Result<(), Failure> {
        let (fd, _) = self.fd.ok_or(Failure::HostIo)?;
        host_write(fd, bytes)
    }

    /// Appends one sample's instruction count (u64, little-endian).
    fn write_count(&mut self, _index: u32, count: u64) -> Result<(), Failure> {
        let (_, fd) = self.fd.ok_or(Failure::HostIo)?;
        host_write(fd, &count.to_le_bytes())
    }

    fn close_samples(&mut self) -> Result<(), Failure> {
        let (pixels, counts) = self.fd.take().ok_or(Failure::HostIo)?;
        host_close(pixels)?;
        host_close(counts)
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

/// Semihosting `SYS_EXIT`: QEMU exits with status 0 on success, 1 on failure.
fn exit(success: bool) -> ! {
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

/// Creates (truncates) the host file `name` (NUL-terminated) for binary
/// writing and returns its handle.
fn host_create(name: &str) -> Result<usize, Failure> {
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
    Ok(fd)
}

/// Writes all of `bytes` to the host file `fd`.
fn host_write(fd: usize, mut bytes: &[u8]) -> Result<(), Failure> {
    while !bytes.is_empty() {
        // SAFETY: SYS_WRITE reads `len` bytes from a live slice.
        let not_written = unsafe { syscall!(WRITE, fd, bytes.as_ptr(), bytes.len()) };
        if not_written >= bytes.len() {
            return Err(Failure::HostIo);
        }
        bytes = &bytes[bytes.len() - not_written..];
    }
    Ok(())
}

/// Closes the host file `fd`.
fn host_close(fd: usize) -> Result<(), Failure> {
    // SAFETY: SYS_CLOSE takes the handle SYS_OPEN returned.
    match unsafe { syscall!(CLOSE, fd) } {
        0 => Ok(()),
        _ => Err(Failure::HostIo),
    }
}
