//! Gzip NDJSON batches, compressed as records arrive so memory holds only compressed bytes.

use std::io::Write;

use chrono::NaiveDate;
use flate2::Compression;
use flate2::write::GzEncoder;

use crate::seen::SeenEntry;

/// One object being built: gzip NDJSON lines for one partition date.
pub struct Batch {
    pub date: NaiveDate,
    encoder: GzEncoder<Vec<u8>>,
    uncompressed_bytes: usize,
    records: usize,
    /// Versions in this batch; committed to the dedup memory once the object is stored.
    pub entries: Vec<SeenEntry>,
    /// Start of the earliest slice that contributed a record: the state's cursor must not pass it
    /// until this batch is stored.
    pub lowest_slice_start: chrono::DateTime<chrono::Utc>,
}

impl Batch {
    pub fn new(date: NaiveDate, slice_start: chrono::DateTime<chrono::Utc>) -> Self {
        Self {
            date,
            encoder: GzEncoder::new(Vec::new(), Compression::new(6)),
            uncompressed_bytes: 0,
            records: 0,
            entries: Vec::new(),
            lowest_slice_start: slice_start,
        }
    }

    /// Appends one line (a newline is added).
    pub fn push_line(
        &mut self,
        line: &str,
        slice_start: chrono::DateTime<chrono::Utc>,
    ) -> std::io::Result<()> {
        self.encoder.write_all(line.as_bytes())?;
        self.encoder.write_all(b"\n")?;
        self.uncompressed_bytes += line.len() + 1;
        self.records += 1;
        if slice_start < self.lowest_slice_start {
            self.lowest_slice_start = slice_start;
        }
        Ok(())
    }

    pub fn uncompressed_bytes(&self) -> usize {
        self.uncompressed_bytes
    }

    pub fn records(&self) -> usize {
        self.records
    }

    /// Finishes the gzip stream and returns the object's bytes.
    pub fn finish(self) -> std::io::Result<(Vec<u8>, Vec<SeenEntry>)> {
        let body = self.encoder.finish()?;
        Ok((body, self.entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use std::io::Read;

    #[test]
    fn produces_gunzippable_ndjson() {
        let start = crate::timeutil::parse_instant("2026-01-01T00:00:00Z").unwrap();
        let mut batch = Batch::new(NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(), start);
        batch.push_line(r#"{"id":"a"}"#, start).unwrap();
        batch.push_line(r#"{"id":"b"}"#, start - chrono::TimeDelta::minutes(1)).unwrap();
        assert_eq!(batch.records(), 2);
        assert_eq!(batch.uncompressed_bytes(), 22);
        assert_eq!(batch.lowest_slice_start, start - chrono::TimeDelta::minutes(1));
        let (body, _) = batch.finish().unwrap();
        let mut text = String::new();
        GzDecoder::new(&body[..]).read_to_string(&mut text).unwrap();
        assert_eq!(text, "{\"id\":\"a\"}\n{\"id\":\"b\"}\n");
    }
}
