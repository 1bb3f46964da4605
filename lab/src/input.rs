//! Media for the tests to stream: short MP4 inputs made with GStreamer
//! (a bouncing ball, or a moving zone plate where bit rates matter, and
//! ticks when asked for sound), so no test depends on a file from outside.

use std::path::Path;
use std::sync::Once;

use gstreamer as gst;
use gstreamer::prelude::*;

/// Frame rate of every generated input.
pub const INPUT_FPS: u32 = 25;
/// How long making one input may take.
const MAKE_WITHIN: gst::ClockTime = gst::ClockTime::from_seconds(60);

static GST_INIT: Once = Once::new();

/// Initialises GStreamer once per process, whoever asks first.
pub fn init_gst() {
    GST_INIT.call_once(|| gst::init().expect("GStreamer initialises"));
}

/// The picture size of an input when no test asks for another: small, so
/// the worker's encoders cost little.
pub const DEFAULT_INPUT_SIZE: (u32, u32) = (320, 240);

/// The picture size of an input for the recommended ladder: its 480p and
/// 360p rungs (a ladder never upscales), as much as two workers leave room
/// for on two cores.
pub const LADDER_INPUT_SIZE: (u32, u32) = (854, 480);

/// Writes a short MP4 ([`DEFAULT_INPUT_SIZE`], 25 fps, H.264 with B-frames as real sources
/// have, so its video track carries an edit list, plus AAC when
/// `audio`, ending with the video) with GStreamer.
pub fn make_input(path: &Path, seconds: u32, audio: bool) {
    make_input_sized(path, seconds, audio, DEFAULT_INPUT_SIZE);
}

/// What an input's picture shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Picture {
    /// A ball bouncing on black: cheap to encode, and so far below any
    /// rung's bit rate that a ladder's rungs weigh nearly the same (on the
    /// recommended ladder at 854x480, measured 265 and 253 kbit/s peak,
    /// most of it the shared 128 kbit/s audio).
    #[default]
    Ball,
    /// A zone plate (concentric rings, finer outwards) whose phase moves
    /// every frame: detail and motion everywhere, so each rung encodes near
    /// its nominal bit rate, as a real picture does (recommended ladder at
    /// 854x480: 480p 1.73 Mbit/s peak, 1.57 average; 360p 1.06 peak, 0.96
    /// average, audio included). For tests where rungs must differ in size.
    MovingZonePlate,
}

impl Picture {
    /// The `videotestsrc` properties that draw it.
    fn videotestsrc(self) -> &'static str {
        match self {
            Picture::Ball => "pattern=ball",
            Picture::MovingZonePlate => "pattern=zone-plate kx2=20 ky2=20 kt=1",
        }
    }
}

/// [`make_input`] at `(width, height)`: a ladder keeps only the rungs an
/// input fills (it never upscales), so a test of two rungs needs 854x480.
pub fn make_input_sized(path: &Path, seconds: u32, audio: bool, size: (u32, u32)) {
    make_input_picture(path, seconds, audio, size, Picture::Ball);
}

/// [`make_input_sized`] showing `picture`.
pub fn make_input_picture(
    path: &Path,
    seconds: u32,
    audio: bool,
    (width, height): (u32, u32),
    picture: Picture,
) {
    init_gst();
    let frames = seconds * INPUT_FPS;
    let mut line = format!(
        "videotestsrc num-buffers={frames} {} ! video/x-raw,width={width},height={height},framerate={INPUT_FPS}/1,format=I420 \
         ! x264enc speed-preset=ultrafast key-int-max={INPUT_FPS} bframes=2 ! h264parse ! queue ! mp4mux name=mux ! filesink location={}",
        picture.videotestsrc(),
        path.display()
    );
    if audio {
        // The encoder adds one frame of priming: one buffer less keeps the
        // audio within the video (see `audio_buffers`).
        let buffers = audio_buffers(seconds);
        line.push_str(&format!(
            " audiotestsrc num-buffers={buffers} samplesperbuffer=1024 wave=ticks ! audio/x-raw,rate=48000,channels=2 \
             ! audioconvert ! avenc_aac ! aacparse ! queue ! mux."
        ));
    }
    let pipeline = gst::parse::launch(&line).expect("input pipeline parses");
    pipeline.set_state(gst::State::Playing).expect("plays");
    let bus = pipeline.bus().expect("bus");
    for msg in bus.iter_timed(MAKE_WITHIN) {
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("making input failed: {}", e.error()),
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).expect("stops");
}

/// The 1024-sample buffers of 48 kHz audio to encode for `seconds` of
/// video: the AAC encoder adds one frame of priming, so one buffer less
/// than fits keeps the audio track within the video's. An audio track that
/// outlasts the video makes each pass of the worker's loop that much longer
/// than its pictures, so the frame before every seam lasts longer than the
/// others; where that frame ends a part the part outlasts `PART-TARGET`
/// (the validator's `rules::PART_TOO_LONG`), a product issue that a test
/// input would trigger at some wall-clock phases only. Inputs the lab makes
/// keep clear of it so the rules' tests say the same at any hour.
fn audio_buffers(seconds: u32) -> u32 {
    (seconds * 48_000 / 1024).saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_with_its_priming_frame_ends_within_the_video() {
        for seconds in 1..=60 {
            let frames = u64::from(audio_buffers(seconds) + 1);
            assert!(frames * 1024 <= u64::from(seconds) * 48_000, "{seconds} s");
        }
    }
}
