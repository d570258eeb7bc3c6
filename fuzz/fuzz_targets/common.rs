//! What every target does with a candidate file: load it and, if it
//! loads, run every sampler its kind allows on an exact arena, and check
//! that an arena one byte short and a misaligned one are refused with a
//! typed error. Any panic (or sanitizer report) is a finding.

use tinygen_runtime::{AutoregressiveSampler, Decoder, Encoder, Error, Model, ModelKind, Rng};

/// A 4-byte aligned buffer of `n` bytes plus slack for a misaligned view.
fn buffer(n: usize) -> Vec<u32> {
    vec![0x5a5a_5a5a; n.div_ceil(4) + 1]
}

fn bytes(v: &mut [u32]) -> &mut [u8] {
    // SAFETY: u32 -> u8 reinterpretation of an owned, initialized buffer.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), v.len() * 4) }
}

/// Runs `data` through the runtime as a board would.
pub fn exercise(data: &[u8]) {
    let Ok(model) = Model::load(data) else {
        return;
    };
    // Keep the work per input bounded: the fuzzer wants many inputs.
    if model.macs_per_sample() > 20_000_000 {
        return;
    }
    let need = model.arena_bytes() as usize;
    let mut a = buffer(need);
    let arena = &mut bytes(&mut a)[..need];
    if let Ok(mut dec) = Decoder::new(&model, arena) {
        let mut px = vec![0u8; dec.image_len()];
        dec.sample(&mut Rng::new(1), &mut px).unwrap();
        let z = vec![0.25f32; dec.latent_len()];
        let mut logits = vec![0f32; dec.image_len()];
        dec.decode_logits(&z, &mut logits).unwrap();
    }
    let arena = &mut bytes(&mut a)[..need];
    if let Ok(mut enc) = Encoder::new(&model, arena) {
        let px = vec![200u8; model.file.meta.image.numel() as usize];
        let mut z = vec![0f32; enc.output_len()];
        enc.encode(&px, &mut z).unwrap();
    }
    let arena = &mut bytes(&mut a)[..need];
    if let Ok(mut s) = AutoregressiveSampler::new(&model, arena) {
        let mut px = vec![0u8; s.image_len()];
        let mut logits = vec![0f32; s.image_len()];
        s.sample_with_logits(&mut Rng::new(1), &mut px, &mut logits)
            .unwrap();
    }
    // Each sampler refuses an arena one byte short of what it needs, and
    // one a byte off alignment, with a typed error.
    let decoder = matches!(
        model.file.kind,
        ModelKind::Vae | ModelKind::Gan | ModelKind::AutoEncoder
    );
    if decoder {
        let need = model.plan.arena_bytes() as usize;
        refuses(need, &mut a, |b| Decoder::new(&model, b).err());
    }
    if let Some(p) = model.encoder_plan {
        refuses(p.arena_bytes() as usize, &mut a, |b| {
            Encoder::new(&model, b).err()
        });
    }
    if let Some(c) = model.cache_plan {
        let need = c.arena_bytes as usize;
        refuses(need, &mut a, |b| {
            AutoregressiveSampler::new(&model, b).err()
        });
    }
}

/// `try_new` on `need - 1` bytes (when `need > 0`) and on `need` bytes one
/// past an aligned address must fail with the arena errors.
fn refuses(need: usize, a: &mut [u32], try_new: impl Fn(&mut [u8]) -> Option<Error>) {
    if need > 0 {
        let short = &mut bytes(a)[..need - 1];
        assert!(matches!(
            try_new(short),
            Some(Error::PlanArenaTooSmall { .. })
        ));
    }
    let off = &mut bytes(a)[1..need + 1];
    assert!(matches!(try_new(off), Some(Error::PlanArenaMisaligned)));
}
