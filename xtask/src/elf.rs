//! Flash and static RAM bytes of a 32-bit little-endian ELF: the file size
//! of its loadable segments placed below RAM (0x2000_0000; every board's
//! RAM is at or above it, its flash below), and the memory size of those
//! whose addresses are in RAM.

use std::path::Path;

use anyhow::{bail, Context, Result};

const PT_LOAD: u32 = 1;
const RAM_START: u32 = 0x2000_0000;

fn u16_at(b: &[u8], o: usize) -> Result<u16> {
    let s = b.get(o..o + 2).context("ELF truncated")?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], o: usize) -> Result<u32> {
    let s = b.get(o..o + 4).context("ELF truncated")?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// A PT_LOAD program header: (physical address, virtual address, file
/// size, memory size).
type Load = (u32, u32, u32, u32);

/// The PT_LOAD segments of the ELF at `path`.
fn loads(path: &Path) -> Result<Vec<Load>> {
    let b = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if b.get(..4) != Some(b"\x7fELF") || b.get(4) != Some(&1) || b.get(5) != Some(&1) {
        bail!("{} is not a 32-bit little-endian ELF", path.display());
    }
    let phoff = u32_at(&b, 28)? as usize;
    let phentsize = u16_at(&b, 42)? as usize;
    let phnum = u16_at(&b, 44)? as usize;
    let mut out = Vec::new();
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        if u32_at(&b, o)? == PT_LOAD {
            out.push((
                u32_at(&b, o + 12)?,
                u32_at(&b, o + 8)?,
                u32_at(&b, o + 16)?,
                u32_at(&b, o + 20)?,
            ));
        }
    }
    Ok(out)
}

/// Sum of `p_memsz` over PT_LOAD segments whose virtual address is in RAM
/// (`.data` and `.bss`: every static, the arena included; not the stack).
pub fn ram_static_bytes(path: &Path) -> Result<u64> {
    Ok(loads(path)?
        .iter()
        .filter(|&&(_, vaddr, _, _)| vaddr >= RAM_START)
        .map(|&(.., memsz)| u64::from(memsz))
        .sum())
}

/// Sum of `p_filesz` over PT_LOAD segments whose physical address is in
/// flash (this counts `.data`'s initial values too, which live in flash).
pub fn flash_bytes(path: &Path) -> Result<u64> {
    Ok(loads(path)?
        .iter()
        .filter(|&&(paddr, ..)| paddr < RAM_START)
        .map(|&(_, _, filesz, _)| u64::from(filesz))
        .sum())
}
