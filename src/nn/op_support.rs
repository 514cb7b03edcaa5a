//! What the CPU custom ops of the UNet's layers ([`super::conv`], [`super::norm`]) share: reading
//! their operands on the host, and the backward pass over the batch's two halves.

use candle_core::{CpuStorage, Layout, Tensor};

/// The f32 values of a tensor on the host, read in place when it is a contiguous CPU tensor
/// (the custom ops' backward passes get their operands as tensors; the fast losses read
/// simulated paths), else copied.
pub(crate) struct HostView<'a> {
    storage: Option<(candle_core::StorageRef<'a>, usize, usize)>,
    copy: Vec<f32>,
}

impl<'a> HostView<'a> {
    pub(crate) fn of(t: &'a Tensor) -> candle_core::Result<Self> {
        let (storage, layout) = t.storage_and_layout();
        if let (candle_core::Storage::Cpu(CpuStorage::F32(_)), Some((a, b))) =
            (&*storage, layout.contiguous_offsets())
        {
            return Ok(Self {
                storage: Some((storage, a, b)),
                copy: Vec::new(),
            });
        }
        drop(storage);
        Ok(Self {
            storage: None,
            copy: t.flatten_all()?.to_vec1::<f32>()?,
        })
    }

    pub(crate) fn values(&self) -> &[f32] {
        match &self.storage {
            Some((s, a, b)) => match &**s {
                candle_core::Storage::Cpu(CpuStorage::F32(v)) => &v[*a..*b],
                _ => unreachable!("checked in HostView::of"),
            },
            None => &self.copy,
        }
    }
}

/// The batch's split between the two threads: the first half of its images (rounded down) and
/// the rest. It depends only on the batch size, so the sums are the same on any thread count.
fn first_half(batch: usize) -> usize {
    batch / 2
}

/// Two threads over the batch's two halves ([`first_half`]) for a forward pass: `f(xs, ys)`
/// computes images `xs` (`image` values each) into `ys` (`out` values each). Returns the
/// output of all `batch` images.
pub(super) fn forward_on_halves(
    (image, out, batch): (usize, usize, usize),
    xs: &[f32],
    f: impl Fn(&[f32], &mut [f32]) + Sync,
) -> Vec<f32> {
    let mut ys = vec![0.0f32; batch * out];
    let split = first_half(batch);
    let (x0, x1) = xs.split_at(split * image);
    let (y0, y1) = ys.split_at_mut(split * out);
    rayon::join(|| f(x0, y0), || f(x1, y1));
    ys
}

/// Two threads over the batch's two halves ([`first_half`]) for a backward pass:
/// `f((xs, dys), (acc_a, acc_b), dxs)` gets each half's images (`image` values of x and `out`
/// values of ∂y each) and its own two gradient accumulators of `sizes`, and writes those
/// images' ∂x into `dx`. Returns the accumulators, the first half's plus the second's (a fixed
/// order).
pub(super) fn backward_on_halves(
    (image, out, batch): (usize, usize, usize),
    (xs, dys): (&[f32], &[f32]),
    sizes: (usize, usize),
    dx: &mut [f32],
    f: impl Fn((&[f32], &[f32]), (&mut [f32], &mut [f32]), &mut [f32]) + Sync,
) -> (Vec<f32>, Vec<f32>) {
    let split = first_half(batch);
    let mut acc = [0, 1].map(|_| (vec![0.0f32; sizes.0], vec![0.0f32; sizes.1]));
    let (x0, x1) = xs.split_at(split * image);
    let (d0, d1) = dys.split_at(split * out);
    let (dx0, dx1) = dx.split_at_mut(split * image);
    let [(a0, b0), (a1, b1)] = &mut acc;
    rayon::join(|| f((x0, d0), (a0, b0), dx0), || f((x1, d1), (a1, b1), dx1));
    let [(mut a0, mut b0), (a1, b1)] = acc;
    for (x, y) in a0.iter_mut().zip(&a1).chain(b0.iter_mut().zip(&b1)) {
        *x += y;
    }
    (a0, b0)
}

/// A contiguous f32 slice of a storage.
pub(super) fn slice<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    let Some((start, end)) = l.contiguous_offsets() else {
        candle_core::bail!("custom op: non-contiguous operand");
    };
    Ok(&s.as_slice::<f32>()?[start..end])
}

/// The gradients a custom op's backward pass computed on the host, each as a tensor shaped
/// like its operand: what `CustomOp3::bwd` returns.
pub(super) type Gradients3 = (Option<Tensor>, Option<Tensor>, Option<Tensor>);

/// [`Gradients3`] from the host gradients of the three operands, each paired with its operand.
pub(super) fn gradients3(
    [(g1, t1), (g2, t2), (g3, t3)]: [(Vec<f32>, &Tensor); 3],
) -> candle_core::Result<Gradients3> {
    let of = |g: Vec<f32>, t: &Tensor| Tensor::from_vec(g, t.shape(), t.device()).map(Some);
    Ok((of(g1, t1)?, of(g2, t2)?, of(g3, t3)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::host;
    use candle_core::Device;

    /// A host view reads a contiguous tensor in place (a narrowed one at its offset) and copies
    /// a strided one: the same values either way.
    #[test]
    fn host_views_read_contiguous_and_strided_tensors() {
        let t = Tensor::arange(0f32, 12.0, &Device::Cpu)
            .unwrap()
            .reshape((3, 4))
            .unwrap();
        for v in [t.clone(), t.narrow(0, 1, 2).unwrap(), t.t().unwrap()] {
            let view = HostView::of(&v).unwrap();
            assert_eq!(view.values(), &host(&v)[..]);
            assert_eq!(view.storage.is_some(), v.is_contiguous());
        }
    }
}
