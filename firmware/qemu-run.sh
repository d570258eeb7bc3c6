#!/usr/bin/env bash
# Cargo runner for the QEMU boards: runs the firmware ELF on an emulated
# mps2-an386 (Cortex-M4F, the default) or, with `--machine microbit`, on the
# BBC micro:bit v1 (nRF51822, Cortex-M0), and decodes its defmt log with
# defmt-print.
#
#   usage: qemu-run.sh [--machine mps2-an386|microbit] path/to/firmware.elf
#
# -icount shift=0 makes each instruction take 1 ns of virtual time, so the
# firmware's SysTick counter measures instructions. Semihosting runs on the
# host (target=native): the log goes to stdout, the samples to the file named
# by TINYGEN_RAW_OUT at build time (relative to this process's working
# directory), and the firmware's exit status becomes QEMU's.
#
# Environment: TINYGEN_QEMU_TIMEOUT (seconds, default 600) bounds the run;
# on timeout the script exits 124.
set -euo pipefail

machine=(-machine mps2-an386 -cpu cortex-m4)
if [ "${1:-}" = "--machine" ]; then
    case "${2:-}" in
        mps2-an386) ;;
        microbit) machine=(-machine microbit) ;;
        *) echo "qemu-run.sh: unknown machine '${2:-}' (mps2-an386 or microbit)" >&2; exit 2 ;;
    esac
    shift 2
fi
elf="${1:?usage: qemu-run.sh [--machine mps2-an386|microbit] FIRMWARE_ELF}"

if ! command -v qemu-system-arm >/dev/null 2>&1; then
    echo "qemu-run.sh: qemu-system-arm not found; install it, e.g. apt-get install -y qemu-system-arm" >&2
    exit 1
fi
if ! command -v defmt-print >/dev/null 2>&1; then
    echo "qemu-run.sh: defmt-print not found; install it with:" >&2
    echo "    cargo install defmt-print --locked" >&2
    exit 1
fi

timeout --kill-after=10 "${TINYGEN_QEMU_TIMEOUT:-600}" \
    qemu-system-arm \
        "${machine[@]}" \
        -nographic -monitor none -serial null \
        -semihosting-config enable=on,target=native \
        -icount shift=0 \
        -kernel "$elf" \
    | defmt-print -e "$elf"
