//! Selects the int8 kernels' engine for the target: `cfg(tinygen_dsp)` on
//! cores with the Cortex-M DSP extension (SMLAD, SXTB16), which stable Rust
//! cannot test with `cfg(target_feature)` on ARM; and
//! `cfg(tinygen_unaligned_ldr)` on cores that load words from unaligned
//! addresses (ARMv7-M, ARMv8-M Mainline); and `cfg(tinygen_vfp)` where the
//! f32 kernels may use the single-precision FPU's instructions in `asm!`
//! (hard-float ARMv7E-M and ARMv8-M Mainline targets, which also load
//! unaligned words).
//!
//! - thumbv7em-* (Cortex-M4, M7): always has it.
//! - thumbv8m.main-* (Cortex-M33, M35P, M55): the extension is optional in
//!   the architecture; set `TINYGEN_DSP=1` when building for a core that
//!   has it (the RP2350, nRF5340, STM32U5 and most M33 parts do), together
//!   with `RUSTFLAGS="-C target-feature=+dsp"` so the assembler accepts the
//!   instructions.
//! - everything else (thumbv6m Cortex-M0/M0+, the host): the portable
//!   engine. `TINYGEN_DSP=0` forces it anywhere.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(tinygen_dsp)");
    println!("cargo::rustc-check-cfg=cfg(tinygen_unaligned_ldr)");
    println!("cargo::rustc-check-cfg=cfg(tinygen_vfp)");
    println!("cargo::rerun-if-env-changed=TINYGEN_DSP");
    let target = std::env::var("TARGET").unwrap_or_default();
    let forced = std::env::var("TINYGEN_DSP").ok();
    let dsp = match forced.as_deref() {
        Some("0") => false,
        Some("1") => target.starts_with("thumbv7em") || target.starts_with("thumbv8m.main"),
        _ => target.starts_with("thumbv7em"),
    };
    if dsp {
        println!("cargo::rustc-cfg=tinygen_dsp");
    }
    // ARMv7-M and ARMv8-M Mainline load words from any address (LDR; the
    // compiler assumes strict alignment and would read four bytes):
    // `cfg(tinygen_unaligned_ldr)` reads the file's unaligned f32/i32
    // values with one LDR. ARMv6-M (Cortex-M0/M0+) cannot.
    if target.starts_with("thumbv7m")
        || target.starts_with("thumbv7em")
        || target.starts_with("thumbv8m.main")
    {
        println!("cargo::rustc-cfg=tinygen_unaligned_ldr");
    }
    // Hard-float Cortex-M4F/M7F and M33/M55 (FPv4/FPv5: VLDM, VMLA.F32,
    // VMOV of two core registers): the f32 Row LSTM's taps in `asm!`.
    if (target.starts_with("thumbv7em") || target.starts_with("thumbv8m.main"))
        && target.ends_with("eabihf")
    {
        println!("cargo::rustc-cfg=tinygen_vfp");
    }
}
