//! `dispatch generate-logo IMAGE`: braille art for the header from a PNG (`core::brand`), printed,
//! and with `--env-file` kept as `NEXT_PUBLIC_BRAND_BRAILLE` in that file (the server reads `.env`
//! from its working directory).

use dispatch_core::brand::{BrailleOptions, GrayAlpha, braille};
use dispatch_core::{Error, Result};
use std::path::Path;

/// Decodes a PNG of any color type and bit depth to 8-bit gray + alpha.
pub fn read_png(path: &Path) -> Result<(usize, usize, Vec<[u8; 2]>)> {
    let file = std::fs::File::open(path).map_err(|e| {
        Error::invalid("image", format!("cannot open {}", path.display())).with_source(e)
    })?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let bad = |e: png::DecodingError| {
        Error::invalid(
            "image",
            format!("{} is not a PNG image this can read", path.display()),
        )
        .with_source(e)
    };
    let mut reader = decoder.read_info().map_err(bad)?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).map_err(bad)?;
    let (w, h) = (info.width as usize, info.height as usize);
    let bytes = &buf[..info.buffer_size()];
    let channels = info.color_type.samples();
    if w == 0 || h == 0 || bytes.len() < w * h * channels {
        return Err(Error::invalid("image", "the image is empty"));
    }
    let luma = |r: u8, g: u8, b: u8| {
        (0.299 * f64::from(r) + 0.587 * f64::from(g) + 0.114 * f64::from(b)).round() as u8
    };
    let px = bytes
        .chunks_exact(channels)
        .map(|p| match p {
            [g] => [*g, 255],
            [g, a] => [*g, *a],
            [r, g, b] => [luma(*r, *g, *b), 255],
            [r, g, b, a] => [luma(*r, *g, *b), *a],
            _ => [255, 0],
        })
        .collect();
    Ok((w, h, px))
}

pub fn generate(
    image: &Path,
    opts: BrailleOptions,
    preview: bool,
    env_file: Option<&Path>,
) -> Result<String> {
    if opts.width == 0 || opts.width > 200 {
        return Err(Error::invalid(
            "width",
            "--width must be from 1 to 200 characters",
        ));
    }
    let (width, height, pixels) = read_png(image)?;
    let art = braille(
        &GrayAlpha {
            width,
            height,
            pixels: &pixels,
        },
        opts,
    );
    if art.is_empty() {
        return Err(Error::invalid(
            "threshold",
            "no pixel is darker than the threshold: try --invert or another --threshold",
        ));
    }
    let line = format!("NEXT_PUBLIC_BRAND_BRAILLE={}", art.replace('\n', "\\n"));
    let mut out = format!("{art}\n");
    if !preview {
        match env_file {
            Some(path) => {
                let old = std::fs::read_to_string(path).unwrap_or_default();
                let mut kept: Vec<&str> = old
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("NEXT_PUBLIC_BRAND_BRAILLE="))
                    .collect();
                kept.push(&line);
                std::fs::write(path, kept.join("\n") + "\n").map_err(|e| {
                    Error::invalid("env-file", format!("cannot write {}", path.display()))
                        .with_source(e)
                })?;
                out.push_str(&format!(
                    "\nwritten to {} (restart the server to show it)\n",
                    path.display()
                ));
            }
            None => out.push_str(&format!("\n{line}\n")),
        }
    }
    Ok(out)
}
