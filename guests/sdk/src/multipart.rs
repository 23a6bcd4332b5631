//! A small `multipart/form-data` parser (RFC 7578), enough for HTML forms and
//! `curl -F field=@file`: find a part by field name and borrow its bytes.
//!
//! ```
//! use edgenn_guest::multipart;
//!
//! let content_type = "multipart/form-data; boundary=XyZ";
//! let body = b"--XyZ\r\n\
//!     Content-Disposition: form-data; name=\"image\"; filename=\"cat.png\"\r\n\
//!     Content-Type: image/png\r\n\
//!     \r\n\
//!     PNGDATA\r\n\
//!     --XyZ--\r\n";
//! let part = multipart::find(body, content_type, "image").unwrap().unwrap();
//! assert_eq!(part.data, b"PNGDATA");
//! assert_eq!(part.content_type.as_deref(), Some("image/png"));
//! assert_eq!(part.filename.as_deref(), Some("cat.png"));
//! ```

/// One part of a multipart body; `data` borrows from the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part<'a> {
    /// The form field name (`Content-Disposition: form-data; name="..."`).
    pub name: Option<String>,
    /// The uploaded file's name, if the part is a file.
    pub filename: Option<String>,
    /// The part's `Content-Type`, if given.
    pub content_type: Option<String>,
    /// The part's content.
    pub data: &'a [u8],
}

/// Why a multipart body could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    /// The content type is not `multipart/form-data` (or `multipart/*`).
    #[error("the body is not multipart/form-data")]
    NotMultipart,
    /// The content type has no usable `boundary` parameter.
    #[error("multipart content type without a valid boundary parameter")]
    NoBoundary,
    /// The body does not follow the multipart syntax.
    #[error("malformed multipart body: {0}")]
    Malformed(&'static str),
}

/// At most this many parts are parsed: a body of thousands of tiny parts is an attack, not a
/// form.
const MAX_PARTS: usize = 1000;
/// At most this many header lines per part.
const MAX_PART_HEADERS: usize = 32;

/// The `boundary` parameter of a `multipart/*` content type.
pub fn boundary(content_type: &str) -> Result<String, MultipartError> {
    let mut pieces = content_type.split(';');
    let essence = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
    if !essence.starts_with("multipart/") {
        return Err(MultipartError::NotMultipart);
    }
    let params = pieces.collect::<Vec<_>>().join(";");
    let boundary = param(&params, "boundary").ok_or(MultipartError::NoBoundary)?;
    // RFC 2046: 1 to 70 characters.
    if boundary.is_empty() || boundary.len() > 70 || boundary.contains(['\r', '\n']) {
        return Err(MultipartError::NoBoundary);
    }
    Ok(boundary)
}

/// All parts of a multipart `body` whose `Content-Type` header is `content_type`.
pub fn parse<'a>(body: &'a [u8], content_type: &str) -> Result<Vec<Part<'a>>, MultipartError> {
    let boundary = boundary(content_type)?;
    let mut delimiter = Vec::with_capacity(boundary.len() + 3);
    delimiter.extend_from_slice(b"\n--");
    delimiter.extend_from_slice(boundary.as_bytes());
    // The first delimiter may start the body (no preceding line break).
    let dash_boundary = &delimiter[1..];
    let mut pos = if body.starts_with(dash_boundary) && is_delimiter_end(body, dash_boundary.len())
    {
        0
    } else {
        find_delimiter(body, &delimiter, 0).ok_or(MultipartError::Malformed("no boundary found"))?
            + 1
    };

    let mut parts = Vec::new();
    loop {
        let mut i = pos + dash_boundary.len();
        if body[i..].starts_with(b"--") {
            return Ok(parts); // close delimiter; the epilogue is ignored
        }
        if parts.len() == MAX_PARTS {
            return Err(MultipartError::Malformed("too many parts"));
        }
        // Transport padding, then the end of the delimiter line.
        while matches!(body.get(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        i = skip_line_end(body, i).ok_or(MultipartError::Malformed("bad delimiter line"))?;

        let mut part = Part {
            name: None,
            filename: None,
            content_type: None,
            data: &[],
        };
        let mut headers = 0;
        loop {
            let line_end = find_bytes(body, b"\n", i)
                .ok_or(MultipartError::Malformed("truncated part headers"))?;
            let line = trim_cr(&body[i..line_end]);
            i = line_end + 1;
            if line.is_empty() {
                break;
            }
            headers += 1;
            if headers > MAX_PART_HEADERS {
                return Err(MultipartError::Malformed("too many part headers"));
            }
            let line = String::from_utf8_lossy(line);
            let Some((name, value)) = line.split_once(':') else {
                return Err(MultipartError::Malformed("part header without ':'"));
            };
            let value = value.trim();
            if name.trim().eq_ignore_ascii_case("content-disposition") {
                let params = value.split_once(';').map_or("", |(_, p)| p);
                part.name = param(params, "name");
                part.filename = param(params, "filename");
            } else if name.trim().eq_ignore_ascii_case("content-type") {
                part.content_type = Some(value.to_owned());
            }
        }

        let next = find_delimiter(body, &delimiter, i).ok_or(MultipartError::Malformed(
            "truncated body (no closing boundary)",
        ))?;
        // The line break before the delimiter belongs to it, not to the content.
        let end = if next > i && body[next - 1] == b'\r' {
            next - 1
        } else {
            next
        };
        part.data = &body[i.min(end)..end];
        parts.push(part);
        pos = next + 1;
    }
}

/// The first part named `name` (`Ok(None)` if there is none).
pub fn find<'a>(
    body: &'a [u8],
    content_type: &str,
    name: &str,
) -> Result<Option<Part<'a>>, MultipartError> {
    Ok(parse(body, content_type)?
        .into_iter()
        .find(|p| p.name.as_deref() == Some(name)))
}

/// Position of `delimiter` (`\n--boundary`) at or after `from`, where it really ends a line:
/// followed by `--`, padding or a line break (the boundary may prefix other text).
fn find_delimiter(body: &[u8], delimiter: &[u8], mut from: usize) -> Option<usize> {
    loop {
        let at = find_bytes(body, delimiter, from)?;
        if is_delimiter_end(body, at + delimiter.len()) {
            return Some(at);
        }
        from = at + 1;
    }
}

fn is_delimiter_end(body: &[u8], at: usize) -> bool {
    matches!(
        body.get(at..at + 2),
        Some([b'-', b'-'] | [b'\r', b'\n'] | [b'\n', _] | [b' ' | b'\t', _])
    ) || matches!(body.get(at), Some(b'\n'))
}

fn skip_line_end(body: &[u8], i: usize) -> Option<usize> {
    if body[i..].starts_with(b"\r\n") {
        Some(i + 2)
    } else if body[i..].starts_with(b"\n") {
        Some(i + 1)
    } else {
        None
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Finds `needle` in `haystack[from..]`: scans for its first byte, then compares (fast enough
/// for megabytes of image data, where the first byte is rare).
fn find_bytes(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let mut i = from;
    while i + needle.len() <= haystack.len() {
        let offset = haystack[i..=haystack.len() - needle.len()]
            .iter()
            .position(|&b| b == first)?;
        i += offset;
        if &haystack[i + 1..i + needle.len()] == rest {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// The value of parameter `name` in `; a=1; b="two"` (quoted strings unescaped).
fn param(params: &str, name: &str) -> Option<String> {
    let mut rest = params;
    loop {
        rest = rest.trim_start_matches([';', ' ', '\t']);
        if rest.is_empty() {
            return None;
        }
        let eq = rest.find('=')?;
        let key = rest[..eq].trim();
        let after = rest[eq + 1..].trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((idx, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = idx + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end.min(quoted.len())..])
        } else {
            let end = after.find(';').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        if key.eq_ignore_ascii_case(name) {
            return Some(value);
        }
        rest = remaining;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CT: &str = "multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW";

    fn form() -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(b"preamble to ignore\r\n");
        body.extend_from_slice(b"------WebKitFormBoundary7MA4YWxkTrZu0gW\r\n");
        body.extend_from_slice(b"Content-Disposition: form-data; name=\"k\"\r\n\r\n3\r\n");
        body.extend_from_slice(b"------WebKitFormBoundary7MA4YWxkTrZu0gW\r\n");
        body.extend_from_slice(
            b"content-disposition: form-data; name=\"image\"; filename=\"a \\\"b\\\".jpg\"\r\n",
        );
        body.extend_from_slice(b"Content-Type: image/jpeg\r\n\r\n");
        // Binary content with CR/LF and a boundary look-alike inside.
        body.extend_from_slice(b"\xff\xd8\r\n------WebKitFormBoundary7MA4YWxkTrZu0gWX\r\n\x00\xff");
        body.extend_from_slice(b"\r\n------WebKitFormBoundary7MA4YWxkTrZu0gW--\r\nepilogue");
        body
    }

    #[test]
    fn parses_fields_and_files() {
        let body = form();
        let parts = parse(&body, CT).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name.as_deref(), Some("k"));
        assert_eq!(parts[0].data, b"3");
        assert_eq!(parts[0].content_type, None);
        let image = find(&body, CT, "image").unwrap().unwrap();
        assert_eq!(image.filename.as_deref(), Some("a \"b\".jpg"));
        assert_eq!(image.content_type.as_deref(), Some("image/jpeg"));
        assert_eq!(
            image.data,
            b"\xff\xd8\r\n------WebKitFormBoundary7MA4YWxkTrZu0gWX\r\n\x00\xff"
        );
        assert_eq!(find(&body, CT, "missing").unwrap(), None);
    }

    #[test]
    fn bare_lf_and_quoted_boundary_and_empty_part() {
        let body = b"--b\nContent-Disposition: form-data; name=x\n\n\n--b\n\
            Content-Disposition: form-data; name=\"y\"\n\nyy\n--b--";
        let parts = parse(body, "Multipart/Form-Data; charset=utf-8; boundary=\"b\"").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name.as_deref(), Some("x"));
        assert_eq!(parts[0].data, b"");
        assert_eq!(parts[1].data, b"yy");
    }

    #[test]
    fn errors() {
        assert_eq!(parse(b"", "image/png"), Err(MultipartError::NotMultipart));
        assert_eq!(
            parse(b"", "multipart/form-data"),
            Err(MultipartError::NoBoundary)
        );
        assert_eq!(
            parse(b"", "multipart/form-data; boundary="),
            Err(MultipartError::NoBoundary)
        );
        assert!(matches!(
            parse(b"no delimiter", "multipart/form-data; boundary=b"),
            Err(MultipartError::Malformed(_))
        ));
        // Truncated: no closing delimiter.
        let truncated = b"--b\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\ndata";
        assert_eq!(
            parse(truncated, "multipart/form-data; boundary=b"),
            Err(MultipartError::Malformed(
                "truncated body (no closing boundary)"
            ))
        );
        let no_headers_end = b"--b\r\nContent-Disposition: form-data";
        assert!(parse(no_headers_end, "multipart/form-data; boundary=b").is_err());
        let bad_header = b"--b\r\nnonsense\r\n\r\nx\r\n--b--";
        assert!(parse(bad_header, "multipart/form-data; boundary=b").is_err());
        // Nothing at all between the delimiters is fine: no parts.
        assert_eq!(
            parse(b"--b--\r\n", "multipart/form-data; boundary=b"),
            Ok(vec![])
        );
    }

    #[test]
    fn params() {
        assert_eq!(param("; name=\"a;b\"; x=1", "name").as_deref(), Some("a;b"));
        assert_eq!(param("; name=\"a;b\"; x=1", "x").as_deref(), Some("1"));
        assert_eq!(param(" NAME = v ", "name").as_deref(), Some("v"));
        assert_eq!(
            param("; filename=\"unterminated", "filename").as_deref(),
            Some("unterminated")
        );
        assert_eq!(param("", "name"), None);
        assert_eq!(param("; name", "name"), None);
    }

    #[test]
    fn finds_bytes() {
        assert_eq!(find_bytes(b"abcabd", b"abd", 0), Some(3));
        assert_eq!(find_bytes(b"abcabd", b"abd", 4), None);
        assert_eq!(find_bytes(b"ab", b"abc", 0), None);
        assert_eq!(find_bytes(b"", b"a", 0), None);
    }
}

/// A body from any client: parsing never panics, and every part it finds lies inside the
/// body, in order.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Bytes rich in what the parser looks for: line breaks, dashes, the boundary's letters.
    fn body() -> impl Strategy<Value = Vec<u8>> {
        let pieces = prop_oneof![
            Just(b"--XyZ".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"--".to_vec()),
            Just(b"Content-Disposition: form-data; name=\"image\"".to_vec()),
            Just(b"content-type: image/png".to_vec()),
            prop::collection::vec(any::<u8>(), 0..8),
        ];
        prop::collection::vec(pieces, 0..40).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

        #[test]
        fn any_body_parses_or_is_refused_and_parts_lie_inside_it(
            body in body(), content_type in "multipart/form-data; boundary=(XyZ|\"XyZ\"|[ -~]{0,8})") {
            if let Ok(parts) = parse(&body, &content_type) {
                let range = body.as_ptr_range();
                let mut last = range.start;
                for part in parts {
                    let here = part.data.as_ptr_range();
                    prop_assert!(range.start <= here.start && here.end <= range.end);
                    prop_assert!(last <= here.start, "parts in order");
                    last = here.end;
                }
            }
        }
    }
}
