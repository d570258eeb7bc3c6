//! Model families and what they share: seeded initialization and noise.
//!
//! candle's CPU random number generator cannot be seeded, so every random
//! number the trainer uses (initial weights, shuffling, latent noise) comes from
//! a [`StdRng`] seeded by the run's `--seed`: the same seed gives the same run.
//!
//! ```
//! use candle_core::{DType, Device};
//! use candle_nn::VarMap;
//! let varmap = VarMap::new();
//! let vb = tinygen_trainer::models::seeded_var_builder(&varmap, 0, &Device::Cpu);
//! let fc = candle_nn::linear(4, 2, vb.pp("fc"))?;
//! assert_eq!(fc.weight().dims(), &[2, 4]);
//! # candle_core::Result::Ok(())
//! ```

pub mod ae;
pub mod classifier;
pub mod conv;
pub mod gan;
pub mod pixelcnn;
pub mod pixelrnn;
pub mod taps;
pub mod vae;

use std::sync::Mutex;

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::init::{FanInOut, Init, NormalOrUniform};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{VarBuilder, VarMap};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

/// A [`VarBuilder`] that creates missing variables in `varmap`, drawing their
/// initial values from a generator seeded with `seed` (same distributions as
/// candle's own [`Init`]). Variables already in `varmap` are returned as they are.
pub fn seeded_var_builder(varmap: &VarMap, seed: u64, device: &Device) -> VarBuilder<'static> {
    let backend = SeededVarMap {
        varmap: varmap.clone(),
        rng: Mutex::new(StdRng::seed_from_u64(seed)),
    };
    VarBuilder::from_backend(Box::new(backend), DType::F32, device.clone())
}

struct SeededVarMap {
    varmap: VarMap,
    rng: Mutex<StdRng>,
}

fn poisoned() -> candle_core::Error {
    candle_core::Error::Msg("a lock was poisoned by an earlier panic".into())
}

impl SimpleBackend for SeededVarMap {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let mut vars = self.varmap.data().lock().map_err(|_| poisoned())?;
        if let Some(var) = vars.get(name) {
            if var.shape() != &s {
                candle_core::bail!("shape mismatch on {name}: {s:?} <> {:?}", var.shape());
            }
            return Ok(var.as_tensor().clone());
        }
        let mut rng = self.rng.lock().map_err(|_| poisoned())?;
        let values = init_values(&s, h, &mut rng);
        let tensor = Tensor::from_vec(values, s, dev)?.to_dtype(dtype)?;
        let var = Var::from_tensor(&tensor)?;
        let out = var.as_tensor().clone();
        vars.insert(name.to_string(), var);
        Ok(out)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        let vars = self.varmap.data().lock().map_err(|_| poisoned())?;
        match vars.get(name) {
            Some(var) => Ok(var.as_tensor().clone()),
            None => candle_core::bail!("no variable named {name}"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.varmap
            .data()
            .lock()
            .map(|vars| vars.contains_key(name))
            .unwrap_or(false)
    }
}

/// Values for `init`, following candle_nn::Init::var (PyTorch's init rules).
fn init_values(shape: &Shape, init: Init, rng: &mut StdRng) -> Vec<f32> {
    let n = shape.elem_count();
    let uniform = |rng: &mut StdRng, lo: f64, up: f64| -> Vec<f32> {
        (0..n).map(|_| rng.random_range(lo..=up) as f32).collect()
    };
    let normal = |rng: &mut StdRng, mean: f64, std: f64| -> Vec<f32> {
        (0..n)
            .map(|_| (mean + std * rng.sample::<f64, _>(StandardNormal)) as f32)
            .collect()
    };
    match init {
        Init::Const(c) => vec![c as f32; n],
        Init::Uniform { lo, up } => uniform(rng, lo, up),
        Init::Randn { mean, stdev } => normal(rng, mean, stdev),
        Init::Kaiming {
            dist,
            fan,
            non_linearity,
        } => {
            let fan = match fan {
                FanInOut::FanIn => FanInOut::FanIn.for_shape(shape),
                FanInOut::FanOut => FanInOut::FanOut.for_shape(shape),
            };
            let std = non_linearity.gain() / (fan.max(1) as f64).sqrt();
            match dist {
                NormalOrUniform::Uniform => {
                    let bound = 3f64.sqrt() * std;
                    uniform(rng, -bound, bound)
                }
                NormalOrUniform::Normal => normal(rng, 0.0, std),
            }
        }
    }
}

/// Standard normal noise of the given shape from `rng` (f32, on `device`).
///
/// # Errors
/// Only if candle cannot allocate the tensor.
pub fn standard_normal<S: Into<Shape>, R: Rng + ?Sized>(
    rng: &mut R,
    shape: S,
    device: &Device,
) -> Result<Tensor> {
    let shape = shape.into();
    let values: Vec<f32> = (0..shape.elem_count())
        .map(|_| rng.sample::<f32, _>(StandardNormal))
        .collect();
    Tensor::from_vec(values, shape, device)
}

/// Copies every variable of `varmap` into a name-sorted list (for saving or export).
///
/// # Errors
/// If the map's lock was poisoned by a panic.
pub fn sorted_tensors(varmap: &VarMap) -> Result<Vec<(String, Tensor)>> {
    let vars = varmap.data().lock().map_err(|_| poisoned())?;
    let mut out: Vec<(String, Tensor)> = vars
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// A [`VarMap`] holding the given tensors as trainable variables.
///
/// # Errors
/// If the map's lock was poisoned by a panic.
pub fn varmap_from_tensors<I: IntoIterator<Item = (String, Tensor)>>(tensors: I) -> Result<VarMap> {
    let varmap = VarMap::new();
    {
        let mut vars = varmap.data().lock().map_err(|_| poisoned())?;
        for (name, tensor) in tensors {
            vars.insert(name, Var::from_tensor(&tensor)?);
        }
    }
    Ok(varmap)
}

/// Helpers of the layer tests (conv, taps).
#[cfg(test)]
pub(crate) mod test_util {
    use candle_core::{Device, Tensor};
    use rand::SeedableRng;

    /// A standard-normal tensor of `shape` from a generator seeded with `seed`.
    pub fn randn(seed: u64, shape: &[usize]) -> Tensor {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        super::standard_normal(&mut rng, shape.to_vec(), &Device::Cpu).unwrap()
    }

    /// Largest absolute difference of two tensors of the same shape.
    pub fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        assert_eq!(a.dims(), b.dims());
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(seed: u64) -> Vec<f32> {
        let varmap = VarMap::new();
        let vb = seeded_var_builder(&varmap, seed, &Device::Cpu);
        let l = candle_nn::linear(50, 40, vb.pp("l")).unwrap();
        l.weight().flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn same_seed_same_weights() {
        assert_eq!(weights(7), weights(7));
        assert_ne!(weights(7), weights(8));
    }

    #[test]
    fn kaiming_normal_scale() {
        // linear() uses Kaiming normal, fan-in 50, ReLU gain: std = sqrt(2/50) = 0.2.
        let w = weights(1);
        let var = w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32;
        assert!((var.sqrt() - 0.2).abs() < 0.02, "std {}", var.sqrt());
    }

    #[test]
    fn existing_variables_are_reused() {
        let varmap = VarMap::new();
        let a =
            candle_nn::linear(3, 2, seeded_var_builder(&varmap, 1, &Device::Cpu).pp("l")).unwrap();
        let b =
            candle_nn::linear(3, 2, seeded_var_builder(&varmap, 2, &Device::Cpu).pp("l")).unwrap();
        assert_eq!(
            a.weight().to_vec2::<f32>().unwrap(),
            b.weight().to_vec2::<f32>().unwrap()
        );
        assert!(
            candle_nn::linear(4, 2, seeded_var_builder(&varmap, 1, &Device::Cpu).pp("l")).is_err()
        );
    }
}
