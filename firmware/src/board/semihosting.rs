//! What the QEMU boards (`qemu.rs`, `microbit.rs`) share: semihosting for
//! the samples and their counts (host files) and the exit status, the panic
//! and HardFault handlers. The log goes over semihosting too
//! (`defmt-semihosting`, the global logger, linked here).

use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};

use cortex_m_rt::{exception, ExceptionFrame};
use cortex_m_semihosting::{debug, nr, syscall};

use defmt_semihosting as _; // the global logger

use crate::Failure;

/// The host files the samples and their counts go to: `RAW_OUT` (the
/// pixels) and `RAW_OUT.counts` (one little-endian u64 per sample), opened
/// for writing in binary mode.
pub struct HostFiles {
    /// The two handles, once opened.
    fd: Option<(usize, usize)>,
}

impl HostFiles {
    /// Nothing open yet.
    pub const fn new() -> Self {
        HostFiles { fd: None }
    }

    /// Creates (truncates) the host files [`crate::config::RAW_OUT`] and
    /// [`crate::config::COUNTS_OUT`].
    pub fn open(&mut self) -> Result<(), Failure> {
        let pixels = host_create(crate::config::RAW_OUT)?;
        let counts = host_create(crate::config::COUNTS_OUT)?;
        self.fd = Some((pixels, counts));
        Ok(())
    }

    /// Appends one sample's pixels.
    pub fn write_sample(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        let (fd, _) = self.fd.ok_or(Failure::HostIo)?;
        host_write(fd, bytes)
    }

    /// Appends one sample's count (u64, little-endian).
    pub fn write_count(&mut self, count: u64) -> Result<(), Failure> {
        let (_, fd) = self.fd.ok_or(Failure::HostIo)?;
        host_write(fd, &count.to_le_bytes())
    }

    /// Closes both files.
    pub fn close(&mut self) -> Result<(), Failure> {
        let (pixels, counts) = self.fd.take().ok_or(Failure::HostIo)?;
        host_close(pixels)?;
        host_close(counts)
    }
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

/// Set by the first panic or fault, so that a fault inside the logger
/// exits instead of logging again.
static PANICKING: AtomicBool = AtomicBool::new(false);

/// Whether a panic or fault was already reported; marks it reported. A
/// load and a store (ARMv6-M has no atomic swap) with interrupts disabled
/// by the caller, on a single core.
fn first_report() -> bool {
    let first = !PANICKING.load(Ordering::Relaxed);
    PANICKING.store(true, Ordering::Relaxed);
    first
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    cortex_m::interrupt::disable();
    // A panic inside the logger must not recurse: exit at once.
    if first_report() {
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
    // A HardFault cannot be preempted by the interrupts this firmware uses.
    if first_report() {
        defmt::error!("HardFault at pc {=u32:#010x}", frame.pc());
    }
    exit(false)
}
