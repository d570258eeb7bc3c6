//! The shipped PixelRNN files (`models/pixelrnn-{f32,int8}.tgm`) meet the
//! issue's bars: exact test NLL (measured through the runtime at export and
//! stored in the files) at most 76 nats per image, int8 at most 1 nat above
//! f32, and the int8 file within the board's budget (model under 256 KiB of
//! flash, arena under 64 KiB). Their samples through the runtime's
//! incremental sampler are images with ink on both values.
//!
//! (Incremental == naive sampling and QEMU == host bytes: the runtime's unit
//! tests and `qemu_contract.rs`.)

use tinygen_runtime::{Model, ModelKind, PixelCnnSampler, Rng};
use tinygen_tests::{firmware::project_root, AlignedBuf};

fn shipped(name: &str) -> Vec<u8> {
    let path = project_root().join("models").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn nll(model: &Model<'_>) -> f32 {
    model
        .file
        .meta
        .figures
        .iter()
        .find(|f| f.name == "test_nll_nats")
        .map(|f| f.value)
        .expect("the file carries test_nll_nats")
}

#[test]
fn shipped_pixelrnn_quality_and_budget() {
    let (b32, b8) = (shipped("pixelrnn-f32.tgm"), shipped("pixelrnn-int8.tgm"));
    let (m32, m8) = (Model::load(&b32).unwrap(), Model::load(&b8).unwrap());
    assert_eq!(m32.file.kind, ModelKind::PixelRnn);
    assert_eq!(m8.file.kind, ModelKind::PixelRnn);
    let (n32, n8) = (nll(&m32), nll(&m8));
    assert!(n32 <= 76.0, "f32 test NLL {n32} nats");
    assert!(n8 <= n32 + 1.0, "int8 test NLL {n8} vs f32 {n32}");
    assert!(b8.len() < 256 * 1024, "int8 file {} bytes", b8.len());
    assert!(m8.arena_bytes() <= 64 * 1024, "arena {}", m8.arena_bytes());
}

#[test]
fn shipped_pixelrnn_samples_have_ink() {
    for name in ["pixelrnn-int8.tgm", "pixelrnn-f32.tgm"] {
        let bytes = shipped(name);
        let model = Model::load(&bytes).unwrap();
        let mut arena = AlignedBuf::new(model.arena_bytes() as usize);
        let mut s = PixelCnnSampler::new(&model, arena.bytes()).unwrap();
        let mut img = vec![7u8; 784];
        s.sample(&mut Rng::new(5), &mut img).unwrap();
        let ink = img.iter().filter(|&&p| p == 255).count();
        assert!(
            img.iter().all(|&p| p == 0 || p == 255),
            "{name}: not binary"
        );
        assert!((1..784).contains(&ink), "{name}: {ink} ink pixels");
    }
}
