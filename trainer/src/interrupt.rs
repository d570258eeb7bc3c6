//! Ctrl-C and SIGTERM during training: the first signal asks the run to stop
//! after the step in progress (it then saves a checkpoint and its resume
//! state, see [`crate::run`]); a second one quits at once with status 130,
//! leaving the files of the last save.
//!
//! Only `tinygen train` installs the handler ([`install`]); a library user who
//! does not keeps the default behaviour of the signals.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result};
use signal_hook::consts::{SIGINT, SIGTERM};

/// Exit status of a run stopped by a signal (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: i32 = 130;

static REQUESTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Installs the handlers of SIGINT and SIGTERM, and a thread that says on the
/// terminal that the run is stopping as soon as the first signal arrives.
/// Calling it again does nothing.
///
/// # Errors
/// If the operating system refuses the handlers.
pub fn install() -> Result<()> {
    if REQUESTED.get().is_some() {
        return Ok(());
    }
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag before the second handler
        // sets it: the second signal exits, the first only sets the flag.
        signal_hook::flag::register_conditional_shutdown(signal, EXIT_INTERRUPTED, flag.clone())
            .context("cannot install the Ctrl-C handler")?;
        signal_hook::flag::register(signal, flag.clone())
            .context("cannot install the Ctrl-C handler")?;
    }
    let watched = flag.clone();
    std::thread::spawn(move || {
        while !watched.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "\nstopping: finishing the current step, then saving a checkpoint to resume from \
             (Ctrl-C again quits at once, without saving)"
        );
    });
    // A concurrent install keeps its own flag; both are registered.
    let _ = REQUESTED.set(flag);
    Ok(())
}

/// Whether a signal asked the run to stop.
pub fn requested() -> bool {
    REQUESTED
        .get()
        .is_some_and(|flag| flag.load(Ordering::Relaxed))
}
