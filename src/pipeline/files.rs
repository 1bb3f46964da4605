//! Writing the worker's output files whole: a packager never serves half a
//! part, segment or playlist.

use std::path::Path;

use super::error::RunError;

/// Writes through a temporary file beside `path` (its name plus `.tmp`) and a
/// rename, so a packager never serves a half-written file; a failed write
/// removes the temporary file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    if let Err(e) = std::fs::write(&tmp, bytes) {
        let _ = std::fs::remove_file(&tmp);
        return Err(RunError::Write(tmp, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| RunError::Write(path.to_path_buf(), e))
}
