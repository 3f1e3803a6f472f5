//! JSON-lines files: one record a line, as `rewind gen --out` writes them.

use std::io::BufRead;
use std::path::Path;

use crate::{ConnectorError, Result};

/// Calls `f` with each non-empty line of `path`.
pub fn for_each_line(path: &Path, mut f: impl FnMut(&str) -> Result<()>) -> Result<()> {
    let file_err = |source| ConnectorError::File {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(file_err)?;
    for line in std::io::BufReader::new(file).lines() {
        let line = line.map_err(file_err)?;
        if !line.trim().is_empty() {
            f(&line)?;
        }
    }
    Ok(())
}

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

#[cfg(test)]
mod tests {
    use super::*;

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
