//! Finding and checking the worker's inputs: each `<name>.mp4` in the input
//! folder is live signal `<name>`. A missing, unreadable or non-video file is
//! refused before any pipeline starts, with one line naming the file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gstreamer as gst;
use gstreamer_pbutils as pbutils;

use crate::hls::is_valid_signal_name;

/// How long probing one input may take before it is called unreadable.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// A checked input, ready to be encoded.
#[derive(Debug, Clone)]
pub struct Input {
    /// The live signal's name: the file name without `.mp4`.
    pub signal: String,
    pub path: PathBuf,
    pub has_audio: bool,
    pub duration: Option<Duration>,
    /// Width and height of the first video stream.
    pub size: (u32, u32),
    /// Its frames per second, when the container says.
    pub frame_rate: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("input folder {0} does not exist or is not a folder")]
    NoFolder(PathBuf),
    #[error("cannot read input folder {0}: {1}")]
    ReadFolder(PathBuf, std::io::Error),
    #[error("no inputs: put one or more <signal>.mp4 files in {0}")]
    Empty(PathBuf),
    #[error("input {0} not found")]
    Missing(PathBuf),
    #[error("input {0} cannot be read: {1}")]
    Unreadable(PathBuf, String),
    #[error("input {0} has no video stream")]
    NoVideo(PathBuf),
    #[error("input {0}: '{1}' is not a valid signal name (use letters, digits, '-' and '_', at most 64)")]
    BadName(PathBuf, String),
    #[error("GStreamer failed to start: {0}")]
    Gstreamer(String),
}

/// The `.mp4` files of `folder`, sorted by name; at least one.
pub fn list(folder: &Path) -> Result<Vec<PathBuf>, InputError> {
    let files = mp4_files(folder)?;
    if files.is_empty() {
        return Err(InputError::Empty(folder.to_path_buf()));
    }
    Ok(files)
}

/// The `.mp4` files of `folder`, sorted by name; maybe none.
pub fn mp4_files(folder: &Path) -> Result<Vec<PathBuf>, InputError> {
    if !folder.is_dir() {
        return Err(InputError::NoFolder(folder.to_path_buf()));
    }
    let entries =
        std::fs::read_dir(folder).map_err(|e| InputError::ReadFolder(folder.to_path_buf(), e))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "mp4"))
        .collect();
    files.sort();
    Ok(files)
}

/// The signal an input file feeds: its name without `.mp4`.
pub fn signal_of(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The input file that feeds `signal` in `folder`: `<signal>.mp4`, the
/// inverse of [`signal_of`].
pub fn path_of(folder: &Path, signal: &str) -> PathBuf {
    folder.join(format!("{signal}.mp4"))
}

/// Opens `path` with GStreamer's discoverer and checks it has video.
pub fn probe(path: &Path, timeout: Duration) -> Result<Input, InputError> {
    let signal = signal_of(path);
    if !is_valid_signal_name(&signal) {
        return Err(InputError::BadName(path.to_path_buf(), signal));
    }
    if !path.exists() {
        return Err(InputError::Missing(path.to_path_buf()));
    }
    std::fs::File::open(path)
        .map_err(|e| InputError::Unreadable(path.to_path_buf(), e.to_string()))?;
    let absolute = std::fs::canonicalize(path)
        .map_err(|e| InputError::Unreadable(path.to_path_buf(), e.to_string()))?;
    let uri = glib::filename_to_uri(&absolute, None)
        .map_err(|e| InputError::Unreadable(path.to_path_buf(), e.to_string()))?;
    gst::init().map_err(|e| InputError::Gstreamer(e.to_string()))?;
    let discoverer = pbutils::Discoverer::new(gst::ClockTime::from_nseconds(
        timeout.as_nanos().min(u64::MAX as u128) as u64,
    ))
    .map_err(|e| InputError::Gstreamer(e.to_string()))?;
    let info = discoverer
        .discover_uri(&uri)
        .map_err(|e| InputError::Unreadable(path.to_path_buf(), e.to_string()))?;
    let video = info.video_streams();
    let Some(first_video) = video.first() else {
        return Err(InputError::NoVideo(path.to_path_buf()));
    };
    Ok(Input {
        signal,
        path: path.to_path_buf(),
        has_audio: !info.audio_streams().is_empty(),
        duration: info.duration().map(|d| Duration::from_nanos(d.nseconds())),
        size: (first_video.width(), first_video.height()),
        frame_rate: {
            let rate = first_video.framerate();
            (rate.numer() > 0 && rate.denom() > 0)
                .then(|| f64::from(rate.numer()) / f64::from(rate.denom()))
        },
    })
}
