//! Reading and rewriting a multivariant playlist, as the proxy serves a
//! ladder: renditions missing from every packager are left out (a player
//! never loops on a 404), and with Content Steering (HLS 8216bis 7.2,
//! Apple's WWDC21) every rendition is listed once per pathway, each pathway
//! an edge (a proxy or a CDN's base URL) the player may move to on its own.
//!
//! ```text
//! packager's playlist.m3u8             proxy's, pathways a=http://edge-a:8002, b=http://edge-b:8002
//! #EXT-X-STREAM-INF:BANDWIDTH=..       #EXT-X-CONTENT-STEERING:SERVER-URI="/steering/live01.json",PATHWAY-ID="a"
//! 720p.m3u8                            #EXT-X-STREAM-INF:BANDWIDTH=..,PATHWAY-ID="a"
//! #EXT-X-STREAM-INF:BANDWIDTH=..       http://edge-a:8002/live01/720p.m3u8
//! 480p.m3u8                            ... the same for b
//! ```
//!
//! Free of I/O; the variants' attributes are kept as written.

use std::fmt::Write as _;

/// One variant stream: its `EXT-X-STREAM-INF` attributes and its URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    /// The attribute list, as written after `#EXT-X-STREAM-INF:`.
    pub attributes: String,
    /// Its media playlist, relative to the multivariant playlist.
    pub uri: String,
}

/// A multivariant playlist's variants, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Multivariant {
    pub variants: Vec<Variant>,
}

/// One pathway of Content Steering: its id and the base URL of its edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pathway {
    pub id: String,
    pub base: String,
}

/// What the proxy adds for Content Steering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Steering {
    /// Where players ask for the pathway priority (`SERVER-URI`).
    pub server_uri: String,
    /// This edge's pathway first, then the others.
    pub pathways: Vec<Pathway>,
}

/// Whether a playlist's text is a multivariant playlist (it names variants).
pub fn is_multivariant(text: &[u8]) -> bool {
    String::from_utf8_lossy(text).contains("#EXT-X-STREAM-INF:")
}

impl Multivariant {
    /// The variants of a multivariant playlist; `None` for anything else.
    pub fn parse(text: &[u8]) -> Option<Multivariant> {
        let text = String::from_utf8_lossy(text);
        if !text.starts_with("#EXTM3U") {
            return None;
        }
        let mut variants = Vec::new();
        let mut pending: Option<String> = None;
        for line in text.lines().map(str::trim) {
            if let Some(attributes) = line.strip_prefix("#EXT-X-STREAM-INF:") {
                pending = Some(attributes.to_string());
            } else if !line.is_empty() && !line.starts_with('#') {
                if let Some(attributes) = pending.take() {
                    variants.push(Variant {
                        attributes,
                        uri: line.to_string(),
                    });
                }
            }
        }
        (!variants.is_empty()).then_some(Multivariant { variants })
    }

    /// The media playlists it names, in order.
    pub fn uris(&self) -> impl Iterator<Item = &str> {
        self.variants.iter().map(|v| v.uri.as_str())
    }

    /// The playlist as the proxy serves it: only the variants `keep` says
    /// are served somewhere, and, with `steering`, each of them once per
    /// pathway under that edge's absolute URL (`<base>/<signal>/<uri>`).
    pub fn render(
        &self,
        signal: &str,
        keep: impl Fn(&str) -> bool,
        steering: Option<&Steering>,
    ) -> Vec<u8> {
        let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n");
        let kept: Vec<&Variant> = self.variants.iter().filter(|v| keep(&v.uri)).collect();
        match steering {
            None => {
                for v in kept {
                    let _ = writeln!(out, "#EXT-X-STREAM-INF:{}\n{}", v.attributes, v.uri);
                }
            }
            Some(steering) => {
                if let Some(first) = steering.pathways.first() {
                    let _ = writeln!(
                        out,
                        "#EXT-X-CONTENT-STEERING:SERVER-URI=\"{}\",PATHWAY-ID=\"{}\"",
                        steering.server_uri, first.id
                    );
                }
                for pathway in &steering.pathways {
                    for v in &kept {
                        let _ = writeln!(
                            out,
                            "#EXT-X-STREAM-INF:{},PATHWAY-ID=\"{}\"\n{}/{signal}/{}",
                            v.attributes, pathway.id, pathway.base, v.uri
                        );
                    }
                }
            }
        }
        out.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LADDER: &str = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n\
#EXT-X-STREAM-INF:BANDWIDTH=3406000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720\n720p.m3u8\n\
#EXT-X-STREAM-INF:BANDWIDTH=1745000,CODECS=\"avc1.64001e,mp4a.40.2\",RESOLUTION=854x480\n480p.m3u8\n";

    #[test]
    fn variants_are_read_and_missing_ones_left_out() {
        assert!(is_multivariant(LADDER.as_bytes()));
        let ladder = Multivariant::parse(LADDER.as_bytes()).expect("multivariant");
        assert_eq!(
            ladder.uris().collect::<Vec<_>>(),
            ["720p.m3u8", "480p.m3u8"]
        );
        let served = String::from_utf8(ladder.render("live01", |uri| uri != "720p.m3u8", None))
            .expect("utf8");
        assert_eq!(
            served,
            "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n\
#EXT-X-STREAM-INF:BANDWIDTH=1745000,CODECS=\"avc1.64001e,mp4a.40.2\",RESOLUTION=854x480\n480p.m3u8\n"
        );
        let media = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\na.ts\n";
        assert!(!is_multivariant(media.as_bytes()));
        assert_eq!(Multivariant::parse(media.as_bytes()), None);
    }

    #[test]
    fn with_steering_each_variant_is_listed_per_pathway_own_edge_first() {
        let ladder = Multivariant::parse(LADDER.as_bytes()).expect("multivariant");
        let steering = Steering {
            server_uri: "/steering/live01.json".into(),
            pathways: vec![
                Pathway {
                    id: "b".into(),
                    base: "http://edge-b:8002".into(),
                },
                Pathway {
                    id: "a".into(),
                    base: "http://edge-a:8002".into(),
                },
            ],
        };
        let served =
            String::from_utf8(ladder.render("live01", |_| true, Some(&steering))).expect("utf8");
        assert!(served.contains(
            "#EXT-X-CONTENT-STEERING:SERVER-URI=\"/steering/live01.json\",PATHWAY-ID=\"b\"\n"
        ));
        assert!(served.contains(
            ",RESOLUTION=854x480,PATHWAY-ID=\"a\"\nhttp://edge-a:8002/live01/480p.m3u8\n"
        ));
        assert_eq!(served.matches("#EXT-X-STREAM-INF:").count(), 4);
        let b = served
            .find("http://edge-b:8002/live01/720p.m3u8")
            .expect("b");
        let a = served
            .find("http://edge-a:8002/live01/720p.m3u8")
            .expect("a");
        assert!(b < a, "this edge's pathway first");
    }
}
