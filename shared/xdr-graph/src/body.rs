//! Reading a response body within a size limit, before and after decompression.
//!
//! reqwest's own decompression is off: it would hand over the decompressed stream with no bound
//! on its size, so a small gzip bomb could fill the Lambda's memory. Here the compressed bytes
//! are read up to the limit (refused at once when `Content-Length` says more), then gzip is
//! decoded up to the same limit.

use std::io::Read;

use flate2::read::MultiGzDecoder;
use reqwest::Response;
use reqwest::header::CONTENT_ENCODING;

use crate::upstream_text;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// More than the limit, as sent (`compressed`) or once decoded.
    #[error("the answer is larger than {limit} bytes{}", if *.compressed { "" } else { " once decompressed" })]
    TooLarge { limit: usize, compressed: bool },
    /// Reading the body failed on the way (a dropped connection, a timeout).
    #[error("reading the answer failed: {0}")]
    Transport(#[source] reqwest::Error),
    /// The gzip stream is corrupt or cut short.
    #[error("the gzip-encoded answer is corrupt or cut short: {0}")]
    Corrupt(String),
    /// A `Content-Encoding` the client did not ask for.
    #[error("the answer uses Content-Encoding `{0}`, which was not asked for")]
    Encoding(String),
}

impl BodyError {
    /// Worth another attempt: the same request may well get a whole answer.
    pub fn is_transient(&self) -> bool {
        matches!(self, BodyError::Transport(_) | BodyError::Corrupt(_))
    }
}

/// The body of `response`, decoded, at most `limit` bytes before and after decoding.
pub async fn read_capped(mut response: Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    let encoding = response
        .headers()
        .get(CONTENT_ENCODING)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).trim().to_ascii_lowercase())
        .unwrap_or_default();
    let gzip = match encoding.as_str() {
        "" | "identity" => false,
        "gzip" | "x-gzip" => true,
        other => return Err(BodyError::Encoding(upstream_text::identifier(other))),
    };
    let announced = response.content_length();
    if announced.is_some_and(|length| length > limit as u64) {
        return Err(BodyError::TooLarge { limit, compressed: true });
    }
    let mut raw = Vec::with_capacity(announced.map_or(64 * 1024, |length| length as usize));
    while let Some(chunk) =
        response.chunk().await.map_err(|error| BodyError::Transport(error.without_url()))?
    {
        if raw.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit, compressed: true });
        }
        raw.extend_from_slice(&chunk);
    }
    if gzip { gunzip_capped(&raw, limit) } else { Ok(raw) }
}

/// Decodes gzip (one member or several) into at most `limit` bytes.
pub fn gunzip_capped(compressed: &[u8], limit: usize) -> Result<Vec<u8>, BodyError> {
    // The last member's trailer gives its size mod 2^32: a hint for the first allocation only.
    let hint = compressed
        .len()
        .checked_sub(4)
        .and_then(|at| compressed.get(at..))
        .and_then(|tail| <[u8; 4]>::try_from(tail).ok())
        .map_or(0, |tail| u32::from_le_bytes(tail) as usize);
    let mut decoded = Vec::with_capacity(hint.min(limit).max(compressed.len()).min(limit));
    MultiGzDecoder::new(compressed)
        .take(limit as u64 + 1)
        .read_to_end(&mut decoded)
        .map_err(|error| BodyError::Corrupt(error.to_string()))?;
    if decoded.len() > limit {
        return Err(BodyError::TooLarge { limit, compressed: false });
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::*;

    fn gzip(parts: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for part in parts {
            let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
            encoder.write_all(part).unwrap();
            out.extend(encoder.finish().unwrap());
        }
        out
    }

    #[test]
    fn decodes_one_or_several_members_within_the_limit() {
        let body = gzip(&[br#"{"value":["#, br#"1]}"#]);
        assert_eq!(gunzip_capped(&body, 1024).unwrap(), br#"{"value":[1]}"#);
        assert_eq!(gunzip_capped(&body, 13).unwrap().len(), 13);
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        // 64 MiB of zeros in about 64 KiB: decoding stops one byte past the limit.
        let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            encoder.write_all(&zeros).unwrap();
        }
        let bomb = encoder.finish().unwrap();
        assert!(bomb.len() < 200 * 1024, "{}", bomb.len());
        let error = gunzip_capped(&bomb, 1 << 20).unwrap_err();
        assert!(matches!(error, BodyError::TooLarge { limit, compressed: false } if limit == 1 << 20));
        assert!(!error.is_transient());
        assert!(error.to_string().contains("once decompressed"), "{error}");
    }

    #[test]
    fn corrupt_or_cut_gzip_is_transient() {
        let body = gzip(&[&[b'x'; 4096]]);
        let error = gunzip_capped(&body[..body.len() / 2], 1 << 20).unwrap_err();
        assert!(matches!(error, BodyError::Corrupt(_)) && error.is_transient(), "{error}");
        let error = gunzip_capped(b"not gzip at all", 1 << 20).unwrap_err();
        assert!(matches!(error, BodyError::Corrupt(_)), "{error}");
    }
}
