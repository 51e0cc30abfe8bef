//! Keys and values of every layer for the positions seen so far, allocated once per generation
//! for the whole context (block_size positions).

#[derive(Debug)]
pub struct KvCache {
    pub(crate) k: Vec<f32>,
    pub(crate) v: Vec<f32>,
    layer_stride: usize,
    dim: usize,
    capacity: usize,
    len: usize,
}

impl KvCache {
    pub fn new(n_layer: usize, capacity: usize, dim: usize) -> Self {
        let layer_stride = capacity * dim;
        KvCache {
            k: vec![0.0; n_layer * layer_stride],
            v: vec![0.0; n_layer * layer_stride],
            layer_stride,
            dim,
            capacity,
            len: 0,
        }
    }

    /// Positions filled.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn bytes(&self) -> usize {
        4 * (self.k.len() + self.v.len())
    }

    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }

    /// Range of layer `l`, position `p` in `k` / `v`.
    pub(crate) fn at(&self, l: usize, p: usize) -> std::ops::Range<usize> {
        let start = l * self.layer_stride + p * self.dim;
        start..start + self.dim
    }

    /// All positions 0..n of layer l (contiguous).
    pub(crate) fn layer(&self, l: usize, n: usize) -> std::ops::Range<usize> {
        let start = l * self.layer_stride;
        start..start + n * self.dim
    }
}
