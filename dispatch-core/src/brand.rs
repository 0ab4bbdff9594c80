//! Braille art for the web UI's header (`dispatch generate-logo`, the original's
//! `generate-logo`): an image scaled to `2 × width` pixels across, each braille cell covering 2×4
//! pixels, a pixel a dot when its gray value is below the threshold (dark = dot), no dithering,
//! trailing blank rows dropped. Unlike the original, transparency is honoured: a pixel is first
//! laid over white, so a transparent background gives no dots.

/// An image as 8-bit gray + alpha, row by row.
pub struct GrayAlpha<'a> {
    pub width: usize,
    pub height: usize,
    /// `width * height` pairs of (gray, alpha).
    pub pixels: &'a [[u8; 2]],
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BrailleOptions {
    /// Braille characters across (each is 2 pixels wide).
    pub width: usize,
    /// Gray values below this are dots.
    pub threshold: u8,
    /// Swap dark and light first.
    pub invert: bool,
}

impl Default for BrailleOptions {
    fn default() -> Self {
        BrailleOptions {
            width: 20,
            threshold: 128,
            invert: false,
        }
    }
}

/// Dot bits of a braille cell by (x, y) within its 2×4 pixels.
const DOTS: [[u32; 4]; 2] = [[0x01, 0x02, 0x04, 0x40], [0x08, 0x10, 0x20, 0x80]];

/// The braille art, lines separated by `\n`.
pub fn braille(img: &GrayAlpha<'_>, opts: BrailleOptions) -> String {
    if img.width == 0 || img.height == 0 || img.pixels.len() < img.width * img.height {
        return String::new();
    }
    let out_w = (opts.width.max(1) * 2).min(img.width.max(1) * 2).max(2);
    // Aspect kept ("fit inside"): rows scale like columns.
    let out_h = ((img.height as f64 * out_w as f64 / img.width as f64).round() as usize).max(1);
    let gray = resample(img, out_w, out_h);
    let dark = |x: usize, y: usize| -> bool {
        if x >= out_w || y >= out_h {
            return false;
        }
        let mut v = gray[y * out_w + x];
        if opts.invert {
            v = 255 - v;
        }
        v < opts.threshold
    };
    let mut lines: Vec<String> = Vec::new();
    for cy in (0..out_h).step_by(4) {
        let mut line = String::new();
        for cx in (0..out_w).step_by(2) {
            let mut bits = 0u32;
            for (dx, column) in DOTS.iter().enumerate() {
                for (dy, bit) in column.iter().enumerate() {
                    if dark(cx + dx, cy + dy) {
                        bits |= bit;
                    }
                }
            }
            line.push(char::from_u32(0x2800 + bits).unwrap_or(' '));
        }
        lines.push(line);
    }
    while lines
        .last()
        .is_some_and(|l| l.chars().all(|c| c == '\u{2800}'))
    {
        lines.pop();
    }
    lines.join("\n")
}

/// Box-filtered gray values of the image laid over white, at `w × h`.
fn resample(img: &GrayAlpha<'_>, w: usize, h: usize) -> Vec<u8> {
    let over_white = |p: [u8; 2]| -> f64 {
        let a = f64::from(p[1]) / 255.0;
        f64::from(p[0]) * a + 255.0 * (1.0 - a)
    };
    let mut out = Vec::with_capacity(w * h);
    for y in 0..h {
        let y0 = y * img.height / h;
        let y1 = ((y + 1) * img.height / h).max(y0 + 1).min(img.height);
        for x in 0..w {
            let x0 = x * img.width / w;
            let x1 = ((x + 1) * img.width / w).max(x0 + 1).min(img.width);
            let (mut sum, mut n) = (0.0, 0.0);
            for sy in y0..y1 {
                for sx in x0..x1 {
                    sum += over_white(img.pixels[sy * img.width + sx]);
                    n += 1.0;
                }
            }
            out.push(if n > 0.0 {
                (sum / n).round() as u8
            } else {
                255
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(w: usize, h: usize, f: impl Fn(usize, usize) -> [u8; 2]) -> Vec<[u8; 2]> {
        (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| f(x, y))
            .collect()
    }

    #[test]
    fn each_dot_has_its_bit() {
        // A 2×4 image with exactly one dark pixel maps to exactly that dot.
        for (x, y, bit) in [
            (0, 0, 0x01),
            (0, 1, 0x02),
            (0, 2, 0x04),
            (1, 0, 0x08),
            (1, 1, 0x10),
            (1, 2, 0x20),
            (0, 3, 0x40),
            (1, 3, 0x80),
        ] {
            let px = image(2, 4, |px, py| {
                if (px, py) == (x, y) {
                    [0, 255]
                } else {
                    [255, 255]
                }
            });
            let art = braille(
                &GrayAlpha {
                    width: 2,
                    height: 4,
                    pixels: &px,
                },
                BrailleOptions {
                    width: 1,
                    ..BrailleOptions::default()
                },
            );
            assert_eq!(
                art,
                char::from_u32(0x2800 + bit).unwrap().to_string(),
                "({x},{y})"
            );
        }
    }

    #[test]
    fn all_dark_is_full_cells_and_invert_empties_them() {
        let px = image(4, 8, |_, _| [0, 255]);
        let img = GrayAlpha {
            width: 4,
            height: 8,
            pixels: &px,
        };
        let opts = BrailleOptions {
            width: 2,
            ..BrailleOptions::default()
        };
        assert_eq!(braille(&img, opts), "⣿⣿\n⣿⣿");
        assert_eq!(
            braille(
                &img,
                BrailleOptions {
                    invert: true,
                    ..opts
                }
            ),
            "",
            "blank rows dropped"
        );
    }

    #[test]
    fn transparency_is_white_not_black() {
        // Black but fully transparent: the original read it as dark; here it is background.
        let px = image(4, 4, |x, _| if x < 2 { [0, 0] } else { [0, 255] });
        let art = braille(
            &GrayAlpha {
                width: 4,
                height: 4,
                pixels: &px,
            },
            BrailleOptions {
                width: 2,
                ..BrailleOptions::default()
            },
        );
        assert_eq!(art, "⠀⣿");
    }

    #[test]
    fn images_are_scaled_to_the_width_with_their_aspect() {
        // 100×50 dark: 20 characters = 40 px across, 20 px down = 5 rows of cells.
        let px = image(100, 50, |_, _| [10, 255]);
        let art = braille(
            &GrayAlpha {
                width: 100,
                height: 50,
                pixels: &px,
            },
            BrailleOptions::default(),
        );
        let lines: Vec<&str> = art.lines().collect();
        assert_eq!(lines.len(), 5);
        assert!(lines.iter().all(|l| l.chars().count() == 20));
        // The bottom half transparent: only the top rows are kept.
        let px = image(100, 50, |_, y| if y < 25 { [10, 255] } else { [10, 0] });
        let art = braille(
            &GrayAlpha {
                width: 100,
                height: 50,
                pixels: &px,
            },
            BrailleOptions::default(),
        );
        assert!(art.lines().count() < 5, "{art}");
        assert_eq!(
            braille(
                &GrayAlpha {
                    width: 0,
                    height: 0,
                    pixels: &[]
                },
                BrailleOptions::default()
            ),
            ""
        );
    }
}
