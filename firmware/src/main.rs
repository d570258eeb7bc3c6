//! tinygen firmware: samples the model embedded at build time.
//!
//! At startup it logs the model (kind, dtype, parameters, arena bytes,
//! MACs per sample), then draws `SAMPLES` images from one `Rng::new(SEED)`
//! stream, exactly as the host does, with the sampler the model's kind calls
//! for (decoder models: `Decoder`; PixelCNN and PixelRNN: the incremental
//! `AutoregressiveSampler`):
//!
//! ```text
//! let mut rng = Rng::new(SEED);
//! for _ in 0..SAMPLES { sampler.sample(&mut rng, &mut pixels)?; /* emit pixels */ }
//! ```
//!
//! It lights the status LED while each sample is computed, measures each
//! sample with the SysTick counter (instructions under QEMU `-icount
//! shift=0`, cycles on a chip), hands the pixels to the board's sink (a host
//! file under QEMU, the defmt log on the nRF52840-DK and the Picos), blinks
//! three times and exits with a status the host sees.
//!
//! With the feature `bench-kernels` (QEMU board only) it samples nothing: it
//! runs the kernel benchmark of [`bench_kernels`] and exits with its verdict.

#![no_std]
#![no_main]
// The kernel benchmark replaces sampling: the sampling code still compiles,
// but nothing calls it.
#![cfg_attr(feature = "bench-kernels", allow(dead_code))]

#[cfg(any(
    all(feature = "qemu", feature = "nrf52840dk"),
    all(feature = "qemu", feature = "microbit"),
    all(feature = "qemu", feature = "pico"),
    all(feature = "qemu", feature = "pico2"),
    all(feature = "nrf52840dk", feature = "microbit"),
    all(feature = "nrf52840dk", feature = "pico"),
    all(feature = "nrf52840dk", feature = "pico2"),
    all(feature = "microbit", feature = "pico"),
    all(feature = "microbit", feature = "pico2"),
    all(feature = "pico", feature = "pico2"),
))]
compile_error!(
    "the board features `qemu`, `nrf52840dk`, `microbit`, `pico` and `pico2` are mutually \
     exclusive: build another board than the default with `--no-default-features --features BOARD`"
);
#[cfg(not(any(
    feature = "qemu",
    feature = "nrf52840dk",
    feature = "microbit",
    feature = "pico",
    feature = "pico2"
)))]
compile_error!(
    "choose a board: feature `qemu` (the default; with `qemu-m7` or `qemu-m33` for the \
     Cortex-M7 or M33 machine), `nrf52840dk`, `microbit`, `pico` or `pico2`"
);
#[cfg(all(feature = "bench-kernels", not(feature = "qemu")))]
compile_error!(
    "feature `bench-kernels` runs on the QEMU mps2 boards only: build it with the default \
     features (`--features bench-kernels`)"
);

mod bsp;

#[cfg(feature = "qemu")]
#[path = "board/qemu.rs"]
mod qemu;

#[cfg(all(feature = "nrf52840dk", not(feature = "qemu")))]
#[path = "board/nrf52840dk.rs"]
mod nrf52840dk;

#[cfg(all(
    feature = "microbit",
    not(any(feature = "qemu", feature = "nrf52840dk"))
))]
#[path = "board/microbit.rs"]
mod microbit;

/// Semihosting (host files, exit, panic handlers) for the QEMU boards.
#[cfg(any(feature = "qemu", feature = "microbit"))]
#[path = "board/semihosting.rs"]
mod semihosting;

#[cfg(all(
    any(feature = "pico", feature = "pico2"),
    not(any(feature = "qemu", feature = "nrf52840dk"))
))]
#[path = "board/pico.rs"]
mod pico;

/// The samples' log sink and the exit of the boards run through a probe.
#[cfg(all(
    any(feature = "nrf52840dk", feature = "pico", feature = "pico2"),
    not(feature = "qemu")
))]
#[path = "board/probe.rs"]
mod probe;

/// The board this build is for (its type implements [`bsp::Board`]).
mod board {
    #[cfg(all(
        feature = "microbit",
        not(any(feature = "qemu", feature = "nrf52840dk"))
    ))]
    pub use crate::microbit::Microbit as Board;
    #[cfg(all(feature = "nrf52840dk", not(feature = "qemu")))]
    pub use crate::nrf52840dk::Nrf52840Dk as Board;
    #[cfg(all(
        any(feature = "pico", feature = "pico2"),
        not(any(feature = "qemu", feature = "nrf52840dk"))
    ))]
    pub use crate::pico::Pico as Board;
    #[cfg(feature = "qemu")]
    pub use crate::qemu::Qemu as Board;

    // The kernel benchmark reads the board's constants by these names.
    #[cfg(feature = "bench-kernels")]
    use crate::bsp::Board as _;
    #[cfg(feature = "bench-kernels")]
    pub const NAME: &str = Board::NAME;
    #[cfg(feature = "bench-kernels")]
    pub const COUNT_UNIT: &str = Board::COUNT_UNIT;
    #[cfg(feature = "bench-kernels")]
    pub const COUNTS_PER_TICK: u64 = Board::COUNTS_PER_TICK;
}

#[cfg(feature = "bench-kernels")]
mod bench_kernels;
#[cfg(feature = "microbit")]
mod stack;
// The micro:bit's Cortex-M0 has no SysTick: its board counts with TIMER0.
#[cfg(all(
    feature = "microbit",
    not(any(feature = "qemu", feature = "nrf52840dk"))
))]
use microbit::ticks;
#[cfg(not(feature = "microbit"))]
mod ticks;

/// Build-time configuration and the embedded model (see build.rs).
mod config {
    include!(concat!(env!("OUT_DIR"), "/config.rs"));
}

use bsp::Board;
use tinygen_runtime::{Arena, AutoregressiveSampler, Decoder, Model, ModelKind, Rng};

use config::{ARENA_BYTES, IMAGE_BYTES, PROFILE, SAMPLES, SEED, TEMPERATURE};

/// Why a run failed.
#[derive(Debug, Clone, Copy, defmt::Format)]
pub enum Failure {
    /// The runtime refused the model, the arena or a buffer.
    Runtime(tinygen_runtime::Error),
    /// The arena build.rs sized is not the one the model needs.
    ArenaSize {
        /// Bytes built in.
        built: u32,
        /// Bytes the model's plan needs.
        needed: u32,
    },
    /// The host refused a semihosting file operation.
    HostIo,
    /// The status pin could not be driven.
    Pin,
}

impl From<tinygen_runtime::Error> for Failure {
    fn from(e: tinygen_runtime::Error) -> Self {
        Failure::Runtime(e)
    }
}

/// The sampler the embedded model's kind calls for, chosen at run time.
// One lives on main's stack for the whole run; the autoregressive variant's
// extra ~260 bytes (its tempered int8 table) cost nothing to move around.
#[allow(clippy::large_enum_variant)]
enum Sampler<'m, 'a> {
    /// VAE, GAN, AutoEncoder: z -> image.
    Decoder(Decoder<'m, 'a>),
    /// PixelCNN, PixelRNN: pixel by pixel, incremental, row caches (and
    /// Row LSTM cell rows) in the arena.
    Autoregressive(AutoregressiveSampler<'m, 'a>),
}

impl Sampler<'_, '_> {
    fn sample(&mut self, rng: &mut Rng, pixels: &mut [u8]) -> tinygen_runtime::Result<()> {
        match self {
            Sampler::Decoder(d) => d.sample(rng, pixels),
            Sampler::Autoregressive(p) => p.sample(rng, pixels),
        }
    }
}

/// The activation arena, sized by build.rs from the model's plan.
static mut ARENA: Arena<ARENA_BYTES> = Arena::new();

// The RP2040 and RP2350 HALs' entry macros wrap cortex-m-rt's: they also
// release the SIO spinlocks a debugger reset may leave taken and (RP2350)
// grant access to the double-precision and GPIO coprocessors.
#[cfg_attr(not(any(feature = "pico", feature = "pico2")), cortex_m_rt::entry)]
#[cfg_attr(feature = "pico", rp2040_hal::entry)]
#[cfg_attr(all(feature = "pico2", not(feature = "pico")), rp235x_hal::entry)]
fn main() -> ! {
    #[cfg(feature = "microbit")]
    stack::paint();
    let b = board::Board::init();
    #[cfg(not(feature = "bench-kernels"))]
    let ok = sample(b);
    #[cfg(feature = "bench-kernels")]
    let ok = bench_kernels::run(b);
    board::Board::exit(ok)
}

/// Samples the embedded model on board `b` and logs the outcome; `true` on
/// success.
fn sample<B: Board>(mut b: B) -> bool {
    let arena = &raw mut ARENA;
    // SAFETY: `sample` runs once, from `main`, which never returns, and no
    // interrupt handler touches ARENA, so this is the only reference ever
    // made to it.
    let arena = unsafe { &mut *arena };
    let result = run(arena.as_mut_slice(), &mut b);
    #[cfg(feature = "microbit")]
    defmt::info!(
        "stack: {=usize} bytes used at the deepest, of {=usize} free for it",
        stack::used(),
        stack::size()
    );
    match result {
        Ok(()) => defmt::info!("done"),
        Err(e) => defmt::error!("failed: {}", e),
    }
    result.is_ok()
}

/// The loaded model, in place: a static, so that it is never copied on the
/// stack (it is about 2.2 KB on a 32-bit target; the micro:bit has 16 KB
/// of RAM for everything).
static mut MODEL: Option<Model<'static>> = None;

/// Loads the embedded model into [`MODEL`] with the plan build.rs made and
/// sized ARENA for (the micro:bit's is small). Not inlined: the decoding's
/// frames are gone before sampling starts.
#[inline(never)]
fn load() -> tinygen_runtime::Result<&'static Model<'static>> {
    let slot = &raw mut MODEL;
    // SAFETY: `load` runs once, from `run`, and nothing else touches MODEL,
    // so this is the only reference ever made to it.
    let slot = unsafe { &mut *slot };
    Model::load_into(slot, config::MODEL, PROFILE)
}

fn run<B: Board>(arena: &mut [u8], b: &mut B) -> Result<(), Failure> {
    let model = load()?;
    let f = &model.file;
    let image = f.meta.image;
    defmt::info!(
        "board {=str}; model {=str}: {} {=str}, image {=u16}x{=u16}x{=u16}, latent {=u16}",
        B::NAME,
        config::MODEL_PATH,
        f.kind,
        f.dtype.name(),
        image.c,
        image.h,
        image.w,
        f.meta.latent,
    );
    defmt::info!(
        "params {=u32}, arena {=u32} bytes, MACs/sample {=u64}, file {=usize} bytes",
        model.params(),
        model.arena_bytes(),
        model.macs_per_sample(),
        config::MODEL.len(),
    );
    if model.arena_bytes() as usize != ARENA_BYTES {
        return Err(Failure::ArenaSize {
            built: ARENA_BYTES as u32,
            needed: model.arena_bytes(),
        });
    }
    let autoregressive = matches!(f.kind, ModelKind::PixelCnn | ModelKind::PixelRnn);
    if autoregressive {
        defmt::info!(
            "{}: incremental sampler, {=u64} MACs per sample vs {=u64} for one full forward pass",
            f.kind,
            model.macs_per_sample(),
            model.forward_macs(),
        );
    }
    let mut sampler = if autoregressive {
        let mut s = AutoregressiveSampler::new(model, arena)?;
        // build.rs checked it (finite, above 0; 1 for decoder models).
        s.set_temperature(TEMPERATURE)?;
        if TEMPERATURE != 1.0 {
            defmt::info!("sampling temperature {=f32}", TEMPERATURE);
        }
        Sampler::Autoregressive(s)
    } else {
        Sampler::Decoder(Decoder::new(model, arena)?)
    };
    b.open_samples()?;
    defmt::info!(
        "sampling {=u32} images, seed {=u64}; counter: {=str} at {=u32} Hz, {=u64} {=str} per tick",
        SAMPLES,
        SEED,
        B::COUNTER,
        B::TICK_HZ,
        B::COUNTS_PER_TICK,
        B::COUNT_UNIT
    );

    let mut rng = Rng::new(SEED);
    let mut pixels = [0u8; IMAGE_BYTES];
    let mut total = 0u64;
    for i in 0..SAMPLES {
        b.set_led(true)?;
        let t0 = b.ticks();
        sampler.sample(&mut rng, &mut pixels)?;
        let t1 = b.ticks();
        b.set_led(false)?;
        let count = (t1 - t0) * B::COUNTS_PER_TICK;
        total += count;
        defmt::info!(
            "sample {=u32}/{=u32}: {=str} per sample: {=u64}",
            i + 1,
            SAMPLES,
            B::COUNT_UNIT,
            count
        );
        b.write_sample(i, &pixels)?;
        b.write_count(i, count)?;
    }
    b.close_samples()?;
    defmt::info!(
        "mean {=str} per sample: {=u64} ({=u32} samples)",
        B::COUNT_UNIT,
        total / u64::from(SAMPLES),
        SAMPLES
    );

    // Done: three short blinks.
    for _ in 0..3 {
        b.set_led(true)?;
        b.delay_ms(B::BLINK_MS);
        b.set_led(false)?;
        b.delay_ms(B::BLINK_MS);
    }
    Ok(())
}
