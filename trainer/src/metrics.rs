//! Sample-quality and likelihood figures, in f64, independent of candle and
//! of the runtime: Frechet distance between Gaussian fits of two feature
//! sets, classifier inception score, label histogram and its entropy, bits
//! per dimension, and the importance-weighted estimate's log-mean-exp.
//!
//! ```
//! use tinygen_trainer::metrics::{entropy, frechet_distance, GaussianFit, label_histogram};
//! let a = [[0.0f32, 1.0], [1.0, 0.0], [1.0, 1.0]];
//! let fit = GaussianFit::from_rows(a.iter().map(|r| r.as_slice()), 2);
//! assert!(frechet_distance(&fit, &fit) < 1e-9);
//! let h = label_histogram(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 10);
//! assert!((entropy(&h) - 10f64.ln()).abs() < 1e-12);
//! ```

/// Mean and covariance (unbiased, `n - 1`) of a set of feature vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianFit {
    /// Dimension.
    pub dim: usize,
    /// Number of vectors fitted.
    pub n: usize,
    /// Mean, `dim` values.
    pub mean: Vec<f64>,
    /// Covariance, `dim x dim`, row-major.
    pub cov: Vec<f64>,
}

impl GaussianFit {
    /// Fits feature vectors of length `dim` (each row must have `dim` values).
    /// With one vector the covariance is zero.
    ///
    /// # Panics
    /// If a row's length is not `dim`.
    pub fn from_rows<'a, I: IntoIterator<Item = &'a [f32]>>(rows: I, dim: usize) -> Self {
        let rows: Vec<&[f32]> = rows.into_iter().collect();
        let n = rows.len();
        let mut mean = vec![0f64; dim];
        for r in &rows {
            assert_eq!(r.len(), dim, "feature vector length");
            for (m, &v) in mean.iter_mut().zip(r.iter()) {
                *m += f64::from(v);
            }
        }
        for m in &mut mean {
            *m /= n.max(1) as f64;
        }
        let mut cov = vec![0f64; dim * dim];
        let mut c = vec![0f64; dim];
        for r in &rows {
            for ((ci, &v), &m) in c.iter_mut().zip(r.iter()).zip(&mean) {
                *ci = f64::from(v) - m;
            }
            for i in 0..dim {
                let ci = c[i];
                if ci == 0.0 {
                    continue;
                }
                let row = &mut cov[i * dim..(i + 1) * dim];
                for (x, &cj) in row[i..].iter_mut().zip(&c[i..]) {
                    *x += ci * cj;
                }
            }
        }
        let denom = n.saturating_sub(1).max(1) as f64;
        for i in 0..dim {
            for j in i..dim {
                let v = cov[i * dim + j] / denom;
                cov[i * dim + j] = v;
                cov[j * dim + i] = v;
            }
        }
        GaussianFit { dim, n, mean, cov }
    }

    /// Fits `n` rows stored one after another in `flat` (`flat.len() = n * dim`).
    ///
    /// # Panics
    /// If `dim` is 0 or does not divide `flat.len()`.
    pub fn from_flat(flat: &[f32], dim: usize) -> Self {
        assert!(
            dim > 0 && flat.len().is_multiple_of(dim),
            "flat features of dim {dim}"
        );
        Self::from_rows(flat.chunks_exact(dim), dim)
    }
}

/// Eigen-decomposition of a symmetric `n x n` matrix (row-major) by cyclic
/// Jacobi rotations, in f64. Returns the eigenvalues and the eigenvectors
/// as the columns of an `n x n` row-major matrix `V`, so `A = V diag(l) V^T`.
/// Only the symmetric part of `a` is used.
///
/// # Panics
/// If `a.len() != n * n`.
pub fn symmetric_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    assert_eq!(a.len(), n * n, "matrix size");
    let mut m: Vec<f64> = (0..n * n)
        .map(|k| {
            let (i, j) = (k / n, k % n);
            0.5 * (a[i * n + j] + a[j * n + i])
        })
        .collect();
    let mut v = vec![0f64; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let norm: f64 = m.iter().map(|x| x * x).sum::<f64>().sqrt();
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| m[i * n + j] * m[i * n + j])
            .sum::<f64>()
            .sqrt();
        if off <= 1e-15 * norm || off == 0.0 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = m[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let (app, aqq) = (m[p * n + p], m[q * n + q]);
                // Rotation angle that zeroes m[p][q] (Golub & Van Loan 8.5.2).
                let theta = (aqq - app) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                // m <- J^T m J on rows/columns p and q.
                for k in 0..n {
                    let (mkp, mkq) = (m[k * n + p], m[k * n + q]);
                    m[k * n + p] = c * mkp - s * mkq;
                    m[k * n + q] = s * mkp + c * mkq;
                }
                for k in 0..n {
                    let (mpk, mqk) = (m[p * n + k], m[q * n + k]);
                    m[p * n + k] = c * mpk - s * mqk;
                    m[q * n + k] = s * mpk + c * mqk;
                }
                m[p * n + q] = 0.0;
                m[q * n + p] = 0.0;
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| m[i * n + i]).collect(), v)
}

/// `V diag(f(l)) V^T` for a decomposition from [`symmetric_eigen`].
fn spectral_map(l: &[f64], v: &[f64], f: impl Fn(f64) -> f64) -> Vec<f64> {
    let n = l.len();
    let fl: Vec<f64> = l.iter().map(|&x| f(x)).collect();
    let mut out = vec![0f64; n * n];
    for i in 0..n {
        for j in i..n {
            let s: f64 = (0..n).map(|k| v[i * n + k] * fl[k] * v[j * n + k]).sum();
            out[i * n + j] = s;
            out[j * n + i] = s;
        }
    }
    out
}

/// `a b` for `n x n` row-major matrices.
fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut out = vec![0f64; n * n];
    for i in 0..n {
        for k in 0..n {
            let aik = a[i * n + k];
            if aik == 0.0 {
                continue;
            }
            for (o, &bkj) in out[i * n..(i + 1) * n]
                .iter_mut()
                .zip(&b[k * n..(k + 1) * n])
            {
                *o += aik * bkj;
            }
        }
    }
    out
}

/// `tr sqrt(S1^1/2 S2 S1^1/2)` (= `tr sqrt(S1 S2)`) of two covariance
/// matrices, through two symmetric eigen-decompositions; negative
/// eigenvalues from rounding are taken as 0.
fn trace_sqrt_product(s1: &[f64], s2: &[f64], n: usize) -> f64 {
    let (l1, v1) = symmetric_eigen(s1, n);
    let root1 = spectral_map(&l1, &v1, |x| x.max(0.0).sqrt());
    let m = matmul(&matmul(&root1, s2, n), &root1, n);
    let (lm, _) = symmetric_eigen(&m, n);
    lm.iter().map(|&x| x.max(0.0).sqrt()).sum()
}

/// Frechet distance between two Gaussians, `|m1 - m2|^2 + tr S1 + tr S2 -
/// 2 tr sqrt(S1^1/2 S2 S1^1/2)` (Dowson & Landau 1982; the FID of Heusel
/// et al. 2017 on other features). Never negative (rounding clamped to 0).
///
/// # Panics
/// If the two fits have different dimensions.
pub fn frechet_distance(a: &GaussianFit, b: &GaussianFit) -> f64 {
    assert_eq!(a.dim, b.dim, "feature dimensions differ");
    let n = a.dim;
    let mean: f64 = a
        .mean
        .iter()
        .zip(&b.mean)
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    let tr = |c: &[f64]| (0..n).map(|i| c[i * n + i]).sum::<f64>();
    let d = mean + tr(&a.cov) + tr(&b.cov) - 2.0 * trace_sqrt_product(&a.cov, &b.cov, n);
    d.max(0.0)
}

/// Softmax of one row of logits, in f64 (max-shifted).
pub fn softmax(logits: &[f32]) -> Vec<f64> {
    let m = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &l| m.max(f64::from(l)));
    let e: Vec<f64> = logits.iter().map(|&l| (f64::from(l) - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}

/// `x ln(x / y)` with `0 ln 0 = 0`.
fn xlogxy(x: f64, y: f64) -> f64 {
    if x <= 0.0 {
        0.0
    } else {
        x * (x / y).ln()
    }
}

/// Classifier inception score `exp(E_x KL(p(y|x) || p(y)))` (Salimans et al.
/// 2016) of class probabilities, one row per image; between 1 (every image
/// the same prediction, or every prediction uniform) and the number of
/// classes (confident predictions, classes equally frequent).
pub fn inception_score(probs: &[Vec<f64>]) -> f64 {
    let Some(first) = probs.first() else {
        return f64::NAN;
    };
    let c = first.len();
    let mut marginal = vec![0f64; c];
    for p in probs {
        for (m, &v) in marginal.iter_mut().zip(p) {
            *m += v;
        }
    }
    let n = probs.len() as f64;
    for m in &mut marginal {
        *m /= n;
    }
    let kl: f64 = probs
        .iter()
        .map(|p| {
            p.iter()
                .zip(&marginal)
                .map(|(&x, &y)| xlogxy(x, y))
                .sum::<f64>()
        })
        .sum::<f64>()
        / n;
    kl.exp()
}

/// Counts of each label in `0..classes` (labels outside are ignored).
pub fn label_histogram(labels: &[usize], classes: usize) -> Vec<usize> {
    let mut h = vec![0usize; classes];
    for &l in labels {
        if let Some(c) = h.get_mut(l) {
            *c += 1;
        }
    }
    h
}

/// Entropy in nats of the distribution a histogram describes (`ln 10` for
/// ten equally frequent classes, 0 for one class; 0 for an empty histogram).
pub fn entropy(hist: &[usize]) -> f64 {
    let n: usize = hist.iter().sum();
    if n == 0 {
        return 0.0;
    }
    let n = n as f64;
    -hist
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            p * p.ln()
        })
        .sum::<f64>()
}

/// Bits per dimension of a negative log-likelihood of `nats` per image of
/// `dims` values.
pub fn bits_per_dim(nats: f64, dims: usize) -> f64 {
    nats / (dims as f64 * std::f64::consts::LN_2)
}

/// `ln((1/k) sum_i exp(w_i))`, shifted by the maximum so that it neither
/// overflows nor underflows (the importance-weighted bound of Burda et al.
/// 2015 over log weights `w`). `-inf` for an empty slice.
pub fn log_mean_exp(w: &[f64]) -> f64 {
    let m = w.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    let s: f64 = w.iter().map(|&x| (x - m).exp()).sum();
    m + (s / w.len() as f64).ln()
}

/// `ln N(x; 0, 1)` summed over `x`.
pub fn log_standard_normal(x: &[f32]) -> f64 {
    let c = 0.5 * (2.0 * std::f64::consts::PI).ln();
    x.iter()
        .map(|&v| -0.5 * f64::from(v) * f64::from(v) - c)
        .sum()
}

/// `ln N(z; mu, exp(logvar))` summed over dimensions, for `z = mu + exp(logvar/2) eps`
/// given `eps` (exact, no subtraction of nearly equal values).
pub fn log_diag_normal_from_eps(eps: &[f32], logvar: &[f32]) -> f64 {
    let c = 0.5 * (2.0 * std::f64::consts::PI).ln();
    eps.iter()
        .zip(logvar)
        .map(|(&e, &lv)| -0.5 * f64::from(e) * f64::from(e) - 0.5 * f64::from(lv) - c)
        .sum()
}

/// KL(N(mu, exp(logvar)) || N(0, I)) in nats, summed over dimensions.
pub fn gaussian_kl(mu: &[f32], logvar: &[f32]) -> f64 {
    mu.iter()
        .zip(logvar)
        .map(|(&m, &lv)| {
            let (m, lv) = (f64::from(m), f64::from(lv));
            0.5 * (m * m + lv.exp() - 1.0 - lv)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random feature set (n x dim), correlated dimensions.
    fn features(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let mut u = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) as f32 - 0.5
        };
        let mut out = Vec::with_capacity(n * dim);
        for _ in 0..n {
            let shared = u();
            for d in 0..dim {
                out.push(u() + shared * (d % 3) as f32 + (d as f32) * 0.1);
            }
        }
        out
    }

    #[test]
    fn eigen_reconstructs_a_symmetric_matrix() {
        let f = GaussianFit::from_flat(&features(200, 12, 3), 12);
        let (l, v) = symmetric_eigen(&f.cov, 12);
        let back = spectral_map(&l, &v, |x| x);
        for (a, b) in back.iter().zip(&f.cov) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
        // Orthonormal eigenvectors.
        for i in 0..12 {
            for j in 0..12 {
                let d: f64 = (0..12).map(|k| v[k * 12 + i] * v[k * 12 + j]).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((d - want).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn identical_feature_sets_have_frechet_distance_zero() {
        // 128-dimensional, as the classifier's features, with rank < dim
        // (100 vectors): the square roots of ~0 eigenvalues must not leak.
        for (n, dim) in [(1000, 128), (100, 128), (50, 5)] {
            let x = features(n, dim, 7);
            let a = GaussianFit::from_flat(&x, dim);
            let b = GaussianFit::from_flat(&x, dim);
            let d = frechet_distance(&a, &b);
            assert!(d.abs() < 1e-6, "n {n} dim {dim}: {d}");
        }
    }

    #[test]
    fn shifted_features_cost_the_squared_shift() {
        // Same covariance, means apart by `shift`: FCD = |shift|^2.
        let dim = 16;
        let x = features(300, dim, 11);
        let shift: Vec<f32> = (0..dim).map(|d| 0.25 * d as f32 - 1.0).collect();
        let y: Vec<f32> = x
            .chunks_exact(dim)
            .flat_map(|r| r.iter().zip(&shift).map(|(a, s)| a + s).collect::<Vec<_>>())
            .collect();
        let want: f64 = shift.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
        let d = frechet_distance(
            &GaussianFit::from_flat(&x, dim),
            &GaussianFit::from_flat(&y, dim),
        );
        assert!((d - want).abs() < 1e-6 * want.max(1.0), "{d} vs {want}");
    }

    #[test]
    fn diagonal_gaussians_have_the_closed_form() {
        // N(m1, diag(a)) vs N(m2, diag(b)): |m1 - m2|^2 + sum (sqrt a - sqrt b)^2.
        let a = GaussianFit {
            dim: 3,
            n: 0,
            mean: vec![0.0, 1.0, 2.0],
            cov: vec![4.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 9.0],
        };
        let b = GaussianFit {
            dim: 3,
            n: 0,
            mean: vec![1.0, 1.0, 0.0],
            cov: vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.25],
        };
        let want = (1.0 + 0.0 + 4.0) + (1.0 + 0.0 + 6.25);
        let d = frechet_distance(&a, &b);
        assert!((d - want).abs() < 1e-9, "{d} vs {want}");
        // Symmetric.
        assert!((frechet_distance(&b, &a) - want).abs() < 1e-9);
    }

    #[test]
    fn histogram_and_entropy() {
        let labels: Vec<usize> = (0..1000).map(|i| i % 10).collect();
        let h = label_histogram(&labels, 10);
        assert_eq!(h, vec![100; 10]);
        assert!((entropy(&h) - 10f64.ln()).abs() < 1e-12);
        assert_eq!(entropy(&label_histogram(&[3; 50], 10)), 0.0);
        // Two classes, equally: ln 2.
        assert!((entropy(&[5, 0, 5]) - 2f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn inception_score_bounds() {
        let one_hot =
            |c: usize| -> Vec<f64> { (0..10).map(|k| f64::from(u8::from(k == c))).collect() };
        // Every image the same confident prediction: IS 1.
        let same: Vec<Vec<f64>> = (0..100).map(|_| one_hot(4)).collect();
        assert!((inception_score(&same) - 1.0).abs() < 1e-12);
        // Confident, classes equally frequent: IS 10.
        let spread: Vec<Vec<f64>> = (0..100).map(|i| one_hot(i % 10)).collect();
        assert!((inception_score(&spread) - 10.0).abs() < 1e-9);
        // Uniform predictions: IS 1.
        let flat: Vec<Vec<f64>> = (0..10).map(|_| vec![0.1; 10]).collect();
        assert!((inception_score(&flat) - 1.0).abs() < 1e-12);
        // Softmax of equal logits is uniform.
        assert!(softmax(&[3.0; 10]).iter().all(|&p| (p - 0.1).abs() < 1e-15));
    }

    #[test]
    fn log_mean_exp_is_stable_and_iwae_k1_is_the_elbo_sample() {
        // k = 1: the importance-weighted bound is the single log weight.
        assert_eq!(log_mean_exp(&[-123.456]), -123.456);
        // Huge magnitudes neither overflow nor underflow.
        let v = log_mean_exp(&[-1000.0, -1000.0]);
        assert!((v + 1000.0).abs() < 1e-12);
        let v = log_mean_exp(&[1000.0, 1000.0 + 2f64.ln()]);
        assert!((v - (1000.0 + 1.5f64.ln())).abs() < 1e-12);
        // ln mean exp >= mean (Jensen): IWAE >= ELBO.
        let w = [-90.0, -95.0, -100.0];
        assert!(log_mean_exp(&w) >= w.iter().sum::<f64>() / 3.0);
        assert_eq!(log_mean_exp(&[]), f64::NEG_INFINITY);
    }

    #[test]
    fn gaussian_densities() {
        // ln N(0; 0, 1) = -ln sqrt(2 pi).
        let c = -0.5 * (2.0 * std::f64::consts::PI).ln();
        assert!((log_standard_normal(&[0.0]) - c).abs() < 1e-15);
        // z = mu + sigma eps with logvar = ln 4 (sigma 2): density at eps = 1 is
        // N(1; 0, 1) / 2.
        let v = log_diag_normal_from_eps(&[1.0], &[4f32.ln()]);
        assert!((v - (c - 0.5 - 2f64.ln())).abs() < 1e-7);
        assert!(gaussian_kl(&[0.0; 4], &[0.0; 4]).abs() < 1e-15);
        // KL(N(1, 1) || N(0, 1)) = 1/2.
        assert!((gaussian_kl(&[1.0], &[0.0]) - 0.5).abs() < 1e-15);
        assert!((bits_per_dim(784.0 * std::f64::consts::LN_2, 784) - 1.0).abs() < 1e-15);
    }
}
