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
