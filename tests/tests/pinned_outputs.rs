//! Pinned outputs: the first values of the runtime's random stream and a
//! checksum of the seed-1 samples of every fixture and shipped model.
//!
//! Host and board share the runtime, so a change to exp/sigmoid, the Rng
//! or a kernel moves both together and the QEMU contract still passes,
//! while BENCHMARKS.md, the PNGs and the stored figures silently describe
//! other samples. These goldens fail instead, naming what moved. Update
//! them deliberately, with the figures (`cargo xtask bench`, the models'
//! PNGs): on failure the test prints the whole new table to paste here.

use tinygen_runtime::{crc32, Model, Rng};
use tinygen_tests::firmware::project_root;
use tinygen_trainer::sample::sample_model_at;

/// Seeds and the first four `next_u32`, then the bits of two `uniform`
/// and two `gaussian` draws.
const RNG: [(u64, [u32; 8]); 3] = [
    (
        0,
        [
            0xdec9045d, 0x9a089d75, 0xab77d362, 0xc3e16405, 0x3eb92b50, 0x3ec1bd40, 0xbf887b19,
            0xbfa7aade,
        ],
    ),
    (
        1,
        [
            0x650941ba, 0x54d30301, 0x25d2f321, 0x3fabdca9, 0x3e2ae380, 0x3f798900, 0xbfb30be7,
            0xbfc17c85,
        ],
    ),
    (
        7,
        [
            0x6b5a8e41, 0x5ca521a4, 0xb262844a, 0xd5eb7f3c, 0x3ef79abe, 0x3e7731c4, 0x3fc5ad78,
            0x3f463b68,
        ],
    ),
];

/// Files (under the project root), samples drawn with seed 1 at
/// temperature 1, and the CRC-32 of their pixel bytes.
const SAMPLES: [(&str, usize, u32); 18] = [
    ("tests/fixtures/tiny_f32.tgm", 2, 0xb1a87088),
    ("tests/fixtures/tiny_i8.tgm", 2, 0xc88c6ff3),
    ("tests/fixtures/tiny_pixelcnn_f32.tgm", 2, 0x845fc530),
    ("tests/fixtures/tiny_pixelrnn_f32.tgm", 2, 0x6a724381),
    ("tests/fixtures/tiny_pixelrnn_i8.tgm", 2, 0x166c0494),
    ("tests/fixtures/tiny_stacks_f32.tgm", 2, 0x4572ebd7),
    ("models/ae-f32.tgm", 2, 0x9c1d51a6),
    ("models/ae-int8.tgm", 2, 0x0a2c5837),
    ("models/gan-f32.tgm", 2, 0x3f579f5e),
    ("models/gan-int8.tgm", 2, 0xde2ce08c),
    ("models/pixelcnn-f32.tgm", 2, 0x1bd70b01),
    ("models/pixelcnn-int8.tgm", 2, 0x29adf1fe),
    ("models/pixelrnn-f32.tgm", 2, 0xf16648d5),
    ("models/pixelrnn-int8.tgm", 2, 0xa56fbefb),
    ("models/vae-f32.tgm", 2, 0x5713399f),
    ("models/vae-int8.tgm", 2, 0x4a98a652),
    ("models/vae2d-f32.tgm", 2, 0xdf17aa1e),
    ("models/vae2d-int8.tgm", 2, 0xfe7ba135),
];

fn rng_row(seed: u64) -> [u32; 8] {
    let mut r = Rng::new(seed);
    let mut v = [0u32; 8];
    for x in &mut v[..4] {
        *x = r.next_u32();
    }
    v[4] = r.uniform().to_bits();
    v[5] = r.uniform().to_bits();
    v[6] = r.gaussian().to_bits();
    v[7] = r.gaussian().to_bits();
    v
}

#[test]
fn the_random_stream_is_pinned() {
    let got: Vec<(u64, [u32; 8])> = RNG.iter().map(|&(s, _)| (s, rng_row(s))).collect();
    if got != RNG {
        let rows: String = got
            .iter()
            .map(|(s, v)| {
                let v: Vec<String> = v.iter().map(|x| format!("{x:#010x}")).collect();
                format!("    ({s}, [{}]),\n", v.join(", "))
            })
            .collect();
        panic!(
            "Rng::new(seed)'s first values moved (uniform/gaussian: f32 bits); new table:\n{rows}"
        );
    }
}

/// Every fixture and every shipped model file.
fn files() -> Vec<String> {
    let root = project_root();
    let mut v = Vec::new();
    for dir in ["tests/fixtures", "models"] {
        let mut names: Vec<String> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tgm"))
            .collect();
        names.sort();
        v.extend(names.into_iter().map(|n| format!("{dir}/{n}")));
    }
    v
}

#[test]
fn the_samples_of_every_file_are_pinned() {
    let root = project_root();
    let mut got = Vec::new();
    for name in files() {
        let bytes = std::fs::read(root.join(&name)).unwrap();
        let model = Model::load(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        // Two images: the autoregressive ones cost one forward pass each.
        let n = 2;
        let pixels = sample_model_at(&model, n, 1, 1.0).unwrap();
        got.push((name, n, crc32(&pixels)));
    }
    let want: Vec<(String, usize, u32)> = SAMPLES
        .iter()
        .map(|&(f, n, c)| (f.to_string(), n, c))
        .collect();
    if got != want {
        let moved: Vec<&str> = got
            .iter()
            .filter(|g| !want.contains(g))
            .map(|g| g.0.as_str())
            .collect();
        let rows: String = got
            .iter()
            .map(|(f, n, c)| format!("    (\"{f}\", {n}, {c:#010x}),\n"))
            .collect();
        panic!(
            "the seed-1 samples of {moved:?} moved (or files were added or removed); \
             if that is intended, update BENCHMARKS.md and the PNGs too; new table:\n{rows}"
        );
    }
}
