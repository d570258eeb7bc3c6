//! Picks the board's memory layout and embeds the model chosen at build time.
//!
//! Environment (each read at build time; changing one rebuilds):
//!
//! - `TINYGEN_MODEL`: the `.tgm` file to embed. A relative path is resolved
//!   against the project root (the parent of this `firmware/` directory), not
//!   against the shell's working directory. Default `models/vae-int8.tgm`.
//! - `TINYGEN_SAMPLES`: images to generate, at least 1. Default 16.
//! - `TINYGEN_SEED`: seed of the one `Rng` stream. Default 1.
//! - `TINYGEN_TEMPERATURE`: sampling temperature of a PixelCNN or PixelRNN
//!   (every logit divided by it before the sigmoid; `tinygen sample
//!   --temperature`). A finite number above 0; default 1 (the model's own
//!   distribution). Other kinds accept only 1.
//! - `TINYGEN_RAW_OUT`: (QEMU) host file the pixels are written to, relative
//!   to QEMU's working directory. Default `tinygen-samples.raw`.
//!
//! The model is loaded and planned here with tinygen-runtime, the very code
//! the board runs, so a corrupt file, an unsupported model or an arena that
//! does not fit the board's RAM fails the build, not the board.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

use tinygen_runtime::{features, Model, ModelKind, Profile};

/// A board's memory and what the firmware keeps for itself.
struct Board {
    name: &'static str,
    /// The Rust target it builds for.
    target: &'static str,
    /// Linker script with the MEMORY block, relative to the manifest dir.
    memory_x: &'static str,
    flash_bytes: u32,
    ram_bytes: u32,
    /// RAM kept for the stack (sampling keeps the latent and the pixels
    /// there) and the firmware's other statics (logger buffers).
    reserve_bytes: u32,
    /// Of `reserve_bytes`, the stack's, besides the pixels (checked again
    /// by the linker, against the statics it lays out), where the board is
    /// tight enough to say.
    stack_bytes: Option<u32>,
    /// The int8 kernels' scratch the arena is planned for.
    profile: Profile,
}

const QEMU: Board = Board {
    name: "qemu (mps2-an386)",
    target: "thumbv7em-none-eabihf",
    memory_x: "memory/qemu.x",
    flash_bytes: 4 << 20,
    ram_bytes: 4 << 20,
    reserve_bytes: 64 << 10,
    stack_bytes: None,
    profile: Profile::Fast,
};

const QEMU_M7: Board = Board {
    name: "qemu-m7 (mps2-an500)",
    target: "thumbv7em-none-eabihf",
    memory_x: "memory/qemu-m7.x",
    flash_bytes: 4 << 20,
    ram_bytes: 4 << 20,
    reserve_bytes: 64 << 10,
    stack_bytes: None,
    profile: Profile::Fast,
};

const QEMU_M33: Board = Board {
    name: "qemu-m33 (mps2-an505)",
    target: "thumbv8m.main-none-eabihf",
    memory_x: "memory/qemu-m33.x",
    flash_bytes: 4 << 20,
    ram_bytes: 4 << 20,
    reserve_bytes: 64 << 10,
    stack_bytes: None,
    profile: Profile::Fast,
};

const NRF52840DK: Board = Board {
    name: "nrf52840dk",
    target: "thumbv7em-none-eabihf",
    memory_x: "memory/nrf52840dk.x",
    flash_bytes: 1 << 20,
    ram_bytes: 256 << 10,
    reserve_bytes: 32 << 10,
    stack_bytes: None,
    profile: Profile::Fast,
};

const PICO: Board = Board {
    name: "pico (RP2040)",
    target: "thumbv6m-none-eabi",
    memory_x: "memory/pico.x",
    // The first 256 bytes hold the second-stage bootloader.
    flash_bytes: (2 << 20) - 256,
    ram_bytes: 264 << 10,
    reserve_bytes: 32 << 10,
    stack_bytes: None,
    profile: Profile::Fast,
};

const PICO2: Board = Board {
    name: "pico2 (RP2350)",
    target: "thumbv8m.main-none-eabihf",
    memory_x: "memory/pico2.x",
    flash_bytes: 4 << 20,
    ram_bytes: 520 << 10,
    reserve_bytes: 32 << 10,
    stack_bytes: None,
    profile: Profile::Fast,
};

/// The micro:bit v1: 16 KiB of RAM for everything, so the int8 kernels'
/// scratch is planned small, and the stack is budgeted (see
/// [`MICROBIT_STACK`]).
const MICROBIT: Board = Board {
    name: "microbit (nRF51822)",
    target: "thumbv6m-none-eabi",
    memory_x: "memory/microbit.x",
    flash_bytes: 256 << 10,
    ram_bytes: 16 << 10,
    reserve_bytes: MICROBIT_STACK + MICROBIT_STATICS,
    stack_bytes: Some(MICROBIT_STACK),
    profile: Profile::Small,
};
/// Stack the micro:bit firmware needs besides the pixels (run's frame holds
/// them). Measured with the high-water mark of src/stack.rs on QEMU: at
/// most 3,600 bytes at the deepest with the 784 bytes of pixels (4 samples
/// of the sampling-only VAE or AE, thumbv6m, release; Model::load_into
/// decodes in place, layer by layer, and the model lives in a static; it
/// was 17,904 when the file and the model were decoded by value): 2,816
/// besides the pixels, budgeted with a margin.
const MICROBIT_STACK: u32 = 3_072;
/// The firmware's statics besides the arena: the loaded model's slot
/// (`MODEL`, 2,200 bytes on thumbv6m: a `Model` holds two networks of 16
/// layer slots) and 28 bytes of logger and counter state, rounded up. The
/// linker's ASSERT (appended to memory.x below) checks the real layout.
const MICROBIT_STATICS: u32 = 2_256;

const DEFAULT_MODEL: &str = "models/vae-int8.tgm";
const DEFAULT_SAMPLES: u32 = 16;
const DEFAULT_SEED: u64 = 1;
const DEFAULT_TEMPERATURE: f32 = 1.0;
const DEFAULT_RAW_OUT: &str = "tinygen-samples.raw";

/// Stops the build with `msg` shown as cargo's error.
fn fail(msg: &str) -> ! {
    for line in msg.lines() {
        println!("cargo::error={line}");
    }
    std::process::exit(1);
}

fn env_var(name: &str) -> Option<String> {
    println!("cargo::rerun-if-env-changed={name}");
    env::var(name).ok().filter(|v| !v.is_empty())
}

fn parse_env<T: std::str::FromStr>(name: &str, default: T) -> T {
    match env_var(name) {
        None => default,
        Some(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| fail(&format!("{name}={v}: not a valid number"))),
    }
}

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap_or_default());
    println!("cargo::rerun-if-changed=build.rs");

    // Exactly one board; with none or two, src/main.rs's compile_error! says
    // so, and nothing here is board-specific. `qemu-m7` and `qemu-m33` turn
    // `qemu` on too.
    let feature = |name: &str| env::var_os(format!("CARGO_FEATURE_{name}")).is_some();
    let qemu = feature("QEMU");
    let nrf = feature("NRF52840DK");
    let microbit = feature("MICROBIT");
    let pico = feature("PICO");
    let pico2 = feature("PICO2");
    let board = match (qemu, nrf, microbit, pico, pico2) {
        (true, false, false, false, false) => match (feature("QEMU_M7"), feature("QEMU_M33")) {
            (false, false) => Some(&QEMU),
            (true, false) => Some(&QEMU_M7),
            (false, true) => Some(&QEMU_M33),
            (true, true) => None,
        },
        (false, true, false, false, false) => Some(&NRF52840DK),
        (false, false, true, false, false) => Some(&MICROBIT),
        (false, false, false, true, false) => Some(&PICO),
        (false, false, false, false, true) => Some(&PICO2),
        _ => None,
    };
    let target = env::var("TARGET").unwrap_or_default();
    if let Some(board) = board.filter(|b| b.target != target) {
        fail(&format!(
            "board {} builds for target {}, not {target}: add `--target {}`",
            board.name, board.target, board.target
        ));
    }

    // The model.
    let project_root = manifest_dir.parent().unwrap_or(&manifest_dir).to_path_buf();
    let model_arg = env_var("TINYGEN_MODEL").unwrap_or_else(|| DEFAULT_MODEL.to_owned());
    let model_path = resolve(&project_root, &model_arg);
    println!("cargo::rerun-if-changed={}", model_path.display());
    let shown = if Path::new(&model_arg).is_absolute() {
        format!("TINYGEN_MODEL={model_arg}")
    } else {
        format!("TINYGEN_MODEL={model_arg} ({})", model_path.display())
    };
    let bytes = fs::read(&model_path).unwrap_or_else(|e| {
        fail(&format!(
            "{shown}: cannot read the model file: {e}; set TINYGEN_MODEL to a .tgm \
             file written by the trainer (a relative path is resolved against the \
             project root {})",
            project_root.display()
        ))
    });
    let profile = board.map_or(Profile::Fast, |b| b.profile);
    let model = Model::load_for(&bytes, profile).unwrap_or_else(|e| fail(&format!("{shown}: {e}")));
    check_kernels(&shown, &model);
    let kind = model.file.kind;
    if !matches!(
        kind,
        ModelKind::Vae
            | ModelKind::Gan
            | ModelKind::AutoEncoder
            | ModelKind::PixelCnn
            | ModelKind::PixelRnn
    ) {
        fail(&format!(
            "{shown}: a {kind:?} model cannot be sampled by this firmware \
             (it runs decoder models: Vae, Gan, AutoEncoder; and the autoregressive \
             PixelCnn and PixelRnn)"
        ));
    }
    // The sampler's exact arena: decoder activation buffers, or the
    // autoregressive sampler's row caches (and Row LSTM cell rows).
    let arena = model.arena_bytes();
    let image = model.file.meta.image;
    let image_bytes = image.numel();

    if let Some(board) = board {
        let budget = board.ram_bytes.saturating_sub(board.reserve_bytes);
        if let (Some(stack), true) = (
            board.stack_bytes,
            u64::from(arena) + image_bytes > u64::from(budget),
        ) {
            let need = u64::from(arena) + image_bytes + u64::from(board.reserve_bytes);
            fail(&format!(
                "{shown}: does not fit the RAM of board {}: it needs {need} bytes (a \
                 {arena}-byte arena planned for {profile:?} kernels, {image_bytes} bytes of \
                 pixels, {stack} bytes of stack, {} of the firmware's statics), the board has \
                 {} bytes of RAM",
                board.name,
                board.reserve_bytes - stack,
                board.ram_bytes
            ));
        }
        if u64::from(arena) + image_bytes > u64::from(budget) {
            fail(&format!(
                "{shown}: the model needs a {arena}-byte arena (plus {image_bytes} bytes of \
                 pixels), more than the {budget} bytes board {} can give it \
                 ({} bytes of RAM minus {} kept for the stack and the firmware)",
                board.name, board.ram_bytes, board.reserve_bytes
            ));
        }
        // The linker has the last word on flash; this catches the hopeless case
        // with a clearer message.
        if bytes.len() as u64 > u64::from(board.flash_bytes) {
            fail(&format!(
                "{shown}: the model file is {} bytes, more than the {} bytes of flash of board {}",
                bytes.len(),
                board.flash_bytes,
                board.name
            ));
        }
        let src = manifest_dir.join(board.memory_x);
        println!("cargo::rerun-if-changed={}", src.display());
        let memory =
            fs::read(&src).unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", src.display())));
        let mut memory = memory;
        if let Some(stack) = board.stack_bytes {
            // The linker's check, against the statics it really lays out
            // (cortex-m-rt: the stack runs from the end of RAM down to
            // _stack_end, the end of .bss and .uninit).
            let text = format!(
                "\n/* Appended by build.rs: the stack budget of the firmware. */\n\
                 _tinygen_stack_bytes = {};\n\
                 ASSERT(_stack_start - _stack_end >= _tinygen_stack_bytes, \"\n\
                 tinygen: the firmware's statics (the arena, the model, the logger) leave less than \
                 {} bytes of stack ({stack} for sampling, {image_bytes} for the pixels) in \
                 the {} bytes of RAM of board {}: use a smaller model, or see llvm-size \
                 for .data and .bss\");\n",
                u64::from(stack) + image_bytes,
                u64::from(stack) + image_bytes,
                board.ram_bytes,
                board.name,
            );
            memory.extend_from_slice(text.as_bytes());
        }
        write(&out_dir.join("memory.x"), &memory);
        // cortex-m-rt's link.x does `INCLUDE memory.x`: found here.
        println!("cargo::rustc-link-search={}", out_dir.display());
    }

    let samples: u32 = parse_env("TINYGEN_SAMPLES", DEFAULT_SAMPLES);
    if samples == 0 {
        fail("TINYGEN_SAMPLES=0: generate at least one sample");
    }
    let seed: u64 = parse_env("TINYGEN_SEED", DEFAULT_SEED);
    let temperature: f32 = parse_env("TINYGEN_TEMPERATURE", DEFAULT_TEMPERATURE);
    if !(temperature.is_finite() && temperature > 0.0) {
        fail(&format!(
            "TINYGEN_TEMPERATURE={temperature}: the temperature must be a finite number above 0"
        ));
    }
    if temperature != 1.0 && !matches!(kind, ModelKind::PixelCnn | ModelKind::PixelRnn) {
        fail(&format!(
            "{shown}: TINYGEN_TEMPERATURE={temperature}: a sampling temperature applies to \
             PixelCnn and PixelRnn models only, not to a {kind:?}"
        ));
    }
    let raw_out = env_var("TINYGEN_RAW_OUT").unwrap_or_else(|| DEFAULT_RAW_OUT.to_owned());
    if raw_out.contains('\0') {
        fail("TINYGEN_RAW_OUT must not contain a NUL byte");
    }

    // Embed a copy, so the bytes checked above are the bytes flashed.
    write(&out_dir.join("model.tgm"), &bytes);
    let mut rs = String::new();
    let _ = write!(
        rs,
        "// Generated by build.rs from {path:?}.\n\
         \n\
         /// Path of the embedded model, as given at build time.\n\
         pub const MODEL_PATH: &str = {model_arg:?};\n\
         /// Bytes of arena the model's plan needs.\n\
         pub const ARENA_BYTES: usize = {arena};\n\
         /// What the int8 kernels' scratch is planned for.\n\
         pub const PROFILE: tinygen_runtime::Profile = tinygen_runtime::Profile::{profile:?};\n\
         /// Bytes of one generated image ({c}x{h}x{w}).\n\
         pub const IMAGE_BYTES: usize = {image_bytes};\n\
         /// Images to generate.\n\
         pub const SAMPLES: u32 = {samples};\n\
         /// Seed of the one random stream all samples are drawn from.\n\
         pub const SEED: u64 = {seed};\n\
         /// Sampling temperature (autoregressive models; 1 for the others).\n\
         pub const TEMPERATURE: f32 = {temperature:?};\n\
         /// Host file for the pixels (QEMU), NUL-terminated for semihosting.\n\
         #[allow(dead_code)]\n\
         pub const RAW_OUT: &str = {raw_out_z:?};\n\
         /// Host file for the per-sample counts (QEMU): RAW_OUT.counts.\n\
         #[allow(dead_code)]\n\
         pub const COUNTS_OUT: &str = {counts_out_z:?};\n\
         \n\
         #[repr(C, align(4))]\n\
         struct Aligned<T: ?Sized>(T);\n\
         static MODEL_ALIGNED: &Aligned<[u8]> =\n    \
             &Aligned(*include_bytes!(concat!(env!(\"OUT_DIR\"), \"/model.tgm\")));\n\
         /// The model file, in flash, 4-byte aligned.\n\
         pub static MODEL: &[u8] = &MODEL_ALIGNED.0;\n",
        path = model_path.display().to_string(),
        c = image.c,
        h = image.h,
        w = image.w,
        raw_out_z = format!("{raw_out}\0"),
        counts_out_z = format!("{raw_out}.counts\0"),
    );
    write(&out_dir.join("config.rs"), rs.as_bytes());
}

/// Fails the build when the model needs a dtype or an op whose kernels this
/// build leaves out (the firmware's features `f32`, `int8`, `dense`...,
/// forwarded to the runtime's; build.rs plans with all of them).
fn check_kernels(shown: &str, model: &Model<'_>) {
    let on = |feature: &str| {
        env::var_os("CARGO_FEATURE_ALL_KERNELS").is_some()
            || env::var_os(format!(
                "CARGO_FEATURE_{}",
                feature.to_uppercase().replace('-', "_")
            ))
            .is_some()
    };
    let f = &model.file;
    let mut missing = Vec::new();
    let (dtype, _) = features::dtype_feature(f.dtype);
    if !on(dtype) {
        missing.push(format!("`{dtype}` (the file's dtype)"));
    }
    let nets = [
        ("decoder", Some(&f.decoder)),
        ("encoder", f.encoder.as_ref()),
    ];
    for (what, net) in nets {
        for (i, layer) in net.into_iter().flat_map(|n| n.layers.iter()).enumerate() {
            if let Some((op, _)) = features::op_feature(&layer.op) {
                if !on(op) && !missing.iter().any(|m| m.starts_with(&format!("`{op}`"))) {
                    missing.push(format!("`{op}` ({what} layer {i})"));
                }
            }
        }
    }
    if !missing.is_empty() {
        fail(&format!(
            "{shown}: this build leaves out kernels the model needs: {}; add them with \
             --features (or drop the encoder: tinygen convert --drop-encoder)",
            missing.join(", ")
        ));
    }
}

fn resolve(root: &Path, arg: &str) -> PathBuf {
    let p = Path::new(arg);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        root.join(p)
    }
}

/// Writes `data` unless the file already holds it (keeps mtimes stable).
fn write(path: &Path, data: &[u8]) {
    if fs::read(path).ok().as_deref() == Some(data) {
        return;
    }
    fs::write(path, data)
        .unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", path.display())));
}
