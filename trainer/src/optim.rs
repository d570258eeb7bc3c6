//! AdamW whose state can be saved and restored, so that an interrupted run
//! resumes exactly where it stopped (candle's `AdamW` keeps its moments
//! private).
//!
//! The update is candle-nn 0.11's `AdamW::step`, operation for operation, so
//! a run trains to the same bits with either; the moments are keyed by the
//! variables' names in the model's `VarMap` (whose iteration order changes
//! from process to process), not by position.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use candle_core::{Tensor, Var};
use candle_nn::{ParamsAdamW, VarMap};

/// One optimized variable and its two moment estimates.
#[derive(Debug)]
struct Param {
    name: String,
    var: Var,
    m: Var,
    v: Var,
}

/// AdamW (decoupled weight decay) over a named subset of a `VarMap`.
#[derive(Debug)]
pub struct AdamW {
    name: String,
    params: Vec<Param>,
    step_t: usize,
    hyper: ParamsAdamW,
}

impl AdamW {
    /// AdamW `name` (how its state is keyed in a resume file) over the
    /// variables of `varmap` whose names `select` accepts, with zero moments.
    ///
    /// # Errors
    /// If the map's lock was poisoned, or on candle errors.
    pub fn new(
        name: &str,
        varmap: &VarMap,
        select: impl Fn(&str) -> bool,
        hyper: ParamsAdamW,
    ) -> Result<Self> {
        let data = varmap
            .data()
            .lock()
            .map_err(|_| anyhow::anyhow!("the model's variable map lock was poisoned"))?;
        let mut named: Vec<(&String, &Var)> = data
            .iter()
            .filter(|(n, v)| select(n) && v.dtype().is_float())
            .collect();
        named.sort_by(|a, b| a.0.cmp(b.0));
        let params = named
            .into_iter()
            .map(|(name, var)| {
                Ok(Param {
                    name: name.clone(),
                    var: var.clone(),
                    m: Var::zeros(var.shape(), var.dtype(), var.device())?,
                    v: Var::zeros(var.shape(), var.dtype(), var.device())?,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            name: name.to_owned(),
            params,
            step_t: 0,
            hyper,
        })
    }

    /// The optimizer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets the learning rate of the next steps.
    pub fn set_learning_rate(&mut self, lr: f64) {
        self.hyper.lr = lr;
    }

    /// Steps taken so far.
    pub fn steps(&self) -> usize {
        self.step_t
    }

    /// Backpropagates `loss` and updates the variables.
    ///
    /// # Errors
    /// On candle errors.
    pub fn backward_step(&mut self, loss: &Tensor) -> Result<()> {
        let grads = loss.backward()?;
        self.step_t += 1;
        let h = &self.hyper;
        let lr = h.lr;
        let lr_lambda = lr * h.weight_decay;
        let (beta1, beta2) = (h.beta1, h.beta2);
        let t = i32::try_from(self.step_t).unwrap_or(i32::MAX);
        let scale_m = 1f64 / (1f64 - beta1.powi(t));
        let scale_v = 1f64 / (1f64 - beta2.powi(t));
        for p in &self.params {
            let Some(g) = grads.get(&p.var) else { continue };
            let next_m = ((p.m.as_tensor() * beta1)? + (g * (1.0 - beta1))?)?;
            let next_v = ((p.v.as_tensor() * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
            let m_hat = (&next_m * scale_m)?;
            let v_hat = (&next_v * scale_v)?;
            let next_theta = (p.var.as_tensor() * (1f64 - lr_lambda))?;
            let adjusted = (m_hat / (v_hat.sqrt()? + h.eps)?)?;
            let next_theta = (next_theta - (adjusted * lr)?)?;
            p.m.set(&next_m)?;
            p.v.set(&next_v)?;
            p.var.set(&next_theta)?;
        }
        Ok(())
    }

    /// The moments as named tensors, `{prefix}{var}.m` and `{prefix}{var}.v`.
    pub fn state_tensors(&self, prefix: &str) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .flat_map(|p| {
                [
                    (format!("{prefix}{}.m", p.name), p.m.as_tensor().clone()),
                    (format!("{prefix}{}.v", p.name), p.v.as_tensor().clone()),
                ]
            })
            .collect()
    }

    /// Restores the moments saved by [`AdamW::state_tensors`] with the same
    /// `prefix`, and the step count.
    ///
    /// # Errors
    /// If a moment is missing or has another shape.
    pub fn restore(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        prefix: &str,
        steps: usize,
    ) -> Result<()> {
        for p in &self.params {
            for (suffix, moment) in [("m", &p.m), ("v", &p.v)] {
                let key = format!("{prefix}{}.{suffix}", p.name);
                let Some(t) = tensors.get(&key) else {
                    bail!("the resume state has no optimizer moment {key}");
                };
                if t.shape() != moment.shape() {
                    bail!(
                        "optimizer moment {key} has shape {:?}, the model's variable {:?}",
                        t.dims(),
                        moment.dims()
                    );
                }
                moment
                    .set(t)
                    .with_context(|| format!("cannot restore optimizer moment {key}"))?;
            }
        }
        self.step_t = steps;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::Optimizer as _;

    /// The same updates, bit for bit, as candle-nn's AdamW.
    #[test]
    fn matches_candle_adamw() {
        let dev = Device::Cpu;
        let make = || {
            let vm = VarMap::new();
            let vb = candle_nn::VarBuilder::from_varmap(&vm, DType::F32, &dev);
            let w = vb
                .get_with_hints((3, 4), "w", candle_nn::Init::Const(0.5))
                .unwrap();
            let b = vb
                .get_with_hints(4, "b", candle_nn::Init::Const(-0.25))
                .unwrap();
            (vm, w, b)
        };
        let x = Tensor::new(&[[1f32, -2., 3.], [0.5, 0.25, -1.]], &dev).unwrap();
        let hyper = ParamsAdamW {
            lr: 3e-3,
            weight_decay: 1e-4,
            ..ParamsAdamW::default()
        };
        let (vm1, w1, b1) = make();
        let (vm2, w2, b2) = make();
        let mut ours = AdamW::new("opt", &vm1, |_| true, hyper.clone()).unwrap();
        let mut theirs = candle_nn::AdamW::new(vm2.all_vars(), hyper).unwrap();
        for _ in 0..5 {
            let l1 = x.matmul(&w1).unwrap().broadcast_add(&b1).unwrap();
            let l1 = l1.sqr().unwrap().sum_all().unwrap();
            ours.backward_step(&l1).unwrap();
            let l2 = x.matmul(&w2).unwrap().broadcast_add(&b2).unwrap();
            let l2 = l2.sqr().unwrap().sum_all().unwrap();
            theirs.backward_step(&l2).unwrap();
        }
        for (a, b) in [(&w1, &w2), (&b1, &b2)] {
            let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
            let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(
                a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }
        assert_eq!(ours.steps(), 5);
        assert_eq!(ours.state_tensors("opt/").len(), 4);
    }
}
