//! DESIGN.md pre-processing for efficientnet-lite0: shorter side resized to 256 (bilinear,
//! aspect kept), centre crop 224x224, `(x - 127) / 128`, NCHW RGB f32.
//!
//! The resize reproduces Pillow's `Image.resize(..., Image.BILINEAR)` exactly, because that is
//! what the model's reference numbers (models/efficientnet-lite0/PROVENANCE.md) were made with:
//! a separable triangle filter widened by the scale factor when shrinking (antialiasing),
//! 22-bit fixed-point coefficients, horizontal pass first, rounded to 8 bits after each pass.
//! Only the pixels inside the crop are computed. Checked against Pillow 13 on the photos in
//! tests/data: identical tensors from identical decoded pixels.

/// Side of the model's square input.
pub const CROP: usize = 224;
/// The shorter side is resized to this before cropping.
pub const RESIZE: usize = 256;

/// An 8-bit image: `channels` interleaved samples per pixel (1 grey, 2 grey+alpha, 3 RGB,
/// 4 RGBA; alpha is ignored, as Pillow's `convert("RGB")` does).
#[derive(Debug, Clone, Copy)]
pub struct Pixels<'a> {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub data: &'a [u8],
}

impl Pixels<'_> {
    /// Sample `c` (0..3, R G B) of pixel (x, y).
    #[inline]
    fn rgb(&self, x: usize, y: usize, c: usize) -> u8 {
        let base = (y * self.width + x) * self.channels;
        if self.channels < 3 {
            self.data[base]
        } else {
            self.data[base + c]
        }
    }
}

/// The size after resizing the shorter side to 256: the other side is
/// `round(side * 256 / shorter)` with Python's round-half-to-even, at least 1.
pub fn resized_size(width: usize, height: usize) -> (usize, usize) {
    let scale = |long: usize, short: usize| {
        ((long as f64 * RESIZE as f64 / short as f64).round_ties_even() as usize).max(1)
    };
    if width <= height {
        (RESIZE, scale(height, width))
    } else {
        (scale(width, height), RESIZE)
    }
}

/// The model input: `[1, 3, 224, 224]` as a flat NCHW vector.
pub fn preprocess(img: &Pixels<'_>) -> Vec<f32> {
    assert!(img.width > 0 && img.height > 0 && img.channels >= 1);
    assert!(img.data.len() >= img.width * img.height * img.channels);
    let (nw, nh) = resized_size(img.width, img.height);
    let (left, top) = ((nw - CROP) / 2, (nh - CROP) / 2);
    let horiz = Coefficients::new(img.width, nw);
    let vert = Coefficients::new(img.height, nh);

    // Source rows the vertical pass reads for the cropped output rows.
    let (row0, row1) = if nh == img.height {
        (top, top + CROP)
    } else {
        let first = vert.bounds[top].0;
        let last = (top..top + CROP)
            .map(|y| vert.bounds[y].0 + vert.bounds[y].1)
            .max()
            .unwrap_or(first);
        (first, last)
    };

    // Horizontal pass (Pillow skips it when the width does not change): rows row0..row1,
    // cropped columns only, RGB, rounded to u8.
    let rows = row1 - row0;
    let mut tmp = vec![0u8; rows * CROP * 3];
    for (r, y) in (row0..row1).enumerate() {
        for x in 0..CROP {
            let out = &mut tmp[(r * CROP + x) * 3..][..3];
            if nw == img.width {
                for (c, o) in out.iter_mut().enumerate() {
                    *o = img.rgb(left + x, y, c);
                }
            } else {
                let (xmin, n) = horiz.bounds[left + x];
                let k = horiz.weights(left + x);
                for (c, o) in out.iter_mut().enumerate() {
                    let mut acc = HALF;
                    for (i, &w) in k[..n].iter().enumerate() {
                        acc += i32::from(img.rgb(xmin + i, y, c)) * w;
                    }
                    *o = clip8(acc);
                }
            }
        }
    }

    // Vertical pass, then normalisation into planar RGB.
    let plane = CROP * CROP;
    let mut input = vec![0f32; 3 * plane];
    for y in 0..CROP {
        for x in 0..CROP {
            for c in 0..3 {
                let v = if nh == img.height {
                    tmp[(y * CROP + x) * 3 + c]
                } else {
                    let (ymin, n) = vert.bounds[top + y];
                    let k = vert.weights(top + y);
                    let mut acc = HALF;
                    for (i, &w) in k[..n].iter().enumerate() {
                        acc += i32::from(tmp[((ymin - row0 + i) * CROP + x) * 3 + c]) * w;
                    }
                    clip8(acc)
                };
                input[c * plane + y * CROP + x] = (f32::from(v) - 127.0) / 128.0;
            }
        }
    }
    input
}

/// Pillow's fixed-point precision for 8-bit images.
const PRECISION_BITS: u32 = 32 - 8 - 2;
const HALF: i32 = 1 << (PRECISION_BITS - 1);

fn clip8(acc: i32) -> u8 {
    if acc >= (1 << PRECISION_BITS << 8) {
        255
    } else if acc <= 0 {
        0
    } else {
        (acc >> PRECISION_BITS) as u8
    }
}

/// Per output pixel: the first input pixel, how many are used, and their fixed-point weights
/// (Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the bilinear filter).
struct Coefficients {
    bounds: Vec<(usize, usize)>,
    ksize: usize,
    k: Vec<i32>,
}

impl Coefficients {
    fn new(in_size: usize, out_size: usize) -> Coefficients {
        let scale = in_size as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = filterscale; // bilinear support is 1
        let ksize = support.ceil() as usize * 2 + 1;
        let mut bounds = Vec::with_capacity(out_size);
        let mut k = vec![0i32; out_size * ksize];
        let mut weights = vec![0f64; ksize];
        for xx in 0..out_size {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            // C's (int) truncates toward zero; negative values are clamped to 0 anyway.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let n = xmax.saturating_sub(xmin).min(ksize);
            let mut total = 0.0;
            for (x, w) in weights[..n].iter_mut().enumerate() {
                *w = triangle((x as f64 + xmin as f64 - center + 0.5) * ss);
                total += *w;
            }
            for (x, &w) in weights[..n].iter().enumerate() {
                let w = if total != 0.0 { w / total } else { w };
                let fixed = w * f64::from(1u32 << PRECISION_BITS);
                k[xx * ksize + x] = if fixed < 0.0 {
                    (-0.5 + fixed) as i32
                } else {
                    (0.5 + fixed) as i32
                };
            }
            bounds.push((xmin, n));
        }
        Coefficients { bounds, ksize, k }
    }

    fn weights(&self, out: usize) -> &[i32] {
        &self.k[out * self.ksize..][..self.ksize]
    }
}

fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resized_sizes_round_half_to_even() {
        assert_eq!(resized_size(451, 300), (385, 256)); // 384.85
        assert_eq!(resized_size(300, 451), (256, 385));
        assert_eq!(resized_size(512, 512), (256, 256));
        assert_eq!(resized_size(640, 427), (384, 256)); // 383.7
        assert_eq!(resized_size(2, 5), (256, 640));
        assert_eq!(resized_size(3, 512), (256, 43691)); // 43690.67
        // Ties go to the even side, as Python's round() does.
        assert_eq!(resized_size(513, 512), (256, 256)); // 256.5
        assert_eq!(resized_size(515, 512), (258, 256)); // 257.5
        assert_eq!(resized_size(1, 1), (256, 256));
    }

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for (inp, out) in [(451, 385), (300, 256), (100, 256), (256, 256), (5000, 256)] {
            let c = Coefficients::new(inp, out);
            for o in 0..out {
                let (start, n) = c.bounds[o];
                assert!(start + n <= inp, "{inp}->{out} at {o}");
                let sum: i64 = c.weights(o)[..n].iter().map(|&w| i64::from(w)).sum();
                assert!(
                    (sum - (1 << PRECISION_BITS)).abs() <= n as i64,
                    "{inp}->{out}: {sum}"
                );
            }
        }
    }

    #[test]
    fn identity_when_sizes_match() {
        let c = Coefficients::new(256, 256);
        for o in 0..256 {
            let (start, n) = c.bounds[o];
            assert_eq!(start, o);
            assert_eq!(c.weights(o)[0], 1 << PRECISION_BITS);
            assert!(c.weights(o)[1..n].iter().all(|&w| w == 0));
        }
    }

    #[test]
    fn uniform_image_stays_uniform() {
        for (w, h, channels) in [(451, 300, 3), (300, 451, 4), (100, 80, 1), (256, 256, 2)] {
            let data: Vec<u8> = (0..w * h)
                .flat_map(|_| [200, 100, 50, 7][..channels].to_vec())
                .collect();
            let input = preprocess(&Pixels {
                width: w,
                height: h,
                channels,
                data: &data,
            });
            assert_eq!(input.len(), 3 * CROP * CROP);
            let expect: [f32; 3] = if channels < 3 {
                [(200.0 - 127.0) / 128.0; 3]
            } else {
                [
                    (200.0 - 127.0) / 128.0,
                    (100.0 - 127.0) / 128.0,
                    (50.0 - 127.0) / 128.0,
                ]
            };
            for c in 0..3 {
                let plane = &input[c * CROP * CROP..(c + 1) * CROP * CROP];
                assert!(
                    plane.iter().all(|&v| v == expect[c]),
                    "{w}x{h}x{channels} channel {c}"
                );
            }
        }
    }

    #[test]
    fn centre_crop_of_a_256_square_is_exact() {
        // 256x256 needs no resize: the crop starts at (16, 16).
        let data: Vec<u8> = (0..256 * 256)
            .flat_map(|i| {
                let (x, y) = (i % 256, i / 256);
                [x as u8, y as u8, (x ^ y) as u8]
            })
            .collect();
        let input = preprocess(&Pixels {
            width: 256,
            height: 256,
            channels: 3,
            data: &data,
        });
        let at =
            |c: usize, x: usize, y: usize| input[c * CROP * CROP + y * CROP + x] * 128.0 + 127.0;
        assert_eq!(at(0, 0, 0), 16.0);
        assert_eq!(at(1, 0, 0), 16.0);
        assert_eq!(at(0, 223, 5), 239.0);
        assert_eq!(at(1, 223, 5), 21.0);
        assert_eq!(at(2, 3, 4), ((19 ^ 20) as f32));
    }

    #[test]
    fn shrink_coefficients_are_pillows() {
        // Shrinking 8 -> 4 widens the triangle filter to a support of 2 input pixels: an
        // inner output pixel (centre 3.0) weighs inputs 1..=4 by 1/8, 3/8, 3/8, 1/8; at the
        // edge the window is clipped to inputs 0..=2 and renormalised (3/7, 3/7, 1/7).
        let c = Coefficients::new(8, 4);
        assert_eq!(c.bounds[1], (1, 4));
        let w: Vec<i32> = c.weights(1)[..4].to_vec();
        let unit = f64::from(1u32 << PRECISION_BITS);
        let expect = [0.125, 0.375, 0.375, 0.125].map(|v| (v * unit + 0.5) as i32);
        assert_eq!(w, expect);
        // Edge: window starts at 0 with weights 3/8, 3/8, 1/8 renormalised by 7/8.
        assert_eq!(c.bounds[0], (0, 3));
        let e = c.weights(0);
        assert_eq!(e[0], ((3.0 / 7.0) * unit + 0.5) as i32);
        assert_eq!(e[2], ((1.0 / 7.0) * unit + 0.5) as i32);
    }
}
