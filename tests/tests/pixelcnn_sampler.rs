//! The shipped PixelCNN files (`models/pixelcnn-{f32,int8}.tgm`): the
//! incremental sampler gives exactly the bytes of the naive one (a whole
//! forward pass per pixel) for the same random stream, and costs at most
//! 1.1 forward passes per sample, by the MAC counts.
//!
//! (The same equality on small random models, f32/f16/int8, and the MACs
//! the kernels really execute, counted, are unit tests of
//! `tinygen_runtime::sample::autoregressive`.)

use tinygen_runtime::{Model, PixelCnnSampler, Rng};
use tinygen_tests::{firmware::project_root, AlignedBuf};

fn shipped(name: &str) -> Vec<u8> {
    let path = project_root().join("models").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn incremental_equals_naive(name: &str) {
    let bytes = shipped(name);
    let model = Model::load(&bytes).unwrap();
    let (inc, fwd) = (model.macs_per_sample(), model.forward_macs());
    assert!(
        inc * 10 <= fwd * 11,
        "{name}: {inc} MACs per sample vs {fwd} per forward pass"
    );
    let mut arena = AlignedBuf::new(model.arena_bytes() as usize);
    let mut scratch = AlignedBuf::new(model.forward_arena_bytes() as usize);
    let mut s = PixelCnnSampler::new(&model, arena.bytes()).unwrap();
    let (mut r1, mut r2) = (Rng::new(5), Rng::new(5));
    let (mut a, mut b) = (vec![1u8; 784], vec![2u8; 784]);
    s.sample(&mut r1, &mut a).unwrap();
    s.naive(&mut r2, &mut b, scratch.bytes()).unwrap();
    assert_eq!(a, b, "{name}: incremental and naive samples differ");
    // Both streams consumed one uniform per pixel.
    assert_eq!(r1.next_u32(), r2.next_u32());
    let ink = a.iter().filter(|&&p| p == 255).count();
    // Both pixel values occur, or the comparison would be vacuous.
    assert!((1..784).contains(&ink), "{name}: {ink} ink pixels");
}

#[test]
fn shipped_int8_incremental_equals_naive() {
    incremental_equals_naive("pixelcnn-int8.tgm");
}

#[test]
fn shipped_f32_incremental_equals_naive() {
    incremental_equals_naive("pixelcnn-f32.tgm");
}
