//! `tinygen`: the command line of the trainer.

use clap::{Parser, Subcommand};

mod cmd;

// glibc malloc hands candle's large temporaries back to the OS after each op,
// which makes training about 2.5x slower; mimalloc keeps them around.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// mimalloc's `mi_option_t` value of `mi_option_purge_delay` (15 in the v3
// sources libmimalloc-sys 0.1.49 builds, and in v2): how long freed memory
// waits before it goes back to the OS.
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

extern "C" {
    // Declared here rather than through libmimalloc-sys's `extended` feature,
    // which names no constant for this option.
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// Never hand freed memory back to the OS. By default mimalloc purges freed
/// pages after 10 ms, and candle frees and reallocates tensors of tens of MB
/// every op: the kernel then zeroes fresh pages for each one (a quarter of a
/// two-stack PixelCNN epoch in `perf`). With purging off the same training
/// runs 1.45x faster (20.2 s instead of 29.2 s for five steps and a test
/// pass, 2 threads) at 15 % more peak memory (7.0 GB instead of 6.2 at
/// batch 128). Same as `MIMALLOC_PURGE_DELAY=-1`, which the user can still
/// override by setting the variable to another value.
fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: mi_option_set only stores the value in mimalloc's option
        // table; any option index and value is accepted.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
}

/// Train small generative image models, export them for microcontrollers, and
/// sample them on the host.
#[derive(Debug, Parser)]
#[command(name = "tinygen", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// One variant per subcommand; each lives in its own module under `cmd/` with
/// an `Args` struct and a `run(args)` function.
#[derive(Debug, Subcommand)]
enum Command {
    /// Train a model on MNIST and write a run directory (checkpoint, config,
    /// metrics, samples); Ctrl-C stops it resumably, `--resume RUN` continues it.
    Train(cmd::train::TrainArgs),
    /// Export a trained run as a .tgm model file (f32, f16 or int8).
    Export(cmd::export::ExportArgs),
    /// Describe a .tgm model file: kind, dtype, parameters, flash/arena bytes, MACs.
    Info(cmd::info::InfoArgs),
    /// Generate images from a .tgm file with the runtime (the board's kernels).
    Sample(cmd::sample::SampleArgs),
    /// Turn raw pixel bytes streamed by the firmware into a PNG grid.
    Grid(cmd::grid::GridArgs),
    /// Decode a grid over the Gaussian quantiles of a 2-D VAE latent (the learned manifold) as a PNG.
    Manifold(cmd::manifold::ManifoldArgs),
    /// Latent interpolation strips between two digits (AutoEncoder, VAE) or two latents (GAN) as a PNG.
    Interpolate(cmd::interpolate::InterpolateArgs),
    /// Measure a model file's quality through the runtime: nats per image, FCD, inception score, label histogram.
    Eval(cmd::eval::EvalArgs),
    /// Re-encode a model file without its run: f32 to f16 weights, or without its encoder.
    Convert(cmd::convert::ConvertArgs),
}

fn main() {
    if let Err(e) = run() {
        if let Some(stop) = e.downcast_ref::<tinygen_trainer::run::Interrupted>() {
            eprintln!("{stop}");
            std::process::exit(tinygen_trainer::interrupt::EXIT_INTERRUPTED);
        }
        // The whole cause chain on one line each, without the backtrace that
        // RUST_BACKTRACE would add to a returned error.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    keep_freed_memory();
    // Before anything touches candle (or rayon): use every core unless the user
    // chose a thread count.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Train(c) => cmd::train::run(c),
        Command::Export(a) => cmd::export::run(a),
        Command::Info(a) => cmd::info::run(a),
        Command::Sample(a) => cmd::sample::run(a),
        Command::Grid(a) => cmd::grid::run(a),
        Command::Manifold(a) => cmd::manifold::run(a),
        Command::Interpolate(a) => cmd::interpolate::run(a),
        Command::Eval(a) => cmd::eval::run(a),
        Command::Convert(a) => cmd::convert::run(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }
}
