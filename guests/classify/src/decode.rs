//! Image decoding inside the guest, with limits: the dimensions are read from the header and
//! checked before any pixel memory is allocated (decompression bombs), and truncated JPEGs are
//! refused instead of being silently padded with grey by the lenient decoder.

use std::io::Cursor;

use image::{DynamicImage, ImageError, ImageFormat, ImageReader, Limits};

/// Largest accepted width or height.
pub const MAX_SIDE: u32 = 8000;
/// Largest accepted number of pixels (40 megapixels: 120 MB as RGB, within the app's memory).
pub const MAX_PIXELS: u64 = 40_000_000;

impl From<DecodeError> for edgenn_guest::HttpError {
    fn from(error: DecodeError) -> Self {
        edgenn_guest::HttpError::new(error.status, error.message)
    }
}

/// A decoding failure, with the HTTP status it deserves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub status: u16,
    pub message: String,
}

impl DecodeError {
    fn new(status: u16, message: impl Into<String>) -> DecodeError {
        DecodeError {
            status,
            message: message.into(),
        }
    }
}

/// Decodes a JPEG, PNG or WebP image (the format is sniffed from the bytes, not taken from
/// the content type).
pub fn decode(bytes: &[u8]) -> Result<DynamicImage, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::new(
            400,
            "empty body: send a JPEG, PNG or WebP image as the body or as the form field \"image\"",
        ));
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| DecodeError::new(400, format!("cannot read the image: {e}")))?;
    let format = match reader.format() {
        Some(f @ (ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP)) => f,
        Some(other) => {
            return Err(DecodeError::new(
                415,
                format!(
                    "unsupported image format {}: send JPEG, PNG or WebP",
                    other.extensions_str().first().unwrap_or(&"?")
                ),
            ));
        }
        None => {
            return Err(DecodeError::new(
                415,
                "the body is not a JPEG, PNG or WebP image",
            ));
        }
    };
    let name = format_name(format);

    // Header only: cheap, and tells us whether decoding would be affordable. PNG's is read
    // directly: the png crate refuses huge images before telling their size (on wasm32, where
    // the pixel buffer size overflows), and the size makes the better error message.
    let (width, height) = match png_size(bytes) {
        Some(size) => size,
        None => {
            let mut header = ImageReader::with_format(Cursor::new(bytes), format);
            header.no_limits();
            header.into_dimensions().map_err(|e| classify(e, name))?
        }
    };
    check_size(width, height)?;
    if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err(DecodeError::new(
            400,
            "truncated or corrupt JPEG image (no end-of-image marker after its data)",
        ));
    }

    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    // Room for the decoded pixels (up to RGBA at the largest size) but no more.
    limits.max_alloc = Some(MAX_PIXELS * 4 + (16 << 20));
    reader.limits(limits);
    reader.decode().map_err(|e| classify(e, name))
}

/// Width and height from a PNG's IHDR chunk, which must come first.
fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") || bytes.get(12..16)? != b"IHDR" {
        return None;
    }
    let be = |at: usize| Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    Some((be(16)?, be(20)?))
}

fn check_size(width: u32, height: u32) -> Result<(), DecodeError> {
    let pixels = u64::from(width) * u64::from(height);
    if width > MAX_SIDE || height > MAX_SIDE || pixels > MAX_PIXELS {
        return Err(DecodeError::new(
            413,
            format!(
                "image too large: {width}x{height} pixels (at most {MAX_SIDE}x{MAX_SIDE} and {} megapixels)",
                MAX_PIXELS / 1_000_000
            ),
        ));
    }
    if pixels == 0 {
        return Err(DecodeError::new(400, "the image has no pixels (0x0)"));
    }
    Ok(())
}

fn format_name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Jpeg => "JPEG",
        ImageFormat::Png => "PNG",
        _ => "WebP",
    }
}

fn classify(e: ImageError, name: &str) -> DecodeError {
    match e {
        ImageError::Limits(e) => DecodeError::new(413, format!("image too large to decode: {e}")),
        ImageError::Unsupported(e) => {
            DecodeError::new(415, format!("unsupported {name} image: {e}"))
        }
        ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            DecodeError::new(400, format!("truncated {name} image"))
        }
        e => DecodeError::new(400, format!("corrupt {name} image: {e}")),
    }
}

/// Whether a JPEG's marker structure reaches its end-of-image marker: walks the
/// length-prefixed segments and skips each scan's entropy-coded data (where 0xFF is always
/// followed by 0x00 or a restart marker). Bytes after the end marker are allowed (some
/// cameras append data); stray bytes between segments are tolerated as decoders do.
pub fn jpeg_is_complete(data: &[u8]) -> bool {
    if !data.starts_with(&[0xFF, 0xD8]) {
        return false;
    }
    let mut i = 2;
    loop {
        // Find the next marker: 0xFF (possibly repeated as fill) then a marker code.
        while i < data.len() && data[i] != 0xFF {
            i += 1;
        }
        while i < data.len() && data[i] == 0xFF {
            i += 1;
        }
        let Some(&marker) = data.get(i) else {
            return false;
        };
        i += 1;
        match marker {
            0xD9 => return true,                   // EOI
            0x00 | 0x01 | 0xD0..=0xD7 => continue, // stuffing, TEM, RSTn: no length
            _ => {
                let Some(len) = data.get(i..i + 2) else {
                    return false;
                };
                let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
                if len < 2 || i + len > data.len() {
                    return false;
                }
                i += len;
                if marker == 0xDA {
                    // SOS: skip the entropy-coded data up to the next real marker.
                    loop {
                        match data.get(i..i + 2) {
                            None => return false,
                            Some([0xFF, next])
                                if *next != 0x00 && !(0xD0..=0xD7).contains(next) =>
                            {
                                break;
                            }
                            Some(_) => i += 1,
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal but structurally valid JPEG skeleton: SOI, APP0, SOS with entropy data
    /// containing stuffed bytes and a restart marker, EOI.
    fn skeleton() -> Vec<u8> {
        let mut d = vec![0xFF, 0xD8];
        d.extend_from_slice(&[0xFF, 0xE0, 0x00, 0x04, 0xAA, 0xBB]); // APP0, 2 bytes payload
        d.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x03, 0x01]); // SOS
        d.extend_from_slice(&[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56]); // data, stuffing, RST0
        d.extend_from_slice(&[0xFF, 0xD9]); // EOI
        d
    }

    #[test]
    fn complete_jpeg_structure() {
        let full = skeleton();
        assert!(jpeg_is_complete(&full));
        let mut trailing = full.clone();
        trailing.extend_from_slice(b"appended video data \xFF\xD8");
        assert!(jpeg_is_complete(&trailing));
        for cut in 0..full.len() - 1 {
            assert!(!jpeg_is_complete(&full[..cut]), "cut at {cut}");
        }
        assert!(!jpeg_is_complete(b"\x89PNG"));
    }

    #[test]
    fn refuses_empty_unknown_and_huge() {
        assert_eq!(decode(b"").unwrap_err().status, 400);
        assert_eq!(decode(b"hello, not an image").unwrap_err().status, 415);
        assert_eq!(
            decode(b"GIF89a\x01\x00\x01\x00\x00\x00\x00")
                .unwrap_err()
                .status,
            415
        );
        assert_eq!(check_size(8001, 10).unwrap_err().status, 413);
        assert_eq!(check_size(8000, 8000).unwrap_err().status, 413); // 64 MP
        assert!(check_size(8000, 5000).is_ok());
        assert_eq!(check_size(0, 5).unwrap_err().status, 400);
    }

    #[test]
    fn png_bomb_is_refused_from_its_header() {
        // A PNG header claiming 100000x100000 pixels; no pixel data at all.
        let mut png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
        png.extend_from_slice(&100_000u32.to_be_bytes());
        png.extend_from_slice(&100_000u32.to_be_bytes());
        png.extend_from_slice(&[8, 2, 0, 0, 0]);
        let crc = crc32(&png[12..]);
        png.extend_from_slice(&crc.to_be_bytes());
        // The decoder reads up to the first IDAT before answering the dimensions.
        for (kind, data) in [(&b"IDAT"[..], &b"\x78\x9c"[..]), (b"IEND", b"")] {
            let start = png.len();
            png.extend_from_slice(&(data.len() as u32).to_be_bytes());
            png.extend_from_slice(kind);
            png.extend_from_slice(data);
            let crc = crc32(&png[start + 4..]);
            png.extend_from_slice(&crc.to_be_bytes());
        }
        let err = decode(&png).unwrap_err();
        assert_eq!(err.status, 413, "{err:?}");
        assert!(err.message.contains("100000x100000"), "{err:?}");
    }

    #[test]
    fn png_size_from_ihdr() {
        let mut png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
        png.extend_from_slice(&451u32.to_be_bytes());
        png.extend_from_slice(&300u32.to_be_bytes());
        assert_eq!(png_size(&png), Some((451, 300)));
        assert_eq!(png_size(&png[..22]), None);
        assert_eq!(png_size(b"\xff\xd8\xff"), None);
    }

    #[test]
    fn decodes_a_tiny_png_and_refuses_it_truncated() {
        let mut png = Vec::new();
        let img = image::RgbImage::from_pixel(3, 2, image::Rgb([10, 20, 30]));
        img.write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
            .unwrap();
        let decoded = decode(&png).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (3, 2));
        let err = decode(&png[..png.len() - 20]).unwrap_err();
        assert_eq!(err.status, 400, "{err:?}");
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
}
