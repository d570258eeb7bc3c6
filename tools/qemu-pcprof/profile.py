#!/usr/bin/env python3
"""Where a firmware's instructions go, by function and by source line.

Runs FIRMWARE.elf under QEMU's Cortex-M4 (mps2-an386, semihosting) with the
pcprof plugin (an exact per-instruction execution count), then attributes
the counts to functions and, with llvm-objdump's line tables (the release
profile keeps debug info), to source lines.

    gcc -O2 -shared -fPIC -fvisibility=hidden -o libpcprof.so pcprof.c
    rustup component add llvm-tools
    ./profile.py FIRMWARE.elf [FUNCTION_SUBSTRING] [TOP_N]

Counts are instructions, not cycles. The plugin writes pcs.txt in the
current directory.
"""
import collections, glob, os, re, subprocess, sys

elf = sys.argv[1]
want = sys.argv[2] if len(sys.argv) > 2 else ""
top = int(sys.argv[3]) if len(sys.argv) > 3 else 30
here = os.path.dirname(os.path.abspath(__file__))
objdump = sorted(glob.glob(os.path.expanduser(
    "~/.rustup/toolchains/*/lib/rustlib/*/bin/llvm-objdump")))
if not objdump:
    sys.exit("llvm-objdump not found: rustup component add llvm-tools")
subprocess.run(
    ["qemu-system-arm", "-machine", "mps2-an386", "-cpu", "cortex-m4", "-nographic",
     "-monitor", "none", "-serial", "null", "-semihosting-config", "enable=on,target=native",
     "-icount", "shift=0", "-plugin", os.path.join(here, "libpcprof.so"), "-kernel", elf],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, timeout=3600)
counts = {}
for line in open("pcs.txt"):
    a, c = line.split()
    counts[int(a, 16)] = int(c)
dis = subprocess.run([objdump[-1], "-d", "-l", "--no-show-raw-insn", elf],
                     capture_output=True, text=True, check=True).stdout
by_fn, by_line = collections.Counter(), collections.Counter()
fn = src = None
for line in dis.splitlines():
    m = re.match(r"^[0-9a-f]+ <(.*)>:", line)
    if m:
        fn = m.group(1)
        continue
    m = re.match(r"^; (/.*):(\d+)", line)
    if m:
        parts = m.group(1).split("/")
        src = "/".join(parts[-2:]) + ":" + m.group(2)
        continue
    m = re.match(r"^\s*([0-9a-f]+):\s", line)
    if m and fn:
        c = counts.get(int(m.group(1), 16), 0)
        by_fn[fn] += c
        if want in fn and src:
            by_line[src] += c
total = sum(by_fn.values())
print(f"total {total} instructions")
for f, c in by_fn.most_common(12):
    print(f"{c:14d} {100 * c / max(total, 1):5.1f}%  {f[:100]}")
sub = sum(by_line.values())
print(f"\nsource lines of functions matching {want!r}: {sub}")
for l, c in by_line.most_common(top):
    print(f"{c:14d} {100 * c / max(sub, 1):5.1f}%  {l}")
