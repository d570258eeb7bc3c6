//! Builds the firmware for a model file and runs it under QEMU: the
//! Cortex-M4F (mps2-an386) by default, the Cortex-M7 (mps2-an500) or the
//! Cortex-M33 (mps2-an505) as a [`Board`]; shared by the host/target
//! contract test and `cargo xtask`.
//!
//! Standard library only, so that `xtask` can use it without compiling
//! candle.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The target the firmware builds for (Cortex-M4F and M7).
pub const TARGET: &str = "thumbv7em-none-eabihf";
/// The target of the Cortex-M33 build.
pub const TARGET_M33: &str = "thumbv8m.main-none-eabihf";

/// A QEMU board the firmware builds for and runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Board {
    /// `mps2-an386`, Cortex-M4F: the firmware's default feature `qemu`.
    M4,
    /// `mps2-an500`, Cortex-M7: feature `qemu-m7`.
    M7,
    /// `mps2-an505`, Cortex-M33 (boots Secure): feature `qemu-m33`.
    M33,
}

impl Board {
    /// Every QEMU board.
    pub const ALL: [Board; 3] = [Board::M4, Board::M7, Board::M33];

    /// The firmware feature that selects it, besides the default `qemu`.
    pub fn feature(self) -> Option<&'static str> {
        match self {
            Board::M4 => None,
            Board::M7 => Some("qemu-m7"),
            Board::M33 => Some("qemu-m33"),
        }
    }

    /// The Rust target it builds for.
    pub fn target(self) -> &'static str {
        match self {
            Board::M4 | Board::M7 => TARGET,
            Board::M33 => TARGET_M33,
        }
    }

    /// QEMU's `-machine`.
    pub fn machine(self) -> &'static str {
        match self {
            Board::M4 => "mps2-an386",
            Board::M7 => "mps2-an500",
            Board::M33 => "mps2-an505",
        }
    }

    /// QEMU's `-cpu`.
    pub fn cpu(self) -> &'static str {
        match self {
            Board::M4 => "cortex-m4",
            Board::M7 => "cortex-m7",
            Board::M33 => "cortex-m33",
        }
    }

    /// The core, for messages and tables.
    pub fn core(self) -> &'static str {
        match self {
            Board::M4 => "Cortex-M4F",
            Board::M7 => "Cortex-M7",
            Board::M33 => "Cortex-M33",
        }
    }
}
/// Name of the pixel file the firmware writes through semihosting, in QEMU's
/// working directory.
pub const RAW_FILE: &str = "tinygen-samples.raw";

/// The per-sample counts file the QEMU firmware writes beside [`RAW_FILE`]
/// (one little-endian u64 per sample).
pub const COUNTS_FILE: &str = "tinygen-samples.raw.counts";

/// Serializes firmware builds: they share one target directory and one ELF
/// path, so each build is copied out before the next one starts.
static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// The project root (the workspace directory).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Whether `qemu-system-arm` can be started.
pub fn qemu_available() -> bool {
    Command::new("qemu-system-arm")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// What one firmware run produced.
#[derive(Debug)]
pub struct FirmwareRun {
    /// The pixel bytes the firmware streamed, in sample order.
    pub pixels: Vec<u8>,
    /// Each sample's instruction count (SysTick under `-icount shift=0`),
    /// from the host file [`COUNTS_FILE`] the firmware writes beside the
    /// pixels: no defmt decoding needed.
    pub counts: Vec<u64>,
    /// QEMU's standard output: the firmware's defmt frames (decode them with
    /// `defmt-print -e <elf>`).
    pub stdout: Vec<u8>,
    /// The ELF that ran.
    pub elf: PathBuf,
    /// Wall-clock seconds QEMU ran.
    pub seconds: f64,
}

/// Builds the firmware (release) for `model`, `samples` and `seed`, and
/// copies the ELF to `out_dir/tinygen-firmware.elf`.
///
/// # Errors
///
/// If cargo fails (the message includes cargo's output, which names a model
/// that does not load or does not fit).
pub fn build(model: &Path, samples: u32, seed: u64, out_dir: &Path) -> Result<PathBuf, String> {
    build_at(model, samples, seed, 1.0, out_dir)
}

/// [`build`] with sampling temperature `temperature` (`TINYGEN_TEMPERATURE`).
///
/// # Errors
///
/// As [`build`].
pub fn build_at(
    model: &Path,
    samples: u32,
    seed: u64,
    temperature: f32,
    out_dir: &Path,
) -> Result<PathBuf, String> {
    build_for(Board::M4, model, samples, seed, temperature, out_dir)
}

/// [`build_at`] for `board`.
///
/// # Errors
///
/// As [`build`].
pub fn build_for(
    board: Board,
    model: &Path,
    samples: u32,
    seed: u64,
    temperature: f32,
    out_dir: &Path,
) -> Result<PathBuf, String> {
    let model =
        std::fs::canonicalize(model).map_err(|e| format!("model file {}: {e}", model.display()))?;
    let env = [
        ("TINYGEN_MODEL", model.display().to_string()),
        ("TINYGEN_SAMPLES", samples.to_string()),
        ("TINYGEN_SEED", seed.to_string()),
        ("TINYGEN_TEMPERATURE", format!("{temperature:?}")),
    ];
    let features: Vec<&str> = board.feature().into_iter().collect();
    cargo_build(
        board,
        &features,
        &env,
        &format!("for {} on the {}", model.display(), board.core()),
        out_dir,
    )
}

/// Builds the firmware (release) with the feature `bench-kernels`: the
/// kernel benchmark instead of sampling (the default model is embedded, and
/// unused). Copies the ELF to `out_dir/tinygen-firmware.elf`.
///
/// # Errors
///
/// If cargo fails (the message includes cargo's output).
pub fn build_bench_kernels(out_dir: &Path) -> Result<PathBuf, String> {
    cargo_build(
        Board::M4,
        &["bench-kernels"],
        &[],
        "with --features bench-kernels",
        out_dir,
    )
}

/// `cargo build --release` in `firmware/` (so that its .cargo/config.toml
/// applies) for `board`'s target with `features` added to the defaults and
/// the environment `env`; copies the ELF to `out_dir/tinygen-firmware.elf`.
/// `what` names the build in errors.
fn cargo_build(
    board: Board,
    features: &[&str],
    env: &[(&str, String)],
    what: &str,
    out_dir: &Path,
) -> Result<PathBuf, String> {
    let fw = project_root().join("firmware");
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(&fw)
        .args(["build", "--release", "--quiet", "--target", board.target()]);
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    let out = cmd
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .map_err(|e| format!("cannot run cargo in {}: {e}", fw.display()))?;
    if !out.status.success() {
        return Err(format!(
            "firmware build {what} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let elf = fw
        .join("target")
        .join(board.target())
        .join("release")
        .join("tinygen-firmware");
    std::fs::create_dir_all(out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let dst = out_dir.join("tinygen-firmware.elf");
    std::fs::copy(&elf, &dst).map_err(|e| format!("copying {}: {e}", elf.display()))?;
    Ok(dst)
}

/// How a QEMU run ended (see [`qemu`]).
#[derive(Debug)]
pub struct QemuExit {
    /// Whether QEMU, that is the firmware, exited with status 0.
    pub success: bool,
    /// The exit status, for messages.
    pub status: String,
    /// QEMU's standard output: the firmware's defmt frames (decode them with
    /// `defmt-print -e <elf>`).
    pub stdout: Vec<u8>,
    /// QEMU's standard error.
    pub stderr: String,
    /// Wall-clock seconds QEMU ran.
    pub seconds: f64,
}

/// Runs `elf` under `qemu-system-arm -machine mps2-an386 -icount shift=0`
/// with semihosting, in `work_dir`, and returns what it produced.
///
/// # Errors
///
/// If QEMU is missing, exits non-zero (the firmware's error exit), runs past
/// `timeout`, or leaves no pixel file.
pub fn run_qemu(elf: &Path, work_dir: &Path, timeout: Duration) -> Result<FirmwareRun, String> {
    run_qemu_on(Board::M4, elf, work_dir, timeout)
}

/// [`run_qemu`] on `board`'s machine (an ELF built for that board).
///
/// # Errors
///
/// As [`run_qemu`].
pub fn run_qemu_on(
    board: Board,
    elf: &Path,
    work_dir: &Path,
    timeout: Duration,
) -> Result<FirmwareRun, String> {
    std::fs::create_dir_all(work_dir).map_err(|e| format!("{}: {e}", work_dir.display()))?;
    let raw = work_dir.join(RAW_FILE);
    let counts_file = work_dir.join(COUNTS_FILE);
    let _ = std::fs::remove_file(&raw);
    let _ = std::fs::remove_file(&counts_file);
    let exit = qemu_on(board, elf, work_dir, timeout)?;
    if !exit.success {
        return Err(format!(
            "firmware exited with {} under QEMU {}\n{}",
            exit.status,
            board.machine(),
            exit.stderr
        ));
    }
    let pixels = std::fs::read(&raw)
        .map_err(|e| format!("firmware left no pixel file {}: {e}", raw.display()))?;
    let counts = std::fs::read(&counts_file)
        .map_err(|e| {
            format!(
                "firmware left no counts file {}: {e}",
                counts_file.display()
            )
        })?
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect();
    Ok(FirmwareRun {
        pixels,
        counts,
        stdout: exit.stdout,
        elf: elf.to_path_buf(),
        seconds: exit.seconds,
    })
}

/// Runs `elf` as [`run_qemu`] does (`-icount shift=0`, semihosting, in
/// `work_dir`) and returns how it ended, whatever its exit status.
///
/// # Errors
///
/// If QEMU cannot start or runs past `timeout`.
pub fn qemu(elf: &Path, work_dir: &Path, timeout: Duration) -> Result<QemuExit, String> {
    qemu_on(Board::M4, elf, work_dir, timeout)
}

/// [`qemu`] on `board`'s machine and core.
///
/// # Errors
///
/// As [`qemu`].
pub fn qemu_on(
    board: Board,
    elf: &Path,
    work_dir: &Path,
    timeout: Duration,
) -> Result<QemuExit, String> {
    std::fs::create_dir_all(work_dir).map_err(|e| format!("{}: {e}", work_dir.display()))?;
    let start = Instant::now();
    let mut child = Command::new("qemu-system-arm")
        .current_dir(work_dir)
        .args([
            "-machine",
            board.machine(),
            "-cpu",
            board.cpu(),
            "-nographic",
            "-monitor",
            "none",
            "-serial",
            "none",
            "-semihosting-config",
            "enable=on,target=native",
            "-icount",
            "shift=0",
            "-kernel",
        ])
        .arg(elf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!("cannot start qemu-system-arm ({e}); install it: apt-get install -y qemu-system-arm")
        })?;
    // Read stdout on a thread so a chatty firmware cannot block on a full pipe.
    let mut stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = std::io::Read::read_to_end(s, &mut buf);
        }
        buf
    });
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "QEMU ran past {} s and was killed",
                    timeout.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("waiting for QEMU: {e}")),
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    let stdout = reader.join().unwrap_or_default();
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    Ok(QemuExit {
        success: status.success(),
        status: status.to_string(),
        stdout,
        stderr,
        seconds,
    })
}
