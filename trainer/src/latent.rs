//! Pictures of a latent space, drawn through the runtime (so an int8 file
//! shows what the board computes): the decoded grid over Gaussian quantiles
//! of a 2-D VAE latent ([`manifold`]), and interpolation strips between two
//! codes ([`interpolation_strip`]: the encoded means of two real digits for
//! an autoencoder or a VAE, two seeded N(0, I) draws for a GAN).
//!
//! ```no_run
//! use tinygen_runtime::Model;
//! let bytes = std::fs::read("models/vae2d-int8.tgm")?;
//! let model = Model::load(&bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
//! let pixels = tinygen_trainer::latent::manifold(&model, 20)?; // 400 images, row by row
//! tinygen_trainer::report::write_grid_png(std::path::Path::new("manifold.png"), &pixels, 400, 20)?;
//! # anyhow::Ok(())
//! ```

use anyhow::{anyhow, bail, Result};
use tinygen_runtime::{Decoder, Encoder, Model, ModelKind, Rng};

use crate::eval::HostArena;

/// The standard normal quantile function Phi^-1(p), for p in (0, 1)
/// (NaN outside; -inf and +inf at 0 and 1).
///
/// P. J. Acklam's rational approximations (central region and both tails),
/// relative error below 1.2e-9 over (0, 1).
pub fn inverse_normal_cdf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const P_LOW: f64 = 0.024_25;
    if p.is_nan() || !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    let tail = |q: f64| {
        // q = sqrt(-2 ln p) for the lower tail.
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < P_LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p <= 1.0 - P_LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    }
}

/// The latent points of an `n` x `n` manifold grid, row by row from the
/// top: column j has z1 = Phi^-1((j + 0.5) / n), row i has
/// z2 = Phi^-1(1 - (i + 0.5) / n) (z2 grows upwards, as on a plot).
pub fn quantile_grid(n: usize) -> Vec<[f32; 2]> {
    let q = |k: usize| inverse_normal_cdf((k as f64 + 0.5) / n as f64) as f32;
    (0..n)
        .flat_map(|i| (0..n).map(move |j| [q(j), q(n - 1 - i)]))
        .collect()
}

/// Decodes the `n` x `n` [`quantile_grid`] with a VAE file whose latent has
/// 2 dimensions; returns `n * n` images of pixel bytes, row by row.
///
/// # Errors
/// If the file is not a VAE, its latent is not 2-D, or `n` is 0.
pub fn manifold(model: &Model<'_>, n: usize) -> Result<Vec<u8>> {
    if n == 0 {
        bail!("the manifold grid needs n >= 1");
    }
    if model.file.kind != ModelKind::Vae {
        bail!(
            "the manifold is drawn for a VAE; this file's kind is {:?}",
            model.file.kind
        );
    }
    let latent = model.file.meta.latent;
    if latent != 2 {
        bail!(
            "the manifold needs a 2-D latent; this VAE's latent has {latent} dimensions \
             (train one with `tinygen train vae --latent 2`, then `tinygen export`)"
        );
    }
    let mut arena = HostArena::new(model.arena_bytes());
    let mut dec = Decoder::new(model, arena.bytes()).map_err(|e| anyhow!("{e}"))?;
    let len = dec.image_len();
    let points = quantile_grid(n);
    let mut out = vec![0u8; points.len() * len];
    for (z, img) in points.iter().zip(out.chunks_exact_mut(len)) {
        dec.decode(z, img).map_err(|e| anyhow!("decoding: {e}"))?;
    }
    Ok(out)
}

/// How to walk from one code to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Interp {
    /// Straight line: (1 - t) a + t b.
    Linear,
    /// Spherical (great circle, Shoemake's slerp): keeps the norm of
    /// Gaussian draws typical all along the way, where the midpoint of a
    /// straight line between two N(0, I) draws has a norm about 0.7 times
    /// theirs (a region the generator rarely saw).
    Slerp,
}

/// The point at `t` in [0, 1] on the way from `a` to `b`.
pub fn interpolate(a: &[f32], b: &[f32], t: f32, how: Interp) -> Vec<f32> {
    let lerp =
        |s: f32, u: f32| -> Vec<f32> { a.iter().zip(b).map(|(x, y)| s * x + u * y).collect() };
    match how {
        Interp::Linear => lerp(1.0 - t, t),
        Interp::Slerp => {
            let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
            let (na, nb) = (norm(a), norm(b));
            let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            let cos = if na > 0.0 && nb > 0.0 {
                (dot / (na * nb)).clamp(-1.0, 1.0)
            } else {
                1.0
            };
            let omega = cos.acos();
            let so = omega.sin();
            if so < 1e-6 {
                // (Anti)parallel or zero: the great circle is not defined.
                lerp(1.0 - t, t)
            } else {
                lerp(((1.0 - t) * omega).sin() / so, (t * omega).sin() / so)
            }
        }
    }
}

/// The code of an image under the file's encoder: z for an autoencoder,
/// the posterior mean for a VAE (the first half of [mean ‖ log-variance]).
/// A VAE's encoder sees the image binarized at 0.5, as in training.
///
/// # Errors
/// If the file has no encoder (a GAN, or a VAE exported before VAE files
/// carried one) or the image has the wrong size.
pub fn encode_code(model: &Model<'_>, arena: &mut HostArena, image: &[u8]) -> Result<Vec<f32>> {
    let vae = model.file.kind == ModelKind::Vae;
    let mut enc = Encoder::new(model, arena.bytes()).map_err(|e| {
        anyhow!(
            "{e}: this {:?} file has no encoder{}",
            model.file.kind,
            if vae {
                " (re-export the VAE run with this tinygen: VAE files carry q(z|x) since then)"
            } else {
                ""
            }
        )
    })?;
    let mut out = vec![0f32; enc.output_len()];
    let binarized: Vec<u8>;
    let input = if vae {
        binarized = image
            .iter()
            .map(|&p| if p >= 128 { 255 } else { 0 })
            .collect();
        &binarized[..]
    } else {
        image
    };
    enc.encode(input, &mut out)
        .map_err(|e| anyhow!("encoding: {e}"))?;
    out.truncate(enc.latent_len());
    Ok(out)
}

/// One strip: `ends.0`, then the decodes of `steps` points from `a` to `b`
/// (t = k / (steps - 1), so the first and last are a's and b's own
/// decodes), then `ends.1`; without `ends`, the decodes alone. Returns
/// the images' pixel bytes, one after the other.
///
/// # Errors
/// If `steps < 2`, the file is not a decoder model, or a code has the
/// wrong length.
pub fn interpolation_strip(
    model: &Model<'_>,
    arena: &mut HostArena,
    a: &[f32],
    b: &[f32],
    steps: usize,
    how: Interp,
    ends: Option<(&[u8], &[u8])>,
) -> Result<Vec<u8>> {
    if steps < 2 {
        bail!("an interpolation needs --steps >= 2 (both ends)");
    }
    let mut dec = Decoder::new(model, arena.bytes()).map_err(|e| anyhow!("{e}"))?;
    let len = dec.image_len();
    let mut out = Vec::with_capacity((steps + 2) * len);
    if let Some((first, _)) = ends {
        out.extend_from_slice(first);
    }
    let mut img = vec![0u8; len];
    for k in 0..steps {
        let t = k as f32 / (steps - 1) as f32;
        let z = interpolate(a, b, t, how);
        dec.decode(&z, &mut img)
            .map_err(|e| anyhow!("decoding: {e}"))?;
        out.extend_from_slice(&img);
    }
    if let Some((_, last)) = ends {
        out.extend_from_slice(last);
    }
    Ok(out)
}

/// `pairs` pairs of test image indices drawn with the runtime's [`Rng`]
/// seeded with `seed`: the two images of a pair show different digits
/// (when the labels allow it), so that the strip morphs one into another.
pub fn random_pairs(labels: &[u8], pairs: usize, seed: u64) -> Vec<(usize, usize)> {
    let n = labels.len();
    if n == 0 {
        return Vec::new();
    }
    let mut rng = Rng::new(seed);
    let mut pick = || rng.next_u32() as usize % n;
    (0..pairs)
        .map(|_| {
            let i = pick();
            let mut j = pick();
            for _ in 0..100 {
                if labels[j] != labels[i] {
                    break;
                }
                j = pick();
            }
            (i, j)
        })
        .collect()
}

/// Two N(0, I) latents per pair, from one [`Rng`] stream seeded with `seed`
/// (the generator's prior; the file's per-dimension prior if it has one).
pub fn random_latent_pairs(
    model: &Model<'_>,
    pairs: usize,
    seed: u64,
) -> Vec<(Vec<f32>, Vec<f32>)> {
    let latent = model.file.meta.latent as usize;
    let meta = &model.file.meta;
    let mut rng = Rng::new(seed);
    let mut draw = || {
        let mut z = vec![0f32; latent];
        rng.fill_gaussian(&mut z);
        if !meta.prior_mean.is_empty() {
            for (i, v) in z.iter_mut().enumerate() {
                let (mean, std) = (f32_le(meta.prior_mean, i), f32_le(meta.prior_std, i));
                *v = mean + std * *v;
            }
        }
        z
    };
    (0..pairs).map(|_| (draw(), draw())).collect()
}

/// The `i`-th little-endian f32 of a blob (0 past its end).
fn f32_le(blob: &[u8], i: usize) -> f32 {
    blob.get(4 * i..4 * i + 4)
        .map_or(0.0, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_normal_cdf_known_quantiles() {
        // (p, Phi^-1(p)) to 10+ digits (standard tables / R's qnorm).
        let known = [
            (0.5, 0.0),
            (0.975, 1.959_963_984_540_054),
            (0.025, -1.959_963_984_540_054),
            (0.841_344_746_068_542_9, 1.0),
            (0.158_655_253_931_457_05, -1.0),
            (0.9, 1.281_551_565_544_601),
            (0.99, 2.326_347_874_040_841),
            (0.001, -3.090_232_306_167_814),
            (1e-6, -4.753_424_308_822_899),
            (1e-10, -6.361_340_902_404_056),
            (0.999_999, 4.753_424_308_822_899),
        ];
        for (p, want) in known {
            let (p, want): (f64, f64) = (p, want);
            let got = inverse_normal_cdf(p);
            let tol = 1.2e-9 * want.abs().max(1.0) * 3.0;
            assert!((got - want).abs() < tol, "Phi^-1({p}) = {got}, want {want}");
        }
        assert_eq!(inverse_normal_cdf(0.0), f64::NEG_INFINITY);
        assert_eq!(inverse_normal_cdf(1.0), f64::INFINITY);
        assert!(inverse_normal_cdf(-0.1).is_nan() && inverse_normal_cdf(f64::NAN).is_nan());
        // Symmetric and increasing over a fine sweep, across the region boundaries.
        let mut prev = f64::NEG_INFINITY;
        for k in 1..10_000 {
            let p = k as f64 / 10_000.0;
            let x = inverse_normal_cdf(p);
            assert!(x > prev, "not increasing at {p}");
            assert!((x + inverse_normal_cdf(1.0 - p)).abs() < 1e-8);
            prev = x;
        }
    }

    #[test]
    fn grid_layout() {
        let g = quantile_grid(3);
        assert_eq!(g.len(), 9);
        // Centre cell is the origin; top-left is (low z1, high z2).
        assert_eq!(g[4], [0.0, 0.0]);
        assert!(g[0][0] < 0.0 && g[0][1] > 0.0);
        assert_eq!(g[0][0], -g[2][0]);
        assert_eq!(g[6][1], -g[0][1]);
    }

    #[test]
    fn interpolation_ends_and_norms() {
        let a = [1.0f32, 0.0, 2.0];
        let b = [0.0f32, 3.0, -1.0];
        for how in [Interp::Linear, Interp::Slerp] {
            let s = interpolate(&a, &b, 0.0, how);
            let e = interpolate(&a, &b, 1.0, how);
            for (x, y) in s.iter().zip(&a).chain(e.iter().zip(&b)) {
                assert!((x - y).abs() < 1e-5, "{how:?}: {s:?} {e:?}");
            }
        }
        // Slerp between two orthogonal unit vectors stays on the circle.
        let (u, v) = ([1.0f32, 0.0], [0.0f32, 1.0]);
        let m = interpolate(&u, &v, 0.5, Interp::Slerp);
        assert!((m[0] - 0.5f32.sqrt()).abs() < 1e-6 && (m[1] - 0.5f32.sqrt()).abs() < 1e-6);
        let l = interpolate(&u, &v, 0.5, Interp::Linear);
        assert_eq!(l, vec![0.5, 0.5]);
        // Parallel vectors fall back to the straight line.
        assert_eq!(interpolate(&u, &u, 0.3, Interp::Slerp), vec![1.0, 0.0]);
    }

    /// An untrained VAE of latent size `latent`, exported f32 with its encoder.
    fn vae_file(latent: usize) -> Vec<u8> {
        use crate::export::{export_with_encoder, vae_decoder_net, vae_encoder_net};
        use crate::export::{EncoderExport, ExportMeta, Quant};
        use crate::models::vae::{Vae, VaeConfig};
        use tinygen_runtime::format::Shape;
        let vae = Vae::new(VaeConfig { latent }, 3, &candle_core::Device::Cpu).unwrap();
        let meta = ExportMeta {
            kind: ModelKind::Vae,
            image: Shape { c: 1, h: 28, w: 28 },
            latent: latent as u16,
            data: "test".into(),
            figures: Vec::new(),
            prior: None,
        };
        let enc = vae_encoder_net(&vae).unwrap();
        let encoder = Some(EncoderExport {
            net: &enc,
            calib: &[],
        });
        export_with_encoder(
            &vae_decoder_net(&vae).unwrap(),
            encoder,
            &meta,
            Quant::F32,
            &[],
        )
        .unwrap()
    }

    #[test]
    fn manifold_and_strip_through_the_runtime() {
        let bytes = vae_file(2);
        let model = Model::load(&bytes).unwrap();
        let px = manifold(&model, 3).unwrap();
        assert_eq!(px.len(), 9 * 784);
        // The centre tile is the decode of z = 0.
        let mut arena = HostArena::new(model.arena_bytes());
        let mut dec = Decoder::new(&model, arena.bytes()).unwrap();
        let mut centre = vec![0u8; 784];
        dec.decode(&[0.0, 0.0], &mut centre).unwrap();
        assert_eq!(&px[4 * 784..5 * 784], &centre[..]);

        let img_a: Vec<u8> = (0..784).map(|i| (i % 256) as u8).collect();
        let img_b = vec![255u8; 784];
        let a = encode_code(&model, &mut arena, &img_a).unwrap();
        let b = encode_code(&model, &mut arena, &img_b).unwrap();
        assert_eq!(a.len(), 2);
        let strip = interpolation_strip(
            &model,
            &mut arena,
            &a,
            &b,
            4,
            Interp::Linear,
            Some((&img_a, &img_b)),
        )
        .unwrap();
        assert_eq!(strip.len(), 6 * 784);
        assert_eq!(&strip[..784], &img_a[..]);
        assert_eq!(&strip[5 * 784..], &img_b[..]);
        let plain =
            interpolation_strip(&model, &mut arena, &a, &b, 4, Interp::Linear, None).unwrap();
        assert_eq!(&plain[..], &strip[784..5 * 784]);
        assert!(interpolation_strip(&model, &mut arena, &a, &b, 1, Interp::Linear, None).is_err());

        let other = vae_file(3);
        let err = manifold(&Model::load(&other).unwrap(), 3)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("3 dimensions") && err.contains("--latent 2"),
            "{err}"
        );
    }

    #[test]
    fn pairs_differ_in_label() {
        let labels = [0u8, 0, 0, 1, 0, 0];
        let p = random_pairs(&labels, 5, 7);
        assert_eq!(p.len(), 5);
        for (i, j) in p {
            assert!(i < 6 && j < 6);
            assert_ne!(labels[i], labels[j]);
        }
        assert!(random_pairs(&[], 3, 1).is_empty());
        assert_eq!(random_pairs(&labels, 3, 9), random_pairs(&labels, 3, 9));
    }
}
