//! The worker's pipeline descriptions, kept in `pipelines/` so that
//! `gst-launch-1.0` runs the very text the worker loads.

/// Video-only input: `filesrc -> decodebin -> x264enc -> hlssink2`.
pub const VIDEO_ONLY: &str = include_str!("../../pipelines/worker-video.gst");
/// Input with audio: the video branch plus `audioconvert -> avenc_aac`.
pub const AUDIO_VIDEO: &str = include_str!("../../pipelines/worker-audio-video.gst");

/// The description for an input, with or without its audio branch.
pub fn for_input(has_audio: bool) -> &'static str {
    if has_audio {
        AUDIO_VIDEO
    } else {
        VIDEO_ONLY
    }
}

/// The launch line of a description: comment lines dropped, the rest joined
/// (gst-launch syntax treats new lines as spaces).
pub fn launch_line(description: &str) -> String {
    description
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_lines_keep_the_elements_the_worker_configures() {
        for text in [VIDEO_ONLY, AUDIO_VIDEO] {
            let line = launch_line(text);
            assert!(!line.contains('#'));
            for name in [
                "name=source",
                "name=hls",
                "name=video_encoder",
                "clocksync",
                "hlssink2",
            ] {
                assert!(line.contains(name), "{name} missing in {line}");
            }
        }
        assert!(launch_line(AUDIO_VIDEO).contains("avenc_aac"));
        assert!(!launch_line(VIDEO_ONLY).contains("audio"));
    }
}
