//! The worker's pipeline as one launch line: the description kept in
//! `pipelines/` with the settings written into it. The worker parses this line
//! and `worker --print-pipeline` prints it, so `gst-launch-1.0 -e` runs the
//! very pipeline the worker runs, less what only the worker adds at run time
//! ([`RUN_TIME_ADDITIONS`]).
//!
//! ```text
//! pipelines/worker-*.gst --launch_line--+
//!                                       +--effective_line--> gst::parse::launch   (worker)
//! Input + folder + EncodeSettings ------+                \-> worker --print-pipeline -> gst-launch-1.0 -e
//! ```

use gstreamer as gst;
use gstreamer::prelude::*;

use super::input::Input;
use super::settings::EncodeSettings;

/// Video-only input: `filesrc -> decodebin -> x264enc -> hlssink2`.
pub const VIDEO_ONLY: &str = include_str!("../../pipelines/worker-video.gst");
/// Input with audio: the video branch plus `audioconvert -> avenc_aac`.
pub const AUDIO_VIDEO: &str = include_str!("../../pipelines/worker-audio-video.gst");
/// A ladder, video-only input: rung 0's lines repeated per rung.
pub const LADDER_VIDEO_ONLY: &str = include_str!("../../pipelines/worker-ladder-video.gst");
/// A ladder, input with audio (encoded once, muxed into every rung).
pub const LADDER_AUDIO_VIDEO: &str = include_str!("../../pipelines/worker-ladder-audio-video.gst");

/// The `filesrc` reading the input.
pub const SOURCE: &str = "source";
/// The identity at the head of the video branch, right after the decoder:
/// where the worker keeps one timeline across loops.
pub const VIDEO_TIMELINE: &str = "video_timeline";
/// The identity at the head of the audio branch, right after the decoder.
pub const AUDIO_TIMELINE: &str = "audio_timeline";
/// The x264enc (a ladder's: `video_encoder_<rung>`).
pub const VIDEO_ENCODER: &str = "video_encoder";
/// A ladder rung's capsfilter giving its picture size: `video_size_<rung>`.
pub const VIDEO_SIZE: &str = "video_size";
/// The mpegtsmux every branch ends in.
pub const MUX: &str = "mux";
/// The appsink taking the muxed stream: the worker's publisher cuts it into
/// parts and segments ([`super::publisher`]); a ladder's: `segmenter_<rung>`.
pub const SEGMENTER: &str = "segmenter";
/// What marks rung 0's element names in a ladder description.
const RUNG_ZERO: &str = "_0";
/// x264enc's `key-int-max`: keyframes come only where the worker asks, at
/// the epoch grid's segment boundaries, not on a fixed cadence.
pub const KEY_INT_MAX: u32 = 100_000;

/// What the worker adds to the launch line at run time, printed with it.
pub const RUN_TIME_ADDITIONS: &str = "the worker adds at run time: looping by segment seeks \
with one continuous timeline after the decoder (so gst-launch plays the input once), keyframes \
at the epoch grid's segment boundaries, the decoder's threads (CODEC_THREADS, as x264enc's \
threads in the line), a realtime clock and running time locked to EPOCH, and the segmenter: \
the appsink's muxed stream cut into parts and segments (segmentNNNNNN.ts, \
segmentNNNNNN_partK.ts) listed in its own live playlist (under gst-launch the appsink drops \
what it gets)";

/// The description for an input, with or without its audio branch, as one
/// rendition or a ladder.
pub fn for_input(has_audio: bool, ladder: bool) -> &'static str {
    match (has_audio, ladder) {
        (true, false) => AUDIO_VIDEO,
        (false, false) => VIDEO_ONLY,
        (true, true) => LADDER_AUDIO_VIDEO,
        (false, true) => LADDER_VIDEO_ONLY,
    }
}

/// The name of element `base` in rung `rung` of a ladder: `video_encoder_1`.
pub fn rung_element(base: &str, rung: usize) -> String {
    format!("{base}_{rung}")
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

/// A ladder description's launch line for `rungs` rungs: the lines naming
/// rung 0 (`..._0`) repeated once per rung with the names renumbered.
pub fn ladder_line(description: &str, rungs: usize) -> String {
    let lines: Vec<&str> = description
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    let names_rung_zero = |line: &str| tokens(line).iter().any(|t| rung_token(t).is_some());
    let mut out: Vec<String> = lines
        .iter()
        .filter(|l| !names_rung_zero(l))
        .map(|l| l.to_string())
        .collect();
    for rung in 0..rungs {
        for line in lines.iter().filter(|l| names_rung_zero(l)) {
            let renamed: Vec<String> = tokens(line)
                .into_iter()
                .map(|t| match rung_token(&t) {
                    Some((stem, tail)) => format!("{stem}_{rung}{tail}"),
                    None => t,
                })
                .collect();
            out.push(renamed.join(" "));
        }
    }
    out.join(" ")
}

/// A token naming rung 0 (`name=video_encoder_0`, `mux_0.`): the part before
/// `_0` and what follows it.
fn rung_token(token: &str) -> Option<(&str, &str)> {
    let (body, tail) = match token.strip_suffix('.') {
        Some(body) => (body, "."),
        None => (token, ""),
    };
    let stem = body.strip_suffix(RUNG_ZERO)?;
    stem.chars()
        .last()
        .is_some_and(|c| c.is_ascii_alphabetic())
        .then_some((stem, tail))
}

/// The properties the settings give the named elements, as (element,
/// property, launch-syntax value), in the order they are written.
pub fn properties(input: &Input, settings: &EncodeSettings) -> Vec<(String, String, String)> {
    let encoder = |name: String, kbps: u32| {
        vec![
            (name.clone(), "bitrate".to_string(), kbps.to_string()),
            (
                name.clone(),
                "key-int-max".to_string(),
                KEY_INT_MAX.to_string(),
            ),
            (
                name,
                "threads".to_string(),
                settings.codec_threads.to_string(),
            ),
        ]
    };
    let mut out = vec![(
        SOURCE.to_string(),
        "location".to_string(),
        quoted(&input.path.to_string_lossy()),
    )];
    match settings.ladder.rungs_for(input.size) {
        None => out.extend(encoder(VIDEO_ENCODER.to_string(), settings.video_kbps)),
        Some(rungs) => {
            for (i, rung) in rungs.iter().enumerate() {
                out.push((
                    rung_element(VIDEO_SIZE, i),
                    "caps".to_string(),
                    quoted(&format!(
                        "video/x-raw,width={},height={},pixel-aspect-ratio=1/1",
                        rung.width, rung.height
                    )),
                ));
                out.extend(encoder(rung_element(VIDEO_ENCODER, i), rung.kbps));
            }
        }
    }
    out
}

/// The one launch line of `input`'s pipeline: the description (repeated per
/// rung for a ladder) with [`properties`] written into its named elements.
pub fn effective_line(input: &Input, settings: &EncodeSettings) -> String {
    let rungs = settings.ladder.rungs_for(input.size);
    let description = for_input(input.has_audio, rungs.is_some());
    let line = match &rungs {
        Some(rungs) => ladder_line(description, rungs.len()),
        None => launch_line(description),
    };
    let mut tokens = tokens(&line);
    for (element, property, value) in properties(input, settings) {
        set_property(&mut tokens, &element, &property, &value);
    }
    tokens.join(" ")
}

/// Gives every decoder decodebin makes in `pipeline` the configured threads
/// (`max-threads`, 0 for the codec's own choice), as the launch line gives
/// x264enc: decodebin picks its decoder at run time, so the line cannot.
pub fn limit_decoder_threads(pipeline: &gst::Pipeline, settings: &EncodeSettings) {
    let threads = i32::try_from(settings.codec_threads).unwrap_or(0);
    pipeline.connect_deep_element_added(move |_, _, element| {
        let is_decoder = element
            .factory()
            .is_some_and(|f| f.has_type(gst::ElementFactoryType::DECODER));
        let takes_threads = element
            .find_property("max-threads")
            .is_some_and(|p| p.value_type() == i32::static_type());
        if is_decoder && takes_threads {
            element.set_property("max-threads", threads);
        }
    });
}

/// A string value in launch syntax: double-quoted, `\` and `"` escaped, so
/// paths with spaces survive.
fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Splits a launch line on white space outside double quotes.
fn tokens(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let (mut in_quotes, mut escaped) = (false, false);
    for c in line.chars() {
        if escaped {
            current.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' => {
                escaped = true;
                current.push(c);
            }
            '"' => {
                in_quotes = !in_quotes;
                current.push(c);
            }
            c if c.is_whitespace() && !in_quotes => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The property name of a `key=value` token, if it is one.
fn property_key(token: &str) -> Option<&str> {
    let (key, _) = token.split_once('=')?;
    let is_key = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == ':');
    is_key.then_some(key)
}

/// Sets `property=value` on the element named `element`: replaces the
/// description's value, or adds it after the element's last property.
/// An element missing from the description is left for the parse to report
/// (the worker looks every named element up after parsing).
fn set_property(tokens: &mut Vec<String>, element: &str, property: &str, value: &str) {
    let name = format!("name={element}");
    let Some(at) = tokens.iter().position(|t| *t == name) else {
        return;
    };
    let mut end = at + 1;
    while end < tokens.len() && property_key(&tokens[end]).is_some() {
        end += 1;
    }
    let assignment = format!("{property}={value}");
    match (at + 1..end).find(|&i| property_key(&tokens[i]) == Some(property)) {
        Some(i) => tokens[i] = assignment,
        None => tokens.insert(end, assignment),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::ladder::Ladder;
    use std::path::PathBuf;

    fn input(path: &str, has_audio: bool) -> Input {
        Input {
            signal: "live01".into(),
            path: PathBuf::from(path),
            has_audio,
            duration: None,
            size: (320, 240),
            frame_rate: Some(25.0),
        }
    }

    #[test]
    fn launch_lines_keep_the_elements_the_worker_configures() {
        for text in [VIDEO_ONLY, AUDIO_VIDEO] {
            let line = launch_line(text);
            assert!(!line.contains('#'));
            for name in [SOURCE, MUX, SEGMENTER, VIDEO_ENCODER, VIDEO_TIMELINE] {
                assert!(
                    line.contains(&format!("name={name}")),
                    "{name} missing in {line}"
                );
            }
            assert!(
                line.contains("clocksync")
                    && line.contains("mpegtsmux")
                    && line.contains("appsink")
            );
        }
        assert!(launch_line(AUDIO_VIDEO).contains("avenc_aac"));
        assert!(launch_line(AUDIO_VIDEO).contains(&format!("name={AUDIO_TIMELINE}")));
        assert!(!launch_line(VIDEO_ONLY).contains("audio"));
    }

    #[test]
    fn the_effective_line_parses_and_carries_every_setting() {
        gst::init().expect("gst init");
        let settings = EncodeSettings {
            segment_seconds: 3,
            playlist_length: 7,
            retained_segments: 4,
            video_kbps: 2345,
            codec_threads: 3,
            ladder: Ladder::Single,
            ..EncodeSettings::default()
        };
        for has_audio in [false, true] {
            let input = input("/tmp/in put/live01.mp4", has_audio);
            let line = effective_line(&input, &settings);
            assert!(!line.contains('\n'), "{line}");
            let pipeline = gst::parse::launch(&line)
                .unwrap_or_else(|e| panic!("{line}: {e}"))
                .downcast::<gst::Pipeline>()
                .expect("a pipeline");
            let element = |n: &str| {
                pipeline
                    .by_name(n)
                    .unwrap_or_else(|| panic!("{n} in {line}"))
            };
            assert_eq!(
                element(SOURCE)
                    .property::<Option<String>>("location")
                    .as_deref(),
                Some("/tmp/in put/live01.mp4")
            );
            let encoder = element(VIDEO_ENCODER);
            assert_eq!(encoder.property::<u32>("bitrate"), 2345);
            assert_eq!(encoder.property::<u32>("key-int-max"), KEY_INT_MAX);
            assert_eq!(encoder.property::<u32>("threads"), 3);
            assert_eq!(
                element(MUX)
                    .factory()
                    .map(|f| f.name().to_string())
                    .as_deref(),
                Some("mpegtsmux")
            );
            assert!(element(SEGMENTER).is::<gstreamer_app::AppSink>(), "{line}");
            assert_eq!(pipeline.by_name(AUDIO_TIMELINE).is_some(), has_audio);
        }
    }

    #[test]
    fn a_ladder_repeats_rung_zero_per_rung_with_its_size_and_rate() {
        gst::init().expect("gst init");
        let settings = EncodeSettings {
            ladder: "1280x720@2800,854x480@1400,640x360@800"
                .parse()
                .expect("ladder"),
            ..EncodeSettings::default()
        };
        let mut input = input("/media/live01.mp4", true);
        input.size = (854, 480);
        let line = effective_line(&input, &settings);
        let pipeline = gst::parse::launch(&line)
            .unwrap_or_else(|e| panic!("{line}: {e}"))
            .downcast::<gst::Pipeline>()
            .expect("a pipeline");
        let element = |n: String| {
            pipeline
                .by_name(&n)
                .unwrap_or_else(|| panic!("{n} in {line}"))
        };
        // 720p would upscale: two rungs, 480p then 360p.
        assert!(pipeline.by_name("video_encoder_2").is_none(), "{line}");
        for (rung, (width, kbps)) in [(854, 1400u32), (640, 800)].into_iter().enumerate() {
            assert_eq!(
                element(rung_element(VIDEO_ENCODER, rung)).property::<u32>("bitrate"),
                kbps
            );
            let caps = element(rung_element(VIDEO_SIZE, rung)).property::<gst::Caps>("caps");
            let size = caps
                .structure(0)
                .expect("caps")
                .get::<i32>("width")
                .expect("width");
            assert_eq!(size, width);
            assert!(element(rung_element(SEGMENTER, rung)).is::<gstreamer_app::AppSink>());
            assert!(
                pipeline
                    .by_name(&rung_element("audio_queue", rung))
                    .is_some(),
                "{line}"
            );
        }
        // One decode, one audio encode.
        assert_eq!(line.matches("decodebin").count(), 1, "{line}");
        assert_eq!(line.matches("avenc_aac").count(), 1, "{line}");
        assert_eq!(line.matches("x264enc").count(), 2, "{line}");
        // A single rendition is the seed's line, no tee.
        let single = EncodeSettings {
            ladder: Ladder::Single,
            ..settings
        };
        assert!(!effective_line(&input, &single).contains("tee"));
    }

    #[test]
    fn decoders_decodebin_makes_get_the_configured_threads() {
        gst::init().expect("gst init");
        // decodebin takes the highest-ranked H.264 decoder; a machine with a
        // hardware decoder (VA, V4L2) could rank one above libav's, which has
        // no max-threads. Libav's is the one this test is about.
        let libav = gst::ElementFactory::find("avdec_h264").expect("gst-libav's avdec_h264");
        libav.set_rank(gst::Rank::PRIMARY + 100);
        let pipeline = gst::parse::launch(
            "videotestsrc num-buffers=3 ! video/x-raw,width=64,height=48 ! x264enc \
             ! h264parse ! decodebin ! fakesink",
        )
        .expect("test pipeline")
        .downcast::<gst::Pipeline>()
        .expect("a pipeline");
        let settings = EncodeSettings {
            codec_threads: 3,
            ..EncodeSettings::default()
        };
        limit_decoder_threads(&pipeline, &settings);
        pipeline.set_state(gst::State::Playing).expect("playing");
        let bus = pipeline.bus().expect("bus");
        // A budget, not a timing check: on a busy 2-core machine running the
        // other unit tests, three tiny frames once took longer than 10 s.
        let end = bus.timed_pop_filtered(
            gst::ClockTime::from_seconds(120),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        );
        let elements: Vec<gst::Element> =
            pipeline.iterate_recurse().into_iter().flatten().collect();
        let factories: Vec<String> = elements
            .iter()
            .filter_map(|e| e.factory().map(|f| f.name().to_string()))
            .collect();
        let decoder = elements
            .iter()
            .find(|e| e.factory().is_some_and(|f| f.name().starts_with("avdec_")))
            .map(|d| d.property::<i32>("max-threads"));
        pipeline.set_state(gst::State::Null).expect("null");
        assert!(
            matches!(
                end.as_ref().map(|m| m.view()),
                Some(gst::MessageView::Eos(_))
            ),
            "the test stream did not play to its end: {end:?}; elements: {factories:?}"
        );
        let threads =
            decoder.unwrap_or_else(|| panic!("decodebin made no libav decoder: {factories:?}"));
        assert_eq!(threads, 3);
    }

    #[test]
    fn settings_replace_the_description_values_instead_of_adding_duplicates() {
        let line = effective_line(&input("in.mp4", false), &EncodeSettings::default());
        for key in ["bitrate=", "key-int-max=", "threads="] {
            assert_eq!(
                line.matches(&format!(" {key}")).count(),
                1,
                "{key} in {line}"
            );
        }
        assert_eq!(line.matches(" location=").count(), 1, "{line}");
        assert!(!line.contains("input/live01.mp4"), "{line}");
    }
}
