//! From a drawing to the model's input: 8x8 pixels in 0..16, made the way the training data
//! (scikit-learn's digits, from the UCI hand-written digits) was made: a 32x32 bitmap of the
//! digit, scaled to fill the height, counted in 4x4 blocks.
//!
//! `canvas_to_pixels` in `scripts/models/train_digits.py` is the same algorithm in numpy (the
//! model was trained on its output); `testdata/golden.json` holds its answers for the PNGs
//! beside it, and the tests below check this code against them.
//!
//! 1. Ink: the background is the mean of the outermost ring of pixels; a pixel's ink is how far
//!    it is from the background towards the other side (dark ink on light paper or light ink
//!    on a dark canvas), divided by the largest ink. Nowhere more than [`MIN_CONTRAST`] from
//!    the background: no ink.
//! 2. The bounding box of the pixels with ink above [`BBOX_THRESHOLD`], centred in a square of
//!    its longer side (the data set's digits fill the whole height, with no margin).
//! 3. That square area-averaged (exactly, with fractional pixel overlaps) to [`GRID`]x[`GRID`].
//! 4. A bitmap: on where the average is at least half its maximum.
//! 5. Pen strokes are thinner than the data set's: while the stroke width (2 x area /
//!    perimeter) is below [`MIN_STROKE`], at most [`MAX_THICKEN`] times, a 3x3 dilation.
//! 6. On-pixels counted in 4x4 blocks: 8x8 integers 0..=16.

/// The model's input side: 8x8 pixels.
pub const SIDE: usize = 8;
/// The bitmap the pixels are counted from (the data set's 32x32).
pub const GRID: usize = 32;
const BLOCK: usize = GRID / SIDE;
/// The largest pixel value (a fully inked 4x4 block).
pub const MAX_VALUE: f32 = (BLOCK * BLOCK) as f32;
/// Ink must differ from the background by at least this much (0..255) somewhere.
pub const MIN_CONTRAST: f64 = 64.0;
/// A pixel counts for the bounding box above this fraction of the largest ink.
pub const BBOX_THRESHOLD: f64 = 0.25;
/// Strokes thinner than this (in grid pixels) are thickened; the data set's median is ~4.8.
pub const MIN_STROKE: f64 = 4.0;
/// At most this many 3x3 dilations.
pub const MAX_THICKEN: usize = 3;

/// A grey image, one byte per pixel, row-major.
#[derive(Debug, Clone, Copy)]
pub struct Gray<'a> {
    pub width: usize,
    pub height: usize,
    pub data: &'a [u8],
}

/// Nothing was drawn: no pixel stands out from the background.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoInk;

/// The model input for a drawing: 64 values, row-major, 0..=16.
pub fn pixels(gray: &Gray<'_>) -> Result<[f32; SIDE * SIDE], NoInk> {
    assert_eq!(
        gray.data.len(),
        gray.width * gray.height,
        "grey buffer size"
    );
    let ink = Ink::of(gray)?;
    let mut bitmap = ink.bitmap();
    for _ in 0..MAX_THICKEN {
        if stroke_width(&bitmap) >= MIN_STROKE {
            break;
        }
        bitmap = dilate(&bitmap);
    }
    let mut out = [0f32; SIDE * SIDE];
    for (i, on) in bitmap.iter().enumerate() {
        if *on {
            let (y, x) = (i / GRID, i % GRID);
            out[(y / BLOCK) * SIDE + x / BLOCK] += 1.0;
        }
    }
    Ok(out)
}

/// Ink of every pixel, computed on the fly from the grey values (no copy of a large image).
struct Ink<'a> {
    gray: Gray<'a>,
    background: f64,
    dark_on_light: bool,
    peak: f64,
}

impl<'a> Ink<'a> {
    fn of(gray: &Gray<'a>) -> Result<Ink<'a>, NoInk> {
        let (w, h) = (gray.width, gray.height);
        if w == 0 || h == 0 {
            return Err(NoInk);
        }
        let at = |x: usize, y: usize| f64::from(gray.data[y * w + x]);
        // The outermost ring (the whole image when it is one pixel thin).
        let (mut sum, mut count) = (0f64, 0usize);
        if w > 1 && h > 1 {
            for x in 0..w {
                sum += at(x, 0) + at(x, h - 1);
            }
            for y in 1..h - 1 {
                sum += at(0, y) + at(w - 1, y);
            }
            count = 2 * w + 2 * (h - 2);
        } else {
            for &v in gray.data {
                sum += f64::from(v);
            }
            count += gray.data.len();
        }
        let background = sum / count as f64;
        let dark_on_light = background >= 127.5;
        let (min, max) = gray
            .data
            .iter()
            .fold((u8::MAX, u8::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let peak = if dark_on_light {
            (background - f64::from(min)).max(0.0)
        } else {
            (f64::from(max) - background).max(0.0)
        };
        if peak < MIN_CONTRAST {
            return Err(NoInk);
        }
        Ok(Ink {
            gray: *gray,
            background,
            dark_on_light,
            peak,
        })
    }

    /// Ink of the pixel at `i` (row-major), 0..=1.
    fn at(&self, i: usize) -> f64 {
        let g = f64::from(self.gray.data[i]);
        let raw = if self.dark_on_light {
            self.background - g
        } else {
            g - self.background
        };
        raw.max(0.0) / self.peak
    }

    /// Steps 2-4: bounding box, square, area average to GRID x GRID, threshold.
    fn bitmap(&self) -> Vec<bool> {
        let (w, h) = (self.gray.width, self.gray.height);
        let (mut x0, mut x1, mut y0, mut y1) = (usize::MAX, 0, usize::MAX, 0);
        for y in 0..h {
            for x in 0..w {
                if self.at(y * w + x) > BBOX_THRESHOLD {
                    x0 = x0.min(x);
                    x1 = x1.max(x + 1);
                    y0 = y0.min(y);
                    y1 = y1.max(y + 1);
                }
            }
        }
        // The peak pixel has ink 1 > BBOX_THRESHOLD, so the box is never empty.
        let side = (x1 - x0).max(y1 - y0) as f64;
        let cell = side / GRID as f64;
        let rows = area_weights((y0 + y1) as f64 / 2.0 - side / 2.0, cell, h);
        let cols = area_weights((x0 + x1) as f64 / 2.0 - side / 2.0, cell, w);

        // Rows first (GRID x w), then columns (GRID x GRID).
        let mut by_rows = vec![0f64; GRID * w];
        for (i, weights) in rows.iter().enumerate() {
            let out = &mut by_rows[i * w..(i + 1) * w];
            for &(y, weight) in weights {
                for (x, o) in out.iter_mut().enumerate() {
                    *o += weight * self.at(y * w + x);
                }
            }
        }
        let mut grid = vec![0f64; GRID * GRID];
        for i in 0..GRID {
            for (j, weights) in cols.iter().enumerate() {
                let sum: f64 = weights
                    .iter()
                    .map(|&(x, weight)| weight * by_rows[i * w + x])
                    .sum();
                grid[i * GRID + j] = sum / (cell * cell);
            }
        }
        let max = grid.iter().copied().fold(0.0, f64::max);
        grid.iter().map(|&v| v >= 0.5 * max).collect()
    }
}

/// For each of the GRID cells `[lo + i*cell, lo + (i+1)*cell)`, the pixels `[p, p+1)` of
/// `0..n_pixels` it overlaps and by how much.
fn area_weights(lo: f64, cell: f64, n_pixels: usize) -> Vec<Vec<(usize, f64)>> {
    (0..GRID)
        .map(|i| {
            let start = lo + cell * i as f64;
            let end = lo + cell * (i + 1) as f64;
            let first = start.floor().max(0.0) as usize;
            let last = (end.ceil().max(0.0) as usize).min(n_pixels);
            (first..last)
                .filter_map(|p| {
                    let overlap = (p as f64 + 1.0).min(end) - (p as f64).max(start);
                    (overlap > 0.0).then_some((p, overlap))
                })
                .collect()
        })
        .collect()
}

/// 2 x area / perimeter of a GRID x GRID bitmap: the width of a long stroke.
fn stroke_width(bitmap: &[bool]) -> f64 {
    let on = |y: isize, x: isize| {
        (0..GRID as isize).contains(&y)
            && (0..GRID as isize).contains(&x)
            && bitmap[y as usize * GRID + x as usize]
    };
    let mut area = 0usize;
    let mut perimeter = 0usize;
    for y in -1..GRID as isize {
        for x in -1..GRID as isize {
            let here = on(y, x);
            area += usize::from(here);
            perimeter += usize::from(here != on(y + 1, x)) + usize::from(here != on(y, x + 1));
        }
    }
    2.0 * area as f64 / perimeter.max(1) as f64
}

/// 3x3 dilation inside the grid.
fn dilate(bitmap: &[bool]) -> Vec<bool> {
    let mut out = vec![false; GRID * GRID];
    for y in 0..GRID {
        for x in 0..GRID {
            if bitmap[y * GRID + x] {
                for ny in y.saturating_sub(1)..(y + 2).min(GRID) {
                    for nx in x.saturating_sub(1)..(x + 2).min(GRID) {
                        out[ny * GRID + nx] = true;
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `w` x `h` canvas of `bg` with rectangles of `fg` (x0, y0, x1, y1 exclusive).
    fn canvas(
        w: usize,
        h: usize,
        bg: u8,
        fg: u8,
        rects: &[(usize, usize, usize, usize)],
    ) -> Vec<u8> {
        let mut data = vec![bg; w * h];
        for &(x0, y0, x1, y1) in rects {
            for y in y0..y1 {
                for x in x0..x1 {
                    data[y * w + x] = fg;
                }
            }
        }
        data
    }

    fn run(w: usize, h: usize, data: &[u8]) -> Result<[f32; 64], NoInk> {
        pixels(&Gray {
            width: w,
            height: h,
            data,
        })
    }

    fn rows(p: &[f32; 64]) -> Vec<Vec<u8>> {
        p.chunks(8)
            .map(|r| r.iter().map(|&v| v as u8).collect())
            .collect()
    }

    #[test]
    fn a_vertical_bar_is_centred_and_fills_the_height() {
        // A thick bar anywhere on the canvas: the box is 40 wide, 200 high; the square is 200
        // wide, so the bar covers 40/200*32 = 6.4 grid columns centred: 12.8..19.2. Columns
        // 13-18 are on (12 and 19 are a fifth inked), 3 in block 3 and 3 in block 4.
        let data = canvas(280, 280, 255, 0, &[(30, 50, 70, 250)]);
        let p = run(280, 280, &data).unwrap();
        for row in rows(&p) {
            assert_eq!(row, [0, 0, 0, 12, 12, 0, 0, 0]);
        }
    }

    #[test]
    fn polarity_does_not_matter() {
        let dark = canvas(100, 120, 250, 10, &[(20, 10, 30, 110), (20, 10, 80, 20)]);
        let light: Vec<u8> = dark.iter().map(|v| 255 - v).collect();
        assert_eq!(
            run(100, 120, &dark).unwrap(),
            run(100, 120, &light).unwrap()
        );
        // Grey on grey works too, as long as the contrast is there.
        let faint = canvas(100, 120, 160, 60, &[(20, 10, 30, 110), (20, 10, 80, 20)]);
        assert_eq!(
            run(100, 120, &faint).unwrap(),
            run(100, 120, &dark).unwrap()
        );
    }

    #[test]
    fn position_and_scale_do_not_matter() {
        let big = canvas(280, 280, 255, 0, &[(60, 20, 90, 260), (60, 20, 200, 50)]);
        let small = canvas(
            280,
            280,
            255,
            0,
            &[(200, 200, 203, 224), (200, 200, 214, 203)],
        );
        assert_eq!(run(280, 280, &big).unwrap(), run(280, 280, &small).unwrap());
    }

    #[test]
    fn thin_strokes_are_thickened() {
        // A 2-pixel line 200 high: 0.32 grid pixels wide before thickening.
        let data = canvas(280, 280, 255, 0, &[(139, 40, 141, 240)]);
        let p = run(280, 280, &data).unwrap();
        let total: f32 = p.iter().sum();
        // The line straddles two grid columns (cells 15 and 16, each 1/6.25 inked, both at
        // the maximum); widths 2 -> 4 -> 6 columns: 1.9, 3.6, then 5.1 >= MIN_STROKE.
        assert_eq!(total, 6.0 * 32.0);
        assert!(p.iter().all(|&v| (0.0..=16.0).contains(&v)));
    }

    #[test]
    fn blank_or_faint_canvases_have_no_ink() {
        assert_eq!(run(50, 50, &[255; 2500]), Err(NoInk));
        assert_eq!(run(50, 50, &[0; 2500]), Err(NoInk));
        let faint = canvas(50, 50, 200, 150, &[(10, 10, 40, 40)]);
        assert_eq!(run(50, 50, &faint), Err(NoInk));
        assert_eq!(run(0, 0, &[]), Err(NoInk));
    }

    #[test]
    fn tiny_images_work() {
        // 1x1 and single-row images: the "ring" is the whole image, so no ink.
        assert_eq!(run(1, 1, &[0]), Err(NoInk));
        // A 3x3 image with a dark centre.
        let p = run(3, 3, &[255, 255, 255, 255, 0, 255, 255, 255, 255]).unwrap();
        assert_eq!(p.iter().sum::<f32>(), 1024.0); // the square is the one pixel: all on
    }

    #[test]
    fn stroke_width_and_dilation() {
        let mut bitmap = vec![false; GRID * GRID];
        for y in 0..GRID {
            for x in 10..14 {
                bitmap[y * GRID + x] = true;
            }
        }
        // 4 wide, 32 long: area 128, perimeter 2*32 + 2*4 = 72.
        assert!((stroke_width(&bitmap) - 256.0 / 72.0).abs() < 1e-12);
        let wider = dilate(&bitmap);
        assert_eq!(wider.iter().filter(|&&b| b).count(), 6 * 32);
        assert_eq!(stroke_width(&vec![false; GRID * GRID]), 0.0);
    }

    #[test]
    fn area_weights_split_pixels_exactly() {
        // 64 pixels into 32 cells of 2.
        let w = area_weights(0.0, 2.0, 64);
        assert_eq!(w[0], vec![(0, 1.0), (1, 1.0)]);
        // Cells of 0.5 pixel starting at -1: the first two cells are outside the image.
        let w = area_weights(-1.0, 0.5, 10);
        assert!(w[0].is_empty() && w[1].is_empty());
        assert_eq!(w[2], vec![(0, 0.5)]);
        // Every pixel inside the square is fully shared out.
        let w = area_weights(3.25, 1.3, 100);
        let mut total = vec![0.0; 100];
        for cell in &w {
            for &(p, weight) in cell {
                total[p] += weight;
            }
        }
        assert!((total[10] - 1.0).abs() < 1e-12 && total[2] == 0.0);
    }
}
