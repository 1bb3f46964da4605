//! When each low-latency part was published: the moment the worker's media
//! playlist on disk first listed it, seen by inotify on the signal's output
//! folder (the folder the packagers serve). That is the moment a packager
//! may release a blocking reload for the part (it notices within its own
//! stat poll, 10 ms), so a held viewer's release latency is measured from
//! here, the same clock for every server in front of the packagers.
//!
//! ```text
//! worker --rename--> live01/playlist.m3u8 --IN_MOVED_TO--> this thread: read it,
//!                                                           note each part not seen before
//! ```
//!
//! The worker writes every playlist whole (temporary file, then rename), so
//! each `IN_MOVED_TO` (or `IN_CLOSE_WRITE`, for a writer that does not
//! rename) of the playlist's name is one new version; the event is read on
//! a thread of its own that does nothing else, and stamped before the file
//! is read.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use super::part_list::{PartId, PartList};

/// How often the watching thread looks at its stop flag while no event comes.
const STOP_CHECK_MS: i32 = 100;
/// Room for many inotify events at once (each is 16 bytes and the name).
const EVENT_BUFFER: usize = 64 * 1024;

/// The publication time of every part a watched playlist listed while
/// watched; the thread stops on drop.
pub struct Published {
    times: Arc<Mutex<HashMap<PartId, Instant>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Published {
    /// Watches `folder/playlist` (a signal's media playlist as the worker
    /// writes it); the parts it lists now are noted as published now.
    pub fn watch(folder: &Path, playlist: &str) -> std::io::Result<Published> {
        let c_folder = CString::new(folder.as_os_str().as_bytes())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        // SAFETY: inotify_init1 takes flags only and returns a descriptor or -1.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the path is a valid NUL-terminated string for the call.
        let wd = unsafe {
            libc::inotify_add_watch(
                fd,
                c_folder.as_ptr(),
                libc::IN_MOVED_TO | libc::IN_CLOSE_WRITE,
            )
        };
        if wd < 0 {
            let error = std::io::Error::last_os_error();
            // SAFETY: fd is the descriptor inotify_init1 gave.
            unsafe { libc::close(fd) };
            return Err(error);
        }
        let times = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let path = folder.join(playlist);
        note(&times, &path, Instant::now());
        let thread = {
            let (times, stop) = (times.clone(), stop.clone());
            let name = playlist.as_bytes().to_vec();
            std::thread::Builder::new()
                .name("published".into())
                .spawn(move || watch_events(fd, &name, &path, &times, &stop))?
        };
        Ok(Published {
            times,
            stop,
            thread: Some(thread),
        })
    }

    /// Every part noted so far with its publication time.
    pub fn snapshot(&self) -> HashMap<PartId, Instant> {
        self.times.lock().expect("published lock").clone()
    }
}

impl Drop for Published {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads inotify events from `fd` until `stop`: each one naming `name` has
/// the playlist read and its new parts noted at the moment the event came.
fn watch_events(
    fd: i32,
    name: &[u8],
    path: &Path,
    times: &Mutex<HashMap<PartId, Instant>>,
    stop: &AtomicBool,
) {
    let mut buffer = vec![0u8; EVENT_BUFFER];
    while !stop.load(Ordering::Relaxed) {
        let mut poll = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let ready = unsafe { libc::poll(&mut poll, 1, STOP_CHECK_MS) };
        if ready <= 0 {
            continue;
        }
        let now = Instant::now();
        // SAFETY: reads at most the buffer's length into the buffer.
        let read = unsafe { libc::read(fd, buffer.as_mut_ptr().cast(), buffer.len()) };
        if read <= 0 {
            continue;
        }
        if names(&buffer[..read as usize]).any(|n| n == name) {
            note(times, path, now);
        }
    }
    // SAFETY: fd is the descriptor this thread owns.
    unsafe { libc::close(fd) };
}

/// The file names of the inotify events in `bytes` (each: wd, mask, cookie,
/// len as 32-bit words, then `len` bytes of NUL-padded name).
fn names(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    const HEADER: usize = 16;
    let mut at = 0;
    std::iter::from_fn(move || {
        while at + HEADER <= bytes.len() {
            let len_bytes: [u8; 4] = bytes[at + 12..at + 16].try_into().ok()?;
            let len = u32::from_ne_bytes(len_bytes) as usize;
            let name = bytes.get(at + HEADER..at + HEADER + len)?;
            at += HEADER + len;
            let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
            if end > 0 {
                return Some(&name[..end]);
            }
        }
        None
    })
}

/// Reads the playlist at `path` and notes each part it lists that was not
/// noted before as published `at`.
fn note(times: &Mutex<HashMap<PartId, Instant>>, path: &Path, at: Instant) {
    let Ok(body) = std::fs::read(path) else {
        return;
    };
    let Ok(list) = PartList::scan(&body) else {
        return;
    };
    let mut times = times.lock().expect("published lock");
    for part in list.ids() {
        times.entry(part).or_insert(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const PLAYLIST: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PART-INF:PART-TARGET=0.4\n\
        #EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:2.0,\nsegment7.ts\n\
        #EXT-X-PART:DURATION=0.4,URI=\"segment8_part0.ts\"\n";

    #[test]
    fn a_renamed_playlist_notes_its_new_parts_when_it_lands() {
        let dir = tempfile::tempdir().expect("tempdir");
        let published = Published::watch(dir.path(), "playlist.m3u8").expect("watch");
        assert!(published.snapshot().is_empty());
        let before = Instant::now();
        let temporary = dir.path().join("playlist.m3u8.tmp");
        std::fs::write(&temporary, PLAYLIST).expect("write");
        std::fs::rename(&temporary, dir.path().join("playlist.m3u8")).expect("rename");
        let deadline = Instant::now() + Duration::from_secs(5);
        while published.snapshot().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let times = published.snapshot();
        let at = times.get(&(8, 0)).copied().expect("part (8, 0) noted");
        assert!(at >= before, "noted when the rename landed, not before");
        assert_eq!(times.len(), 1);
    }

    #[test]
    fn event_names_are_read_past_their_padding() {
        let mut bytes = Vec::new();
        for name in ["a.tmp", "playlist.m3u8"] {
            let padded = (name.len() + 1).next_multiple_of(16);
            bytes.extend_from_slice(&[0u8; 12]);
            bytes.extend_from_slice(&(padded as u32).to_ne_bytes());
            let mut field = name.as_bytes().to_vec();
            field.resize(padded, 0);
            bytes.extend_from_slice(&field);
        }
        let seen: Vec<&[u8]> = names(&bytes).collect();
        assert_eq!(seen, [&b"a.tmp"[..], &b"playlist.m3u8"[..]]);
    }
}
