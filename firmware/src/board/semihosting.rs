//! What the QEMU boards share: semihosting for the samples (a host file)
//! and the exit status, the panic and HardFault handlers. The log goes over
//! semihosting too (`defmt-semihosting`, the global logger, linked by the
//! board module).

use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};

use cortex_m_rt::{exception, ExceptionFrame};
use cortex_m_semihosting::{debug, nr, syscall};

use crate::Failure;

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
