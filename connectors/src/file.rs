//! JSON-lines files: one record a line, as `rewind gen --out` writes them.
//!
//! A file is also a log in its own right ([`FileSource`]): one partition whose offset `N` is
//! the file's line `N + 1`. Reading it straight from disk keeps every line, however large the
//! file; an in-process Kafka cluster would keep only its newest few MiB.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::kafka::{Polled, RecordRef};
use crate::{ConnectorError, Result};

/// Calls `f` with the number (from 1) and the bytes of each non-blank line of `path`, whatever
/// its encoding: a line that is not UTF-8 is a bad record for the pipeline to judge, not a
/// reason to stop reading. The line ending (`\n` or `\r\n`) is not part of the line.
pub fn for_each_line_bytes(path: &Path, mut f: impl FnMut(u64, &[u8]) -> Result<()>) -> Result<()> {
    let file_err = |source| ConnectorError::File {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(file_err)?;
    let mut reader = std::io::BufReader::new(file);
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(file_err)? == 0 {
            return Ok(());
        }
        number += 1;
        let text = match line.strip_suffix(b"\n") {
            Some(text) => text.strip_suffix(b"\r").unwrap_or(text),
            None => &line,
        };
        if !text.trim_ascii().is_empty() {
            f(number, text)?;
        }
    }
}

/// How many lines `path` holds: the end offset of its log. A last line without a newline
/// counts.
pub fn count_lines(path: &Path) -> Result<u64> {
    let file_err = |source| ConnectorError::File {
        path: path.display().to_string(),
        source,
    };
    let mut file = File::open(path).map_err(file_err)?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut lines, mut last) = (0u64, b'\n');
    loop {
        let n = file.read(&mut buf).map_err(file_err)?;
        if n == 0 {
            break;
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        last = buf[n - 1];
    }
    Ok(lines + u64::from(last != b'\n'))
}

/// A JSON-lines file read as a one-partition log, from its first line to its end.
///
/// # Constraints
/// - Every line is handed out, as its raw bytes: a line that is not UTF-8 or not JSON is the
///   caller's to judge (a dead letter), never a reason to stop reading.
/// - Blank lines are not records, but keep their offset, so offsets stay line numbers.
/// - A line longer than `max_record_bytes` is handed out cut to `max_record_bytes + 1`
///   bytes (so its size is visibly over the limit) and the rest of it skipped without
///   being held in memory.
pub struct FileSource {
    path: PathBuf,
    topic: String,
    reader: BufReader<File>,
    next_offset: u64,
    max_record_bytes: usize,
    line: Vec<u8>,
}

impl FileSource {
    pub fn open(path: &Path, topic: &str, max_record_bytes: usize) -> Result<FileSource> {
        let file = File::open(path).map_err(|source| ConnectorError::File {
            path: path.display().to_string(),
            source,
        })?;
        Ok(FileSource {
            path: path.to_path_buf(),
            topic: topic.to_string(),
            reader: BufReader::with_capacity(1 << 20, file),
            next_offset: 0,
            max_record_bytes,
            line: Vec::new(),
        })
    }

    /// Hands up to `max` records to `f`; at the end of the file, [`Polled::End`] instead.
    /// Returns the number of records handed out.
    pub fn drain(&mut self, max: usize, mut f: impl FnMut(Polled<'_>)) -> Result<usize> {
        let mut count = 0;
        while count < max {
            if !self.read_line()? {
                f(Polled::End { partition: 0 });
                break;
            }
            let offset = self.next_offset;
            self.next_offset += 1;
            if self.line.trim_ascii().is_empty() {
                continue;
            }
            f(Polled::Record(RecordRef {
                topic: &self.topic,
                partition: 0,
                offset,
                timestamp_ms: None,
                key: None,
                payload: Some(&self.line),
            }));
            count += 1;
        }
        Ok(count)
    }

    /// Reads the next line into `self.line`, without its line ending; false at the end.
    fn read_line(&mut self) -> Result<bool> {
        self.line.clear();
        let cap = self.max_record_bytes + 1;
        let mut any = false;
        loop {
            let buf = self
                .reader
                .fill_buf()
                .map_err(|source| ConnectorError::File {
                    path: self.path.display().to_string(),
                    source,
                })?;
            if buf.is_empty() {
                break;
            }
            any = true;
            let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (&buf[..i], i + 1),
                None => (buf, buf.len()),
            };
            let room = cap.saturating_sub(self.line.len());
            self.line.extend_from_slice(&chunk[..chunk.len().min(room)]);
            let newline = done > chunk.len();
            self.reader.consume(done);
            if newline {
                break;
            }
        }
        if self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        Ok(any)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn records(content: &[u8], max_record_bytes: usize) -> Vec<(u64, Vec<u8>)> {
        let mut file = tempfile_in_target();
        file.1.write_all(content).unwrap();
        let mut source = FileSource::open(&file.0, "t", max_record_bytes).unwrap();
        let mut out = Vec::new();
        let mut ended = false;
        while !ended {
            source
                .drain(2, |p| match p {
                    Polled::Record(r) => out.push((r.offset, r.payload.unwrap().to_vec())),
                    Polled::End { .. } => ended = true,
                })
                .unwrap();
        }
        assert_eq!(count_lines(&file.0).unwrap(), source.next_offset);
        std::fs::remove_file(&file.0).unwrap();
        out
    }

    fn tempfile_in_target() -> (PathBuf, File) {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "rewind-file-source-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let file = File::create(&path).unwrap();
        (path, file)
    }

    #[test]
    fn every_line_is_a_record_at_its_line_number() {
        let got = records(b"a\n\nb\r\n  \nc", 100);
        assert_eq!(
            got,
            vec![(0, b"a".to_vec()), (2, b"b".to_vec()), (4, b"c".to_vec())]
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_are_handed_out_as_they_are() {
        let got = records(b"{\"a\":1}\n\xff\xfe\n{\"b\":2}\n", 100);
        assert_eq!(got.len(), 3);
        assert_eq!(got[1], (1, vec![0xff, 0xfe]));
    }

    #[test]
    fn an_oversized_line_is_cut_just_past_the_limit_and_the_next_line_survives() {
        let mut content = vec![b'x'; 10_000];
        content.extend_from_slice(b"\nok\n");
        let got = records(&content, 64);
        assert_eq!(got[0].1.len(), 65);
        assert_eq!(got[1], (1, b"ok".to_vec()));
    }

    #[test]
    fn byte_lines_keep_what_is_not_utf8_and_skip_blank_lines() {
        let path = std::env::temp_dir().join(format!("rewind-lines-{}", std::process::id()));
        std::fs::write(&path, b"one\r\n\n  \nt\xffo\nthree").unwrap();
        let mut seen = Vec::new();
        for_each_line_bytes(&path, |n, line| {
            seen.push((n, line.to_vec()));
            Ok(())
        })
        .unwrap();
        std::fs::remove_file(&path).unwrap();
        let want = [
            (1, b"one".to_vec()),
            (4, b"t\xffo".to_vec()),
            (5, b"three".to_vec()),
        ];
        assert_eq!(seen, want);
    }
}
