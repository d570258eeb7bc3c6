//! `cargo xtask demo | test | bench | bench-kernels | quality | models` (the
//! cargo-xtask pattern: plain Rust instead of shell scripts, run from
//! anywhere in the repository).
//!
//! Every command installs what it needs first: the rustup targets, and
//! `qemu-system-arm` (and, for `test`, `gcc-multilib`, which links the
//! runtime's tests for `i686-unknown-linux-gnu`, a 32-bit `usize` like the
//! boards') through apt-get when running as root (otherwise it stops with
//! the exact command to run); `demo`, `bench` and `bench-kernels` also
//! `cargo install` defmt-print to decode the firmware's log.
//!
//! `bench-kernels` times every int8 kernel shape of
//! `firmware/src/bench_kernels.rs` on the emulated Cortex-M4, reference vs
//! optimized, checks their outputs are equal, and prints the table (also
//! written to `out/bench-kernels.md`).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tinygen_tests::firmware;

mod elf;
mod quality;

const THUMB_TARGETS: [&str; 2] = ["thumbv6m-none-eabi", "thumbv7em-none-eabihf"];

/// A host target with a 32-bit `usize`, like the boards': the runtime's
/// tests run there too (its linker support: apt's gcc-multilib).
const HOST32_TARGET: &str = "i686-unknown-linux-gnu";

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  test                 everything CI checks: fmt, clippy (host, thumbv7em, the firmware of every
                       board: QEMU, nRF52840-DK, Pico, Pico 2), all tests (the
                       runtime's also on i686, a 32-bit usize), docs, the firmware builds, the
                       QEMU-vs-host contract test (Cortex-M4F; every int8 file also on the
                       Cortex-M7 and the Cortex-M33), and 30 s of fuzzing per fuzz target (the
                       i686 build, no sanitizer)
  demo [--epochs N]    train a VAE on the shipped data (default 15 epochs), export f32 and
                       int8, sample the int8 model on an emulated Cortex-M4 (QEMU), write
                       out/demo/firmware-samples.png and print a summary
  bench [--k N] [--samples N] [--test-images N] [--fresh] [--keep-quality]
                       for every models/*.tgm: parameters, flash, arena, MACs, instructions
                       per sample on the emulated Cortex-M4 (and per MAC, ms at 64/100 MHz,
                       beside the previous BENCHMARKS.md's count), host samples/s; the kernel
                       table of bench-kernels; training s/epoch;
                       quality (`tinygen eval`: nats, FCD, inception score, label entropy) of
                       every generative file in f32, f16 (converted) and int8, IWAE k = N
                       (default 1000; the VAE rows take most of the time), N samples per file
                       (default 1000); prints the tables and writes BENCHMARKS.md.
                       --keep-quality: carry the training and quality sections over from the
                       existing BENCHMARKS.md (for runtime-only changes; the model files and
                       the kernels' outputs must be unchanged, which the tests check)
  bench-kernels        every int8 kernel shape (CMSIS-NN's five, the shipped models' layers)
                       on the emulated Cortex-M4: reference vs optimized instructions per MAC,
                       against CMSIS-NN; checks the outputs are equal; prints the table and
                       writes out/bench-kernels.md
  quality [--k N] [--samples N] [--test-images N] [--fresh]
                       only bench's quality table (no QEMU), printed; BENCHMARKS.md unchanged
                       (--test-images, also taken by bench: a quick look at the first N only;
                       evaluations are cached in out/bench/eval-cache by file bytes and options,
                       --fresh evaluates every file again)
  models [--epochs N]  retrain and re-export the shipped models in models/ (--epochs: the VAE's,
                       default 30; the other families train the epochs models/README.md lists)
  fuzz [--seconds N] [--i686]
                       the runtime's cargo-fuzz targets (fuzz/: arbitrary bytes; real files
                       mutated with their CRC fixed), each for N seconds (default 300), seeded
                       from tests/fixtures and the int8 models, under AddressSanitizer when a
                       nightly toolchain is installed (else on stable, no sanitizer); --i686:
                       the 32-bit build (the boards' usize; installs g++-multilib); installs
                       cargo-fuzz first; a crash is kept in fuzz/artifacts/TARGET/
";

/// The runtime's fuzz targets (fuzz/fuzz_targets/).
const FUZZ_TARGETS: [&str; 2] = ["load_bytes", "mutate_files"];

/// Seconds `cargo xtask test` fuzzes each target.
const TEST_FUZZ_SECONDS: u64 = 30;

fn main() {
    if let Err(e) = real_main() {
        // The error chain, without the backtrace RUST_BACKTRACE may ask for.
        eprintln!("\nerror: {e:#}");
        std::process::exit(1);
    }
}

/// Where cargo puts build outputs: `CARGO_TARGET_DIR` if set, else `target/`.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|d| if d.is_absolute() { d } else { root.join(d) })
        .unwrap_or_else(|| root.join("target"))
}

fn real_main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = firmware::project_root();
    std::env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("test") => test(&root),
        Some("demo") => demo(&root, epochs_flag(&args[1..], 15)?),
        Some("bench") => {
            let keep = args[1..].iter().any(|a| a == "--keep-quality");
            let rest: Vec<String> = args[1..]
                .iter()
                .filter(|a| *a != "--keep-quality")
                .cloned()
                .collect();
            bench(&root, quality::parse_flags(&rest)?, keep)
        }
        Some("bench-kernels") => match &args[1..] {
            [] => bench_kernels(&root),
            extra => bail!("bench-kernels takes no arguments, got {extra:?}\n\n{USAGE}"),
        },
        Some("models") => models(&root, epochs_flag(&args[1..], 30)?),
        Some("fuzz") => {
            let host32 = args[1..].iter().any(|a| a == "--i686");
            let rest: Vec<String> = args[1..]
                .iter()
                .filter(|a| *a != "--i686")
                .cloned()
                .collect();
            fuzz(&root, seconds_flag(&rest, 300)?, true, host32)
        }
        Some("quality") => quality::quality_only(&root, quality::parse_flags(&args[1..])?),
        Some("-h" | "--help" | "help") | None => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown command {other:?}\n\n{USAGE}"),
    }
}

fn epochs_flag(args: &[String], default: usize) -> Result<usize> {
    match args {
        [] => Ok(default),
        [flag, n] if flag == "--epochs" => n
            .parse()
            .with_context(|| format!("--epochs takes a number, got {n:?}")),
        _ => bail!("unexpected arguments {args:?}\n\n{USAGE}"),
    }
}

fn seconds_flag(args: &[String], default: u64) -> Result<u64> {
    match args {
        [] => Ok(default),
        [flag, n] if flag == "--seconds" => n
            .parse()
            .with_context(|| format!("--seconds takes a number, got {n:?}")),
        _ => bail!("unexpected arguments {args:?}\n\n{USAGE}"),
    }
}

/// cargo-fuzz (from crates.io).
fn ensure_cargo_fuzz(root: &Path) -> Result<()> {
    let has_fuzz = Command::new(cargo())
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_fuzz {
        step("cargo install cargo-fuzz --locked");
        run(root, &cargo(), ["install", "cargo-fuzz", "--locked"])?;
    }
    Ok(())
}

/// Whether a nightly toolchain is installed (for AddressSanitizer; new
/// machines may have only the stable one, and fetch no other).
fn has_nightly(root: &Path) -> bool {
    output(root, "rustup", &["toolchain", "list"])
        .is_ok_and(|t| t.lines().any(|l| l.starts_with("nightly")))
}

/// Runs every fuzz target for `seconds`, seeded with the fixtures and the
/// int8 models (the f32 ones are large and add little: the same
/// structures). With `asan` and a nightly toolchain, under
/// AddressSanitizer; otherwise on stable without a sanitizer (panics,
/// overflow checks and aborts are still findings: the runtime's unsafe
/// code is what a sanitizer would add).
fn fuzz(root: &Path, seconds: u64, asan: bool, host32: bool) -> Result<()> {
    ensure_cargo_fuzz(root)?;
    if host32 {
        // libFuzzer is C++: 32-bit builds need g++-multilib.
        ensure_host32(root)?;
        ensure_apt("g++-multilib", || dpkg_installed("g++-multilib"))?;
    }
    let asan = asan && !host32 && has_nightly(root);
    if host32 {
        println!(
            "fuzzing the {HOST32_TARGET} build (32-bit usize, as on the boards), no sanitizer"
        );
    } else if !asan {
        println!("fuzzing on the stable toolchain without a sanitizer");
    }
    let mut seeds: Vec<PathBuf> = Vec::new();
    for (dir, keep) in [("tests/fixtures", ""), ("models", "-int8.tgm")] {
        for e in std::fs::read_dir(root.join(dir))? {
            let p = e?.path();
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            if name.ends_with(".tgm") && name.ends_with(keep) {
                seeds.push(p);
            }
        }
    }
    for target in FUZZ_TARGETS {
        let corpus = root.join("fuzz/corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        for s in &seeds {
            let to = corpus.join(s.file_name().unwrap_or_default());
            if !to.exists() {
                std::fs::copy(s, &to)?;
            }
        }
        step(&format!("fuzz {target} for {seconds} s"));
        let t = Instant::now();
        let mut args: Vec<String> = Vec::new();
        // Through rustup for nightly: the CARGO cargo runs xtask with is
        // the stable toolchain's binary, which takes no +toolchain.
        let program = if asan {
            args.extend(["run", "nightly", "cargo"].map(String::from));
            "rustup".to_string()
        } else {
            cargo()
        };
        args.extend(["fuzz", "run"].map(String::from));
        if !asan {
            args.extend(["--sanitizer", "none"].map(String::from));
        }
        if host32 {
            args.extend(["--target", HOST32_TARGET].map(String::from));
        }
        args.extend([
            target.to_string(),
            corpus.display().to_string(),
            "--".into(),
            format!("-max_total_time={seconds}"),
            "-rss_limit_mb=4096".into(),
            "-print_final_stats=1".into(),
        ]);
        run(root, &program, &args).with_context(|| {
            format!("fuzz target {target} found a crash: see fuzz/artifacts/{target}/ and the log above")
        })?;
        println!(
            "fuzzed {target} for {:.0} s: no crash",
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn step(name: &str) {
    println!("\n==> {name}");
}

/// Runs a command, streaming its output; fails if it fails.
fn run<I, S>(dir: &Path, program: &str, args: I) -> Result<()>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_env(dir, program, args, &[])
}

fn run_env<I, S>(dir: &Path, program: &str, args: I, env: &[(&str, &str)]) -> Result<()>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(program);
    cmd.current_dir(dir).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {program} (is it installed?)"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

fn output(dir: &Path, program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .current_dir(dir)
        .args(args)
        .output()
        .with_context(|| format!("cannot start {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn is_root() -> bool {
    output(Path::new("."), "id", &["-u"]).is_ok_and(|s| s.trim() == "0")
}

/// rustup targets for the runtime and the firmware.
fn ensure_targets(root: &Path) -> Result<()> {
    ensure_rust_targets(root, &THUMB_TARGETS)
}

fn ensure_rust_targets(root: &Path, targets: &[&str]) -> Result<()> {
    let installed = output(root, "rustup", &["target", "list", "--installed"])
        .context("rustup is needed to add the thumb targets")?;
    let missing: Vec<&str> = targets
        .iter()
        .copied()
        .filter(|t| !installed.lines().any(|l| l.trim() == *t))
        .collect();
    if !missing.is_empty() {
        step(&format!("rustup target add {}", missing.join(" ")));
        let mut args = vec!["target", "add"];
        args.extend(&missing);
        run(root, "rustup", args)?;
    }
    Ok(())
}

fn ensure_qemu() -> Result<()> {
    ensure_apt("qemu-system-arm", firmware::qemu_available)
}

/// Whether Debian package `package` is installed.
fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg")
        .args(["-s", package])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether 32-bit x86 programs link here (gcc-multilib's crt files).
fn multilib_available() -> bool {
    dpkg_installed("gcc-multilib")
}

/// The 32-bit host target and its linker support, for the runtime's tests
/// with a 32-bit `usize`.
fn ensure_host32(root: &Path) -> Result<()> {
    ensure_rust_targets(root, &[HOST32_TARGET])?;
    ensure_apt("gcc-multilib", multilib_available)
}

/// Installs apt package `package` (as root; otherwise stops with the
/// command to run) unless `present()` already says it is there.
fn ensure_apt(package: &str, present: fn() -> bool) -> Result<()> {
    if present() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "{package} is not installed. Install it with:\n    sudo apt-get install -y {package}"
        );
    }
    step(&format!("apt-get install -y {package}"));
    run(Path::new("."), "apt-get", ["update", "-q"])?;
    run_env(
        Path::new("."),
        "apt-get",
        ["install", "-y", "-q", package],
        &[("DEBIAN_FRONTEND", "noninteractive")],
    )?;
    if !present() {
        bail!("{package} is still missing after apt-get install");
    }
    Ok(())
}

fn defmt_print_available() -> bool {
    Command::new("defmt-print")
        .arg("--version")
        .output()
        .is_ok()
}

fn ensure_defmt_print(root: &Path) -> Result<()> {
    if defmt_print_available() {
        return Ok(());
    }
    step("cargo install defmt-print --locked");
    run(root, &cargo(), ["install", "defmt-print", "--locked"])
}

fn test(root: &Path) -> Result<()> {
    let t0 = Instant::now();
    ensure_targets(root)?;
    // The Cortex-M33 firmware (ARMv8-M Mainline) of the contract test.
    ensure_rust_targets(root, &[firmware::TARGET_M33])?;
    ensure_qemu()?;
    let c = cargo();
    let fw = root.join("firmware");

    step("format");
    run(root, &c, ["fmt", "--all", "--", "--check"])?;
    run(&fw, &c, ["fmt", "--", "--check"])?;

    step("clippy (host)");
    run(
        root,
        &c,
        [
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    step("clippy (runtime on thumbv7em-none-eabihf)");
    run(
        root,
        &c,
        [
            "clippy",
            "-p",
            "tinygen-runtime",
            "--target",
            "thumbv7em-none-eabihf",
            "--features",
            "defmt",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    step("runtime builds for thumbv6m-none-eabi (Cortex-M0+, no FPU)");
    run(
        root,
        &c,
        [
            "build",
            "-p",
            "tinygen-runtime",
            "--target",
            "thumbv6m-none-eabi",
        ],
    )?;
    step("runtime dependency tree has no alloc and no std");
    let tree = output(
        root,
        &c,
        &[
            "tree",
            "-p",
            "tinygen-runtime",
            "-e",
            "normal,features",
            "--target",
            "thumbv6m-none-eabi",
        ],
    )?;
    let bad: Vec<&str> = tree
        .lines()
        .filter(|l| l.contains("feature \"alloc\"") || l.contains("feature \"std\""))
        .collect();
    if !bad.is_empty() {
        bail!(
            "the runtime's dependencies enable alloc/std:\n{}",
            bad.join("\n")
        );
    }
    println!("ok: no alloc or std feature in the runtime's tree");

    step("tests");
    run(root, &c, ["test", "--workspace"])?;
    step("runtime tests with a 32-bit usize (i686-unknown-linux-gnu, overflow checks on)");
    ensure_host32(root)?;
    run(
        root,
        &c,
        ["test", "-p", "tinygen-runtime", "--target", HOST32_TARGET],
    )?;
    step("docs");
    run_env(
        root,
        &c,
        // Libraries only: the binaries' doc comments are clap's --help texts.
        ["doc", "--workspace", "--no-deps", "--lib"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;

    step(
        "firmware: clippy (QEMU boards M4F, M7, M33, the kernel benchmark, nRF52840-DK, \
         Raspberry Pi Pico and Pico 2, micro:bit) and release builds",
    );
    // (features, whether they replace the default `qemu`, target): the
    // Raspberry Pi Pico and Pico 2 and the nRF52840-DK are checked, not run
    // (no hardware here); build.rs still checks the default model fits each.
    let boards: [(&str, bool, &str); 7] = [
        ("qemu", false, firmware::TARGET),
        ("qemu-m7", false, firmware::TARGET),
        ("qemu-m33", false, firmware::TARGET_M33),
        ("bench-kernels", false, firmware::TARGET),
        ("nrf52840dk,all-kernels", true, firmware::TARGET),
        ("pico,all-kernels", true, firmware::TARGET_M0),
        ("pico2,all-kernels", true, firmware::TARGET_M33),
    ];
    for (features, no_default, target) in boards {
        let t = Instant::now();
        let mut args = vec!["clippy", "--features", features, "--target", target];
        if no_default {
            args.push("--no-default-features");
        }
        args.extend(["--", "-D", "warnings"]);
        run(&fw, &c, args)?;
        println!(
            "firmware {features} ({target}): clippy in {:.0} s",
            t.elapsed().as_secs_f64()
        );
    }
    run(
        &fw,
        &c,
        [
            "build",
            "--release",
            "--no-default-features",
            "--features",
            "nrf52840dk,all-kernels",
        ],
    )?;
    run(&fw, &c, ["build", "--release"])?;
    // The micro:bit (Cortex-M0, 16 KiB of RAM): build.rs plans the embedded
    // model, and only a sampling-only int8 decoder fits, so clippy builds it
    // with the shipped VAE without its encoder.
    let vae = std::fs::read(root.join("models/vae-int8.tgm")).context("models/vae-int8.tgm")?;
    let small = firmware::without_encoder(&vae).map_err(|e| anyhow::anyhow!(e))?;
    let dir = target_dir(root).join("xtask-microbit");
    std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
    let model = dir.join("vae-int8-sampling.tgm");
    std::fs::write(&model, small).with_context(|| model.display().to_string())?;
    run_env(
        &fw,
        &c,
        [
            "clippy",
            "--target",
            firmware::TARGET_M0,
            "--no-default-features",
            "--features",
            firmware::MICROBIT_FEATURES,
            "--",
            "-D",
            "warnings",
        ],
        &[("TINYGEN_MODEL", model.to_str().context("model path")?)],
    )?;

    step(
        "host/target contract: firmware under QEMU (Cortex-M4F, M7, M33, micro:bit M0) vs host \
         runtime, byte for byte",
    );
    run(
        root,
        &c,
        [
            "test",
            "-p",
            "tinygen-tests",
            "--test",
            "qemu_contract",
            "--",
            "--ignored",
        ],
    )?;
    step("fuzz the runtime briefly (each target, from the fixtures and int8 models)");
    fuzz(root, TEST_FUZZ_SECONDS, false, true)?;
    println!("\nall checks passed in {:.0} s", t0.elapsed().as_secs_f64());
    Ok(())
}

fn build_trainer(root: &Path) -> Result<PathBuf> {
    step("build the trainer (release)");
    run(
        root,
        &cargo(),
        ["build", "--release", "-p", "tinygen-trainer"],
    )?;
    Ok(target_dir(root).join("release").join("tinygen"))
}

fn export(tinygen: &Path, root: &Path, run_dir: &Path, quant: &str, out: &Path) -> Result<()> {
    run(
        root,
        tinygen.to_str().context("path")?,
        [
            OsStr::new("export"),
            run_dir.as_os_str(),
            OsStr::new("--quant"),
            OsStr::new(quant),
            OsStr::new("-o"),
            out.as_os_str(),
        ],
    )
}

fn info_json(tinygen: &Path, root: &Path, file: &Path) -> Result<serde_json::Value> {
    let s = output(
        root,
        tinygen.to_str().context("path")?,
        &["info", "--json", file.to_str().context("path")?],
    )?;
    Ok(serde_json::from_str(&s)?)
}

fn figure(info: &serde_json::Value, name: &str) -> Option<f64> {
    info["figures"][name].as_f64()
}

/// Decodes the defmt frames `frames` that the firmware `elf` logged.
fn defmt_decode(elf: &Path, frames: &[u8]) -> Result<String> {
    use std::io::Write;
    let mut child = Command::new("defmt-print")
        .arg("-e")
        .arg(elf)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("cannot start defmt-print (cargo install defmt-print --locked)")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(frames)?;
    }
    let out = child.wait_with_output()?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The mean of the per-sample instruction counts the firmware wrote beside
/// its pixels (no defmt decoding needed).
fn mean_count(run: &firmware::FirmwareRun) -> Option<u64> {
    let n = u64::try_from(run.counts.len()).ok().filter(|&n| n > 0)?;
    Some(run.counts.iter().sum::<u64>() / n)
}

/// Writes the firmware's log as `firmware.log`, decoded when `defmt-print`
/// is installed; otherwise its raw defmt frames as `firmware.defmt`, with
/// the command that decodes them. Returns the file written.
fn save_log(run: &firmware::FirmwareRun, out: &Path) -> Result<PathBuf> {
    if defmt_print_available() {
        let path = out.join("firmware.log");
        std::fs::write(&path, defmt_decode(&run.elf, &run.stdout)?)?;
        return Ok(path);
    }
    let path = out.join("firmware.defmt");
    std::fs::write(&path, &run.stdout)?;
    println!(
        "defmt-print is not installed, so the firmware's log is kept as raw frames: \
         {}\n  decode it with: cargo install defmt-print --locked && defmt-print -e {} < {}",
        path.display(),
        run.elf.display(),
        path.display()
    );
    Ok(path)
}

/// Seconds of each phase of a command, for its summary.
struct Phases {
    start: Instant,
    last: Instant,
    done: Vec<(&'static str, f64)>,
}

impl Phases {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            start: now,
            last: now,
            done: Vec::new(),
        }
    }

    /// Ends the phase `name` (it began where the last one ended).
    fn end(&mut self, name: &'static str) {
        let now = Instant::now();
        self.done.push((name, (now - self.last).as_secs_f64()));
        self.last = now;
    }

    fn print(&self) {
        for (name, s) in &self.done {
            println!("  {name:<25}{s:6.0} s");
        }
        println!(
            "finished in                {:.0} s",
            self.start.elapsed().as_secs_f64()
        );
    }
}

fn demo(root: &Path, epochs: usize) -> Result<()> {
    let mut phases = Phases::new();
    ensure_targets(root)?;
    ensure_qemu()?;
    phases.end("tools (rustup, apt)");
    let tinygen = build_trainer(root)?;
    phases.end("build the trainer");
    let out = root.join("out").join("demo");
    std::fs::create_dir_all(&out)?;

    step(&format!(
        "train a VAE for {epochs} epochs on data/mnist-subset"
    ));
    let e = epochs.to_string();
    let run_dir = train_run(
        &tinygen,
        root,
        &out.join("runs"),
        &["vae", "--epochs", &e],
        None,
    )?;
    phases.end("train");

    step("export f32 and int8 (each evaluated through the runtime on the test set)");
    let f32_file = out.join("vae-f32.tgm");
    let i8_file = out.join("vae-int8.tgm");
    export(&tinygen, root, &run_dir, "f32", &f32_file)?;
    export(&tinygen, root, &run_dir, "int8", &i8_file)?;
    let f32_info = info_json(&tinygen, root, &f32_file)?;
    let i8_info = info_json(&tinygen, root, &i8_file)?;
    phases.end("export and evaluate");

    let samples = 16u32;
    let seed = 1u64;
    step("build the firmware for the int8 model and sample it on QEMU's Cortex-M4");
    let elf = firmware::build(&i8_file, samples, seed, &out).map_err(anyhow::Error::msg)?;
    phases.end("build the firmware");
    let fw_run =
        firmware::run_qemu(&elf, &out, Duration::from_secs(900)).map_err(anyhow::Error::msg)?;
    let insns = mean_count(&fw_run);
    let log = save_log(&fw_run, &out)?;
    let png = out.join("firmware-samples.png");
    let raw = out.join(firmware::RAW_FILE);
    run(
        root,
        tinygen.to_str().context("path")?,
        [
            OsStr::new("grid"),
            raw.as_os_str(),
            OsStr::new("-o"),
            png.as_os_str(),
            OsStr::new("--cols"),
            OsStr::new("4"),
        ],
    )?;

    step("the same samples on the host runtime");
    let host_raw = out.join("host-samples.raw");
    run(
        root,
        tinygen.to_str().context("path")?,
        [
            OsStr::new("sample"),
            i8_file.as_os_str(),
            OsStr::new("-n"),
            OsStr::new(&samples.to_string()),
            OsStr::new("--seed"),
            OsStr::new(&seed.to_string()),
            OsStr::new("-o"),
            out.join("host-samples.png").as_os_str(),
            OsStr::new("--raw"),
            host_raw.as_os_str(),
        ],
    )?;
    let identical = std::fs::read(&host_raw)? == fw_run.pixels;
    phases.end("sample (QEMU and host)");

    let flash = elf::flash_bytes(&elf)?;
    let nats = |i: &serde_json::Value| {
        figure(i, "test_neg_elbo_nats").map_or("n/a".into(), |v| format!("{v:.2}"))
    };
    println!("\n================ tinygen demo ================");
    println!("run directory              {}", run_dir.display());
    println!(
        "-ELBO, test set (nats/img) f32 {}  int8 {}",
        nats(&f32_info),
        nats(&i8_info)
    );
    println!(
        "int8 model file            {} bytes",
        i8_info["flash_bytes"]
    );
    println!("firmware flash (all)       {flash} bytes (code + model)");
    println!(
        "arena                      {} bytes",
        i8_info["arena_bytes"]
    );
    println!("MACs per sample            {}", i8_info["macs_per_sample"]);
    match insns {
        Some(n) => println!("instructions per sample    {n} (Cortex-M4, QEMU -icount)"),
        None => println!(
            "instructions per sample    the firmware wrote no counts (see {})",
            log.display()
        ),
    }
    println!(
        "QEMU vs host bytes         {}",
        if identical { "identical" } else { "DIFFERENT" }
    );
    println!("firmware samples           {}", png.display());
    println!("firmware log               {}", log.display());
    phases.print();
    if !identical {
        bail!("the firmware's samples differ from the host runtime's");
    }
    Ok(())
}

fn models(root: &Path, epochs: usize) -> Result<()> {
    let tinygen = build_trainer(root)?;
    let out = root.join("out").join("models");
    std::fs::create_dir_all(&out)?;
    step(&format!("train the shipped VAE ({epochs} epochs, seed 0)"));
    let e = epochs.to_string();
    let run_dir = train_run(
        &tinygen,
        root,
        &out.join("runs"),
        &["vae", "--epochs", &e],
        Some(shipped_threads("vae")),
    )?;
    let models = root.join("models");
    std::fs::create_dir_all(&models)?;
    for q in ["f32", "int8"] {
        export(
            &tinygen,
            root,
            &run_dir,
            q,
            &models.join(format!("vae-{q}.tgm")),
        )?;
    }
    std::fs::copy(run_dir.join("samples.png"), models.join("vae-samples.png"))?;
    println!("wrote models/vae-f32.tgm, models/vae-int8.tgm, models/vae-samples.png");
    ae_gan_classifier_models(&tinygen, root, &out, &models)?;
    shipped_family(
        &tinygen,
        root,
        &out,
        &models,
        "pixelcnn",
        PIXELCNN_EPOCHS,
        &PIXELCNN_ARGS,
    )?;
    shipped_family(
        &tinygen,
        root,
        &out,
        &models,
        "pixelrnn",
        PIXELRNN_EPOCHS,
        &PIXELRNN_ARGS,
    )?;
    latent_pictures(&tinygen, root, &out, &models)?;
    Ok(())
}

/// Epochs of the 2-D latent VAE drawn as a manifold (about 10 s each on 2 shared cores).
const VAE2D_EPOCHS: usize = 20;

/// The lecture's latent-space pictures: a VAE with a 2-D latent (f32, int8),
/// its manifold and loss curves, and interpolation strips of the shipped
/// autoencoder, GAN and VAE (all drawn by the runtime from the int8 files).
fn latent_pictures(tinygen: &Path, root: &Path, out: &Path, models: &Path) -> Result<()> {
    step(&format!(
        "train the 2-D latent VAE ({VAE2D_EPOCHS} epochs, seed 0)"
    ));
    let epochs = VAE2D_EPOCHS.to_string();
    let run_dir = train_run(
        tinygen,
        root,
        &out.join("vae2d-runs"),
        &["vae", "--latent", "2", "--epochs", &epochs],
        Some(shipped_threads("vae")),
    )?;
    for q in ["f32", "int8"] {
        export(
            tinygen,
            root,
            &run_dir,
            q,
            &models.join(format!("vae2d-{q}.tgm")),
        )?;
    }
    std::fs::copy(run_dir.join("loss.png"), models.join("vae2d-loss.png"))?;
    let tg = tinygen.to_str().context("path")?;
    let m = |name: &str| models.join(name).to_string_lossy().into_owned();
    run(
        root,
        tg,
        [
            "manifold",
            &m("vae2d-int8.tgm"),
            "-n",
            "20",
            "-o",
            &m("vae2d-manifold.png"),
        ],
    )?;
    for family in ["ae", "vae", "gan"] {
        run(
            root,
            tg,
            [
                "interpolate",
                &m(&format!("{family}-int8.tgm")),
                "--seed",
                "1",
                "--pairs",
                "4",
                "--steps",
                "10",
                "-o",
                &m(&format!("{family}-interpolate.png")),
            ],
        )?;
    }
    println!(
        "wrote models/vae2d-{{f32,int8}}.tgm, models/vae2d-manifold.png, models/vae2d-loss.png, \
         models/{{ae,vae,gan}}-interpolate.png"
    );
    Ok(())
}

/// Epochs of the shipped PixelCNN: two stacks of 32 channels each, a 7x7
/// mask-A layer and eight 5x5 layers, AdamW 3e-3 decaying linearly to 0,
/// batch 128 (157 s per epoch of training steps on 2 idle cores).
const PIXELCNN_EPOCHS: usize = 20;
/// The shipped PixelCNN's shape (with `PIXELCNN_EPOCHS`).
const PIXELCNN_ARGS: [&str; 10] = [
    "--arch",
    "stacks",
    "--channels",
    "32",
    "--layers",
    "8",
    "--kernel",
    "5",
    "--batch-size",
    "128",
];

/// Epochs of the shipped PixelRNN: three Row LSTM layers of 48 hidden
/// channels, Adam 2e-3 decaying linearly to 0, batch 64, one thread (about
/// 155 s per epoch beside another training run).
const PIXELRNN_EPOCHS: usize = 16;
/// The shipped PixelRNN's shape (with `PIXELRNN_EPOCHS`).
const PIXELRNN_ARGS: [&str; 11] = [
    "--hidden",
    "48",
    "--layers",
    "3",
    "--batch-size",
    "64",
    "--lr",
    "2e-3",
    "--lr-decay",
    "--weight-decay",
    "0",
];

/// Trains `family` with `args` (seed 0), exports the run as
/// `models/<family>-{f32,int8}.tgm` and copies its `samples.png` and
/// `loss.png` next to them (as `<family>-samples.png`, `<family>-loss.png`).
fn shipped_family(
    tinygen: &Path,
    root: &Path,
    out: &Path,
    models: &Path,
    family: &str,
    epochs: usize,
    args: &[&str],
) -> Result<()> {
    step(&format!(
        "train the shipped {family} ({epochs} epochs, seed 0)"
    ));
    let epochs = epochs.to_string();
    let mut all = vec![family, "--epochs", &epochs];
    all.extend_from_slice(args);
    let threads = shipped_threads(family);
    step(&format!(
        "(RAYON_NUM_THREADS={threads}, as the shipped run)"
    ));
    let run_dir = train_run(
        tinygen,
        root,
        &out.join(format!("{family}-runs")),
        &all,
        Some(threads),
    )?;
    for q in ["f32", "int8"] {
        let file = models.join(format!("{family}-{q}.tgm"));
        export(tinygen, root, &run_dir, q, &file)?;
    }
    for what in ["samples", "loss"] {
        std::fs::copy(
            run_dir.join(format!("{what}.png")),
            models.join(format!("{family}-{what}.png")),
        )?;
    }
    println!(
        "wrote models/{family}-f32.tgm, models/{family}-int8.tgm, \
         models/{family}-samples.png, models/{family}-loss.png"
    );
    Ok(())
}

/// Epochs of the shipped autoencoder (13-30 s each measured on 2 cores shared with other work).
const AE_EPOCHS: usize = 15;
/// Epochs of the shipped GAN, batch 64, generator 64 and discriminator 32 channels
/// (15-18 s each on 2 idle cores; the shipped run used RAYON_NUM_THREADS=1).
const GAN_EPOCHS: usize = 50;
/// Epochs of the shipped classifier, at learning rate 2e-3 decaying linearly to
/// 0 (7-20 s each on 2 shared cores; 98.2 % on the 1,000 test images).
const CLASSIFIER_EPOCHS: usize = 40;

/// Threads the shipped run of `family` trained with (`RAYON_NUM_THREADS`):
/// candle's float reductions depend on the thread count, so reproducing a
/// shipped model bit for bit needs the same one.
fn shipped_threads(family: &str) -> &'static str {
    match family {
        "gan" | "classifier" | "pixelrnn" => "1",
        _ => "2",
    }
}

/// Runs `tinygen train <args> --seed 0 --out <dir>` in a fresh `dir` (with
/// `RAYON_NUM_THREADS=threads` if given, else the environment's) and
/// returns the run directory.
fn train_run(
    tinygen: &Path,
    root: &Path,
    dir: &Path,
    args: &[&str],
    threads: Option<&str>,
) -> Result<PathBuf> {
    let _ = std::fs::remove_dir_all(dir);
    let mut all: Vec<&OsStr> = vec![OsStr::new("train")];
    all.extend(args.iter().map(OsStr::new));
    all.extend([OsStr::new("--seed"), OsStr::new("0"), OsStr::new("--out")]);
    all.push(dir.as_os_str());
    let env: Vec<(&str, &str)> = threads
        .map(|t| ("RAYON_NUM_THREADS", t))
        .into_iter()
        .collect();
    run_env(root, tinygen.to_str().context("path")?, all, &env)?;
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.pop().context("training wrote no run directory")
}

/// The shipped autoencoder (f32, int8), GAN generator (f32, int8) and
/// classifier (safetensors + config.json).
fn ae_gan_classifier_models(tinygen: &Path, root: &Path, out: &Path, models: &Path) -> Result<()> {
    let epochs = |n: usize| n.to_string();
    shipped_family(tinygen, root, out, models, "ae", AE_EPOCHS, &[])?;
    shipped_family(
        tinygen,
        root,
        out,
        models,
        "gan",
        GAN_EPOCHS,
        &[
            "--batch-size",
            "64",
            "--g-channels",
            "64",
            "--d-channels",
            "32",
        ],
    )?;

    step(&format!(
        "train the shipped classifier ({CLASSIFIER_EPOCHS} epochs, seed 0, all labels)"
    ));
    let cls_epochs = epochs(CLASSIFIER_EPOCHS);
    let cls = train_run(
        tinygen,
        root,
        &out.join("classifier-runs"),
        &["classifier", "--epochs", &cls_epochs, "--lr", "2e-3"],
        Some(shipped_threads("classifier")),
    )?;
    std::fs::copy(
        cls.join("model.safetensors"),
        models.join("classifier.safetensors"),
    )?;
    std::fs::copy(cls.join("config.json"), models.join("classifier.json"))?;
    println!(
        "wrote models/ae-{{f32,int8}}.tgm, models/gan-{{f32,int8}}.tgm, \
         models/classifier.safetensors and models/classifier.json"
    );
    Ok(())
}

/// The last value of the `seconds` column of a run's metrics.csv (every
/// family writes one, last).
fn last_epoch_seconds(run_dir: &Path) -> Result<f64> {
    let csv = std::fs::read_to_string(run_dir.join("metrics.csv"))?;
    let header = csv.lines().next().context("empty metrics.csv")?;
    let col = header
        .split(',')
        .position(|c| c == "seconds")
        .context("metrics.csv has no seconds column")?;
    let last = csv.lines().last().context("empty metrics.csv")?;
    last.split(',')
        .nth(col)
        .context("short metrics.csv row")?
        .parse()
        .context("seconds is not a number")
}

/// BENCHMARKS.md's training section: seconds per epoch of every family's
/// default model (one epoch over the shipped 7,000 images, the epoch loop
/// only, as the run's metrics.csv measures it), and the AE-feature
/// experiment: classifier test accuracy from the autoencoder's encoder vs
/// random initialization with 100 and 1,000 labels.
fn training_section(tinygen: &Path, root: &Path, out: &Path) -> Result<String> {
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .to_string()
    });
    let mut md = format!(
        "\n## Training\n\nSeconds per epoch over the 7,000 shipped training images \
         (training steps only, from each run's metrics.csv; {threads} threads, release build):\n\n\
         | family | command | seconds per epoch |\n| --- | --- | --- |\n"
    );
    let families: [(&str, &[&str]); 6] = [
        ("vae", &[]),
        ("ae", &[]),
        (
            "gan",
            &[
                "--batch-size",
                "64",
                "--g-channels",
                "64",
                "--d-channels",
                "32",
            ],
        ),
        ("pixelcnn", &PIXELCNN_ARGS),
        ("pixelrnn", &PIXELRNN_ARGS),
        ("classifier", &[]),
    ];
    let mut ae_run = None;
    for (family, extra) in families {
        step(&format!("training seconds per epoch: {family}"));
        // The autoencoder trains as long as the shipped one, for the
        // AE-feature experiment below; the others one epoch.
        let epochs = if family == "ae" { AE_EPOCHS } else { 1 };
        let mut args = vec![family, "--epochs"];
        let e = epochs.to_string();
        args.push(&e);
        args.extend_from_slice(extra);
        let dir = train_run(
            tinygen,
            root,
            &out.join(format!("train-{family}")),
            &args,
            None,
        )?;
        let secs = last_epoch_seconds(&dir)?;
        md.push_str(&format!(
            "| {family} | `tinygen train {}` | {secs:.1} |\n",
            args.join(" ")
        ));
        if family == "ae" {
            ae_run = Some(dir);
        }
    }
    let ae_run = ae_run.context("no autoencoder run")?;
    step("AE-feature experiment: classifier from the AE encoder vs random init");
    let cmp_dir = out.join("classifier-compare");
    let _ = std::fs::remove_dir_all(&cmp_dir);
    run(
        root,
        tinygen.to_str().context("path")?,
        [
            OsStr::new("train"),
            OsStr::new("classifier-compare"),
            OsStr::new("--ae"),
            ae_run.as_os_str(),
            OsStr::new("--labels"),
            OsStr::new("100,1000"),
            OsStr::new("--steps"),
            OsStr::new("300"),
            OsStr::new("--seed"),
            OsStr::new("0"),
            OsStr::new("--out"),
            cmp_dir.as_os_str(),
        ],
    )?;
    let csv = std::fs::read_to_string(cmp_dir.join("compare.csv"))?;
    md.push_str(&format!(
        "\n## Autoencoder features as initial weights\n\n\
         Test accuracy on the 1,000 shipped test images of a classifier whose convolutions start \
         from the encoder of an autoencoder trained {AE_EPOCHS} epochs (`tinygen train ae --epochs \
         {AE_EPOCHS} --seed 0`) vs from random weights: `tinygen train classifier-compare --ae RUN \
         --labels 100,1000 --steps 300 --seed 0` (same seed, batches and 300 steps; one seed).\n\n\
         | labels | steps | AE init | random init |\n| --- | --- | --- | --- |\n"
    ));
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if let [labels, steps, ae, rnd] = f[..] {
            let pct = |v: &str| {
                v.parse::<f64>()
                    .map_or_else(|_| v.to_string(), |a| format!("{:.1} %", 100.0 * a))
            };
            md.push_str(&format!(
                "| {labels} | {steps} | {} | {} |\n",
                pct(ae),
                pct(rnd)
            ));
        }
    }
    Ok(md)
}

/// Cortex-M4 instructions per sample of each file in an existing
/// BENCHMARKS.md's shipped-models table (the "before" of a new run).
fn previous_instructions(md: &str) -> std::collections::HashMap<String, u64> {
    md.lines()
        .filter(|l| l.starts_with("| ") && l.contains(".tgm"))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            // | file | kind | dtype | params | model | flash | arena | MACs | insns | ...
            let insns = cells.get(9)?.parse::<u64>().ok()?;
            Some((cells.get(1)?.to_string(), insns))
        })
        .collect()
}

/// The sections of an existing BENCHMARKS.md from `## Training` on.
fn kept_sections(md: &str) -> Result<String> {
    let at = md
        .find("## Training")
        .context("BENCHMARKS.md has no Training section to keep; run without --keep-quality")?;
    Ok(format!(
        "(Training and quality sections carried over from the previous `cargo xtask bench` by \
         `--keep-quality`: this run changed only the runtime, whose outputs are bit-identical to \
         the previous kernels' (tests `kernels::fast::tests`, `qemu_contract`), and the model \
         files are unchanged, so these figures still hold; their eval seconds are the earlier \
         run's.)\n\n{}",
        &md[at..]
    ))
}

/// One int8 model's firmware on one emulated core.
struct BoardRun {
    file: String,
    board: firmware::Board,
    flash: u64,
    statics: u64,
    arena: u64,
    insns: Option<u64>,
}

/// Builds and runs `f`'s firmware (2 samples) for `board`.
fn board_run(
    board: firmware::Board,
    f: &Path,
    name: &str,
    info: &serde_json::Value,
    dir: &Path,
) -> Result<BoardRun> {
    let dir = dir.join(board.machine());
    let elf = firmware::build_for(board, f, 2, 1, 1.0, &dir).map_err(anyhow::Error::msg)?;
    let run = firmware::run_qemu_on(board, &elf, &dir, Duration::from_secs(900))
        .map_err(anyhow::Error::msg)?;
    Ok(BoardRun {
        file: name.to_owned(),
        board,
        flash: elf::flash_bytes(&elf)?,
        statics: elf::ram_static_bytes(&elf)?,
        arena: info["arena_bytes"].as_u64().unwrap_or(0),
        insns: mean_count(&run),
    })
}

/// Boards people own, by core: (board, core, clock in Hz, RAM bytes, flash bytes).
const OWNED_BOARDS: [(&str, firmware::Board, f64, u64, u64); 3] = [
    ("nRF52840-DK", firmware::Board::M4, 64e6, 256 << 10, 1 << 20),
    (
        "STM32 NUCLEO-F767ZI",
        firmware::Board::M7,
        216e6,
        512 << 10,
        2 << 20,
    ),
    (
        "Raspberry Pi Pico 2",
        firmware::Board::M33,
        150e6,
        520 << 10,
        4 << 20,
    ),
];

/// BENCHMARKS.md's per-core table of the int8 models.
fn boards_section(runs: &[BoardRun]) -> String {
    let mut md = String::from(
        "## Boards\n\n\
         Every shipped int8 model's firmware per emulated core (QEMU `mps2-an386`, \
         `mps2-an500`, `mps2-an505`, `-icount shift=0`; the same bytes as the host on each), \
         and a board people own with that core at its usual clock.\n\n\
         | file | core | firmware flash bytes | RAM statics bytes (arena included) | arena bytes | \
         instructions/sample | board | ms/sample at its clock | fits its flash and RAM (statics) |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in runs {
        let Some(&(board, _, hz, ram, flash)) =
            OWNED_BOARDS.iter().find(|(_, core, ..)| *core == r.board)
        else {
            continue;
        };
        let ms = r
            .insns
            .map_or("n/a".into(), |v| format!("{:.0}", v as f64 / hz * 1e3));
        let fits = if r.flash <= flash && r.statics <= ram {
            "yes"
        } else {
            "no"
        };
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {board} ({:.0} MHz) | {ms} | {fits} |\n",
            r.file,
            r.board.core(),
            r.flash,
            r.statics,
            r.arena,
            r.insns.map_or("n/a".into(), |v| v.to_string()),
            hz / 1e6,
        ));
    }
    md.push_str(
        "\nms/sample count one instruction per cycle. RAM statics are the ELF's `.data` and \
         `.bss` (the arena, the pixels, the logger's buffers); the stack comes on top and is \
         not measured yet, so \"fits\" compares statics only. The Cortex-M0 (BBC micro:bit \
         under QEMU: the sampling-only int8 VAE and AutoEncoder; the GAN does not fit 16 KB) \
         is in firmware/README.md, not yet in this table.\n",
    );
    md
}

fn bench(root: &Path, quality_opts: quality::QualityOptions, keep_quality: bool) -> Result<()> {
    let previous_md = std::fs::read_to_string(root.join("BENCHMARKS.md")).unwrap_or_default();
    let before = previous_instructions(&previous_md);
    ensure_targets(root)?;
    // The Boards section's Cortex-M33 firmware.
    ensure_rust_targets(root, &[firmware::TARGET_M33])?;
    ensure_qemu()?;
    let tinygen = build_trainer(root)?;
    let out = root.join("out").join("bench");
    std::fs::create_dir_all(&out)?;
    let files = quality::bench_files(&tinygen, root, &out)?;
    let mut rows = Vec::new();
    let mut board_rows = Vec::new();
    for file in &files {
        let f = &file.path;
        let name = f
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_string();
        step(&format!("{name}: firmware on QEMU, host sampling"));
        let info = info_json(&tinygen, root, f)?;
        let dir = out.join(&name);
        let elf = firmware::build(f, 4, 1, &dir).map_err(anyhow::Error::msg)?;
        let fw_run =
            firmware::run_qemu(&elf, &dir, Duration::from_secs(900)).map_err(anyhow::Error::msg)?;
        let insns = mean_count(&fw_run);
        let flash = elf::flash_bytes(&elf)?;
        if file.dtype == "int8" && !file.converted {
            board_rows.push(BoardRun {
                file: name.clone(),
                board: firmware::Board::M4,
                flash,
                statics: elf::ram_static_bytes(&elf)?,
                arena: info["arena_bytes"].as_u64().unwrap_or(0),
                insns,
            });
            for board in [firmware::Board::M7, firmware::Board::M33] {
                step(&format!("{name}: firmware on QEMU's {}", board.core()));
                board_rows.push(board_run(board, f, &name, &info, &dir)?);
            }
        }
        let n = 256;
        let t = Instant::now();
        run(
            root,
            tinygen.to_str().context("path")?,
            [
                OsStr::new("sample"),
                f.as_os_str(),
                OsStr::new("-n"),
                OsStr::new(&n.to_string()),
                OsStr::new("-o"),
                dir.join("host.png").as_os_str(),
            ],
        )?;
        let per_s = n as f64 / t.elapsed().as_secs_f64();
        let macs = info["macs_per_sample"].as_f64().unwrap_or(0.0);
        let per_mac = insns.map_or("n/a".into(), |v| format!("{:.2}", v as f64 / macs.max(1.0)));
        let ms = |hz: f64| insns.map_or("n/a".into(), |v| format!("{:.0}", v as f64 / hz * 1e3));
        let was = before
            .get(&file.shown())
            .map_or("-".into(), |v| v.to_string());
        rows.push(format!(
            "| {} | {} | {} | {} | {} | {flash} | {} | {} | {} | {} | {was} | {} | {} | {per_s:.0} |",
            file.shown(),
            info["kind"].as_str().unwrap_or("?"),
            info["dtype"].as_str().unwrap_or("?"),
            info["params"],
            info["flash_bytes"],
            info["arena_bytes"],
            info["macs_per_sample"],
            insns.map_or("n/a".into(), |v| v.to_string()),
            per_mac,
            ms(64e6),
            ms(100e6),
        ));
    }
    let kernels = bench_kernels_section(root)?;
    let rest = if keep_quality {
        kept_sections(&previous_md)?
    } else {
        let training = training_section(&tinygen, root, &out)?;
        training + &quality::quality_section(&tinygen, root, &out, &files, quality_opts)?
    };

    let mut md = String::from(
        "# tinygen benchmarks\n\nGenerated by `cargo xtask bench`; do not edit by hand.\n\n\
         ## Shipped models\n\n\
         Every models/*.tgm, and the `tinygen convert --quant f16` of each f32 file.\n\n\
         | file | kind | dtype | params | model bytes | firmware flash bytes | arena bytes | MACs/sample | Cortex-M4 instructions/sample | instructions/MAC | before (previous BENCHMARKS.md) | ms/sample at 64 MHz | ms/sample at 100 MHz | host samples/s |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in &rows {
        md.push_str(r);
        md.push('\n');
    }
    md.push_str(
        "\nInstructions per sample: the firmware's SysTick under `qemu-system-arm -machine mps2-an386 -icount shift=0`; \
         \"before\" is the same figure in the BENCHMARKS.md this run replaced. Milliseconds per sample count one \
         instruction per cycle (nearly every instruction of the kernels is one cycle on a Cortex-M4; loads take two, \
         so a real chip is somewhat slower; an nRF52840 runs at 64 MHz).\n\
         Firmware flash: loadable flash segments of the release ELF (code + embedded model).\n",
    );
    md.push('\n');
    md.push_str(&boards_section(&board_rows));
    md.push('\n');
    md.push_str(kernels.trim_end());
    md.push_str("\n\n");
    md.push_str(&rest);
    std::fs::write(root.join("BENCHMARKS.md"), &md)?;
    println!("\n{md}");
    println!("wrote BENCHMARKS.md");
    Ok(())
}

/// CMSIS-NN on the same shapes (../shared/perf/cmsis-nn-m4.md): case name
/// as the kernel benchmark logs it, CMSIS-NN instructions per MAC, and the
/// project's bar (0.8x CMSIS-NN's count, rounded).
const CMSIS_NN: [(&str, f64, f64); 5] = [
    ("conv 14x14x16->16 3x3 p1", 2.33, 1.85),
    ("conv 28x28x1->32 7x7 p3", 3.88, 3.1),
    ("conv 28x28x32->32 3x3 p1", 1.93, 1.55),
    ("fc 784->400", 1.94, 1.55),
    ("convT 7x7x64->14x14x32 k4 s2 p1", 2.65, 2.1),
];

/// One line of the kernel benchmark's log.
struct KernelRow {
    name: String,
    macs: u64,
    reference: u64,
    optimized: u64,
    scratch_bytes: u64,
    equal: bool,
}

/// Parses `bench-kernel NAME: macs N reference N optimized N scratch_bytes N
/// equal BOOL` (firmware/src/bench_kernels.rs); `None` for other lines.
fn parse_kernel_line(line: &str) -> Option<KernelRow> {
    let (_, rest) = line.split_once("bench-kernel ")?;
    let (name, rest) = rest.split_once(": ")?;
    let words: Vec<&str> = rest.split_whitespace().collect();
    let field = |key: &str| {
        words
            .chunks_exact(2)
            .find(|kv| kv[0] == key)
            .map(|kv| kv[1])
    };
    let num = |key: &str| field(key)?.parse::<u64>().ok();
    Some(KernelRow {
        name: name.to_string(),
        macs: num("macs")?,
        reference: num("reference")?,
        optimized: num("optimized")?,
        scratch_bytes: num("scratch_bytes")?,
        equal: field("equal")?.parse().ok()?,
    })
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut s = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            s.push(',');
        }
        s.push(ch);
    }
    s
}

/// The kernel table in markdown, one row per case.
fn kernel_table(rows: &[KernelRow]) -> String {
    let mut md = String::from(
        "| case | MACs | reference instructions | reference insn/MAC | optimized instructions \
         | optimized insn/MAC | speed-up | CMSIS-NN insn/MAC | bar 0.8x CMSIS | meets bar \
         | scratch bytes | equal |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |\n",
    );
    for r in rows {
        let per_mac = |n: u64| n as f64 / r.macs.max(1) as f64;
        let opt = per_mac(r.optimized);
        let (cmsis, bar, meets) = match CMSIS_NN.iter().find(|c| c.0 == r.name) {
            Some(&(_, cmsis, bar)) => (
                format!("{cmsis:.2}"),
                format!("{bar:.2}"),
                if opt <= bar { "yes" } else { "no" }.to_string(),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        md.push_str(&format!(
            "| {} | {} | {} | {:.3} | {} | {opt:.3} | {:.1}x | {cmsis} | {bar} | {meets} | {} | {} |\n",
            r.name,
            thousands(r.macs),
            thousands(r.reference),
            per_mac(r.reference),
            thousands(r.optimized),
            r.reference as f64 / r.optimized.max(1) as f64,
            r.scratch_bytes,
            if r.equal { "yes" } else { "NO" },
        ));
    }
    md
}

/// Builds the firmware with `--features bench-kernels`, runs it under QEMU
/// (mps2-an386, `-icount shift=0`) and returns the kernel section of the
/// benchmarks in markdown: one row per kernel shape, reference vs optimized
/// instruction counts, against CMSIS-NN. Fails, after printing the table and
/// the log, if the firmware fails or any optimized output differs from the
/// reference's. Needs the thumb target, QEMU and defmt-print (see
/// [`bench_kernels`]).
fn bench_kernels_section(root: &Path) -> Result<String> {
    let out = root.join("out").join("bench-kernels");
    step("kernel benchmark: build the firmware with --features bench-kernels (release)");
    let elf = firmware::build_bench_kernels(&out).map_err(anyhow::Error::msg)?;
    step("kernel benchmark: run it on QEMU's Cortex-M4 (mps2-an386, -icount shift=0)");
    let exit = firmware::qemu(&elf, &out, Duration::from_secs(900)).map_err(anyhow::Error::msg)?;
    let log = defmt_decode(&elf, &exit.stdout)?;
    std::fs::write(out.join("firmware.log"), &log)?;
    let rows: Vec<KernelRow> = log.lines().filter_map(parse_kernel_line).collect();
    let table = kernel_table(&rows);
    let differ: Vec<&str> = rows
        .iter()
        .filter(|r| !r.equal)
        .map(|r| r.name.as_str())
        .collect();
    if !exit.success || rows.is_empty() || !differ.is_empty() {
        println!("\n{log}\n{table}");
        bail!(
            "the kernel benchmark failed (QEMU exited with {}; optimized output differs from \
             the reference in: {}); log in {}\n{}",
            exit.status,
            if differ.is_empty() {
                "none".to_string()
            } else {
                differ.join(", ")
            },
            out.join("firmware.log").display(),
            exit.stderr
        );
    }
    Ok(format!(
        "## Int8 kernels on the Cortex-M4\n\n\
         `cargo xtask bench-kernels`: each kernel shape once through the reference kernel \
         (`kernels::reference`) and once through the optimized one (`kernels::*_i8`, the one the \
         samplers run), with pseudo-random int8 inputs and weights, on QEMU's emulated Cortex-M4F \
         (`qemu-system-arm -machine mps2-an386 -icount shift=0`). Counts are **instructions**, not \
         cycles (the firmware's SysTick under `-icount shift=0`: 1 tick = 40 instructions; QEMU \
         does not model the M4 pipeline, where nearly every instruction here is one cycle). MACs \
         are nominal: every tap, padding and masked taps included. The first five shapes are \
         those CMSIS-NN was measured on the same way (`../shared/perf/cmsis-nn-m4.md`); the bar \
         is 0.8x CMSIS-NN's instructions per MAC. The others are the shipped models' layers \
         (28x28 images, whole tensors); `convT 7x7x64->14x14x32` is also the GAN's, and \
         `masked 1x1 B 32->1` is both the PixelCNN's and the PixelRNN's output layer. \
         Scratch bytes: the scratch memory (u32 words) the optimized kernel takes. Equal: the two \
         outputs are identical byte for byte.\n\n{table}"
    ))
}

/// `cargo xtask bench-kernels`: prints [`bench_kernels_section`]'s table
/// and writes it to `out/bench-kernels.md`.
fn bench_kernels(root: &Path) -> Result<()> {
    ensure_targets(root)?;
    ensure_qemu()?;
    ensure_defmt_print(root)?;
    let section = bench_kernels_section(root)?;
    let md = format!(
        "# tinygen int8 kernel benchmark\n\n\
         Generated by `cargo xtask bench-kernels` on QEMU's emulated Cortex-M4F (mps2-an386); \
         counts are instructions (QEMU `-icount shift=0`, SysTick), not cycles.\n\n{section}"
    );
    let out = root.join("out");
    std::fs::create_dir_all(&out)?;
    let path = out.join("bench-kernels.md");
    std::fs::write(&path, &md)?;
    println!("\n{md}");
    println!("wrote {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The boards table is Markdown: every line of it starts at column 0
    /// (an indented line would be a code block), and a run gets its board,
    /// its milliseconds at that board's clock and its verdict.
    #[test]
    fn boards_section_is_a_table() {
        let runs = [BoardRun {
            file: "vae-int8.tgm".into(),
            board: firmware::Board::M4,
            flash: 400_000,
            statics: 20_000,
            arena: 15_680,
            insns: Some(64_000_000),
        }];
        let md = boards_section(&runs);
        assert!(md.lines().all(|l| !l.starts_with(' ')), "{md}");
        assert!(
            md.contains(
                "| vae-int8.tgm | Cortex-M4F | 400000 | 20000 | 15680 | 64000000 | \
                 nRF52840-DK (64 MHz) | 1000 | yes |"
            ),
            "{md}"
        );
    }
}
