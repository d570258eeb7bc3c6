#!/usr/bin/env bash
# Cargo runner for the QEMU boards: runs the firmware ELF on the emulated
# Arm MPS2 board it was built for and decodes its defmt log with defmt-print.
#
#   usage: qemu-run.sh path/to/firmware.elf
#
# The machine is read from the ELF: the firmware logs its board's name
# ("QEMU mps2-an386", "QEMU mps2-an500", "QEMU mps2-an505"), so that string
# is in its flash image:
#
#   feature qemu (default)  mps2-an386  Cortex-M4F
#   feature qemu-m7         mps2-an500  Cortex-M7
#   feature qemu-m33        mps2-an505  Cortex-M33 (boots Secure)
#
# TINYGEN_QEMU_MACHINE=mps2-anNNN overrides it.
#
# -icount shift=0 makes each instruction take 1 ns of virtual time, so the
# firmware's counter (SysTick; TIMER0 on the micro:bit) measures
# instructions. Semihosting runs on the
# host (target=native): the log goes to stdout, the samples to the file named
# by TINYGEN_RAW_OUT at build time (relative to this process's working
# directory), and the firmware's exit status becomes QEMU's.
#
# Environment: TINYGEN_QEMU_TIMEOUT (seconds, default 600) bounds the run;
# on timeout the script exits 124.
set -euo pipefail

elf="${1:?usage: qemu-run.sh FIRMWARE_ELF}"

if ! command -v qemu-system-arm >/dev/null 2>&1; then
    echo "qemu-run.sh: qemu-system-arm not found; install it, e.g. apt-get install -y qemu-system-arm" >&2
    exit 1
fi
if ! command -v defmt-print >/dev/null 2>&1; then
    echo "qemu-run.sh: defmt-print not found; install it with:" >&2
    echo "    cargo install defmt-print --locked" >&2
    exit 1
fi

machine="${TINYGEN_QEMU_MACHINE:-}"
if [ -z "$machine" ]; then
    machine="$(grep -a -o -m 1 -E 'QEMU (mps2-an[0-9]+|microbit)' "$elf" | head -n 1 | sed 's/^QEMU //')" || true
fi
case "$machine" in
    mps2-an386) cpu=(-cpu cortex-m4) ;;
    mps2-an500) cpu=(-cpu cortex-m7) ;;
    mps2-an505) cpu=(-cpu cortex-m33) ;;
    microbit) cpu=() ;;
    "")
        echo "qemu-run.sh: $elf names no QEMU board (built for the nRF52840-DK?); set TINYGEN_QEMU_MACHINE" >&2
        exit 1
        ;;
    *)
        echo "qemu-run.sh: unknown machine $machine (mps2-an386, mps2-an500, mps2-an505 or microbit)" >&2
        exit 1
        ;;
esac

timeout --kill-after=10 "${TINYGEN_QEMU_TIMEOUT:-600}" \
    qemu-system-arm \
        -machine "$machine" "${cpu[@]}" \
        -nographic -monitor none -serial null \
        -semihosting-config enable=on,target=native \
        -icount shift=0 \
        -kernel "$elf" \
    | defmt-print -e "$elf"
