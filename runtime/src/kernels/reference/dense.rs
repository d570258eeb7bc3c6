//! Dense (fully connected) layer: `[out][in]` weights.

use super::{mac_i8, relu_if};
use crate::format::{f32_at, i32_at};
use crate::kernels::{FloatWeights, RequantI8};

/// Dense layer, f32 activations: `out[o] = bias[o] + sum_i w[o][i] * x[i]`.
pub fn dense_f32<W: FloatWeights>(x: &[f32], w: W, bias: &[u8], out: &mut [f32], relu: bool) {
    let n = x.len();
    for (o, y) in out.iter_mut().enumerate() {
        let mut acc = f32_at(bias, o);
        for (i, &xi) in x.iter().enumerate() {
            acc += w.at(o * n + i) * xi;
        }
        *y = relu_if(acc, relu);
    }
}

/// Dense layer, int8: `out[o] = requant(bias[o] + sum_i (x[i] - zp) * w[o][i])`.
pub fn dense_i8(x: &[i8], w: &[u8], bias: &[u8], q: &RequantI8<'_>, out: &mut [i8]) {
    let n = x.len();
    for (o, y) in out.iter_mut().enumerate() {
        let row = &w[o * n..o * n + n];
        let mut acc = i32_at(bias, o);
        for (&xi, &wi) in x.iter().zip(row) {
            acc = mac_i8(acc, xi, q.in_zp, wi);
        }
        *y = q.apply(acc, o);
    }
}
