//! What the boards run through a debug probe (nRF52840-DK, Pico, Pico 2)
//! share: the samples go to the defmt log (`tinygen grid --log` turns the
//! `pixels N: [..]` lines into a PNG), the program ends on a breakpoint
//! (probe-rs exits 0) or a HardFault (probe-rs reports it and exits
//! non-zero), and defmt's panics go straight to panic-probe.

use crate::Failure;

/// Logs sample `index`'s pixels as a defmt byte list.
pub fn write_sample(index: u32, pixels: &[u8]) -> Result<(), Failure> {
    defmt::info!("pixels {=u32}: {=[u8]}", index, pixels);
    Ok(())
}

/// A breakpoint on success, a HardFault through panic-probe on failure.
pub fn exit(success: bool) -> ! {
    if success {
        loop {
            cortex_m::asm::bkpt();
        }
    }
    panic_probe::hard_fault()
}

/// `defmt::panic!` and `defmt::unwrap!` have logged the message already: go
/// straight to panic-probe's HardFault, without a second report.
#[defmt::panic_handler]
fn defmt_panic() -> ! {
    panic_probe::hard_fault()
}
