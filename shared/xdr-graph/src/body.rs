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
    // The last member's trailer: the CRC-32 and the size (mod 2^32) of what it holds.
    let trailer = |from_end: usize| {
        compressed
            .len()
            .checked_sub(from_end)
            .and_then(|at| compressed.get(at..at + 4))
            .and_then(|bytes| <[u8; 4]>::try_from(bytes).ok())
            .map(u32::from_le_bytes)
    };
    let (crc, size) = (trailer(8), trailer(4).map_or(0, |size| size as usize));
    if let Some(decoded) = crc.and_then(|crc| whole_member(compressed, crc, size, limit)) {
        return Ok(decoded);
    }
    let mut decoded = Vec::with_capacity(size.min(limit).max(compressed.len()).min(limit));
    MultiGzDecoder::new(compressed)
        .take(limit as u64 + 1)
        .read_to_end(&mut decoded)
        .map_err(|error| BodyError::Corrupt(error.to_string()))?;
    if decoded.len() > limit {
        return Err(BodyError::TooLarge { limit, compressed: false });
    }
    Ok(decoded)
}

/// The answer decoded by libdeflate in one call, when the trailer's size fits the limit: Graph
/// sends one gzip member, and libdeflate decodes it at several times the streaming decoder's
/// speed (a tenth of a sync's CPU went to inflating pages). libdeflate decodes the first member
/// and checks it against its own trailer; the result is taken only if it also matches the
/// trailer at the end of the body, so a body of several members goes to the streaming decoder
/// (unless every member holds the same bytes, and then the first one holds all there is to read).
/// Anything else (a larger or lying size, corrupt data) goes there too, which bounds and names it.
fn whole_member(compressed: &[u8], crc: u32, size: usize, limit: usize) -> Option<Vec<u8>> {
    if size == 0 || size > limit {
        return None;
    }
    let mut decoded = vec![0; size];
    let written = libdeflater::Decompressor::new().gzip_decompress(compressed, &mut decoded).ok()?;
    (written == size && libdeflater::crc32(&decoded) == crc).then_some(decoded)
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
    fn one_member_decodes_in_one_call_and_several_still_decode_whole() {
        let page = br#"{"value":[{"id":"da1"},{"id":"da2"}]}"#.repeat(200);
        let one = gzip(&[&page]);
        assert_eq!(whole_member(&one, crc_of(&one), page.len(), 1 << 20), Some(page.clone()));
        assert_eq!(gunzip_capped(&one, 1 << 20).unwrap(), page);
        // Two members: the first alone does not match the last trailer, so both are read.
        let (head, tail) = page.split_at(1000);
        let two = gzip(&[head, tail]);
        assert_eq!(whole_member(&two, crc_of(&two), tail.len(), 1 << 20), None);
        assert_eq!(gunzip_capped(&two, 1 << 20).unwrap(), page);
        // A trailer claiming less than the member holds: refused by libdeflate, read in full.
        let mut lying = one.clone();
        let at = lying.len() - 4;
        lying[at..].copy_from_slice(&10u32.to_le_bytes());
        assert_eq!(whole_member(&lying, crc_of(&lying), 10, 1 << 20), None);
    }

    fn crc_of(body: &[u8]) -> u32 {
        u32::from_le_bytes(body[body.len() - 8..body.len() - 4].try_into().unwrap())
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
