//! The shipped PixelCNN and PixelRNN files (`models/pixel{cnn,rnn}-{f32,int8}.tgm`):
//! the logits the incremental sampler drew each pixel from are, bit for
//! bit, those of one full forward pass on the image it drew (teacher
//! forcing: one forward pass per check, where the naive sampler, one pass
//! per pixel, cost 784 of them); the random stream replayed over those
//! logits gives the same pixels, one uniform per pixel; and a sample costs
//! at most 1.1 forward passes, by the MAC counts.
//!
//! With the causality check at load (a logit depends only on the pixels
//! before it, and no layer reads a pixel before it is drawn: property-tested
//! against measured dependencies in `tinygen_runtime::sample::
//! autoregressive`), equal logits on the drawn image mean the naive
//! sampler would have drawn the same image. (Incremental == naive itself,
//! on small random models in f32/f16/int8, and the MACs the kernels
//! execute, are unit tests there.)

use tinygen_runtime::kernels::sigmoid_f32;
use tinygen_runtime::{DType, Model, PixelCnnSampler, Rng};
use tinygen_tests::{firmware::project_root, AlignedBuf};

fn shipped(name: &str) -> Vec<u8> {
    let path = project_root().join("models").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn teacher_forced(name: &str) {
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
    let n = s.image_len();
    let mut r1 = Rng::new(5);
    let (mut image, mut drawn) = (vec![1u8; n], vec![0f32; n]);
    s.sample_with_logits(&mut r1, &mut image, &mut drawn)
        .unwrap();
    let mut full = vec![0f32; n];
    s.logits(&image, scratch.bytes(), &mut full).unwrap();
    let first_diff = (0..n).find(|&i| drawn[i].to_bits() != full[i].to_bits());
    assert_eq!(
        first_diff, None,
        "{name}: the sampler's logit differs from the full pass's"
    );
    // Replay the stream: one uniform per pixel, and (f32: the probability
    // is the logit's sigmoid) the same pixels.
    let mut r2 = Rng::new(5);
    for (i, &l) in full.iter().enumerate() {
        let on = r2.bernoulli(sigmoid_f32(l));
        if model.file.dtype != DType::I8 {
            assert_eq!(
                on,
                image[i] == 255,
                "{name}: pixel {i} replayed differently"
            );
        }
    }
    assert_eq!(r1.next_u32(), r2.next_u32(), "{name}: uniforms consumed");
    let ink = image.iter().filter(|&&p| p == 255).count();
    // Both pixel values occur, or the comparison would be vacuous.
    assert!((1..n).contains(&ink), "{name}: {ink} ink pixels");
}

#[test]
fn shipped_pixelcnn_int8_teacher_forced() {
    teacher_forced("pixelcnn-int8.tgm");
}

#[test]
fn shipped_pixelcnn_f32_teacher_forced() {
    teacher_forced("pixelcnn-f32.tgm");
}

#[test]
fn shipped_pixelrnn_int8_teacher_forced() {
    teacher_forced("pixelrnn-int8.tgm");
}

#[test]
fn shipped_pixelrnn_f32_teacher_forced() {
    teacher_forced("pixelrnn-f32.tgm");
}
