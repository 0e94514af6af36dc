//! Writing output files whole or not at all.

use std::io::Write;
use std::path::Path;

/// Writes `data` to `path` through a temporary file in the same directory
/// and a rename, so a reader (or a build system after a crash) never sees
/// a half-written file.
pub fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".afterburn-")
        .tempfile_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
