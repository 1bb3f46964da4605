//! Where the lab finds things: the workspace root (`web/`, `pipelines/`,
//! `input/`), the programs built beside the running test or bench, the
//! target folder (the stack lock), and where tests leave what a person can
//! look at afterwards.

use std::path::{Path, PathBuf};

/// The workspace's root folder (the product crate), where `web/`, `pipelines/`
/// and `target/` are.
pub fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The lab crate's folder (`lab/`).
fn lab_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A browser driver of the lab (`lab/web/<script>`: `hlsjs-player.mjs`,
/// `console-test.mjs`), run with node; playwright-core is in
/// `lab/web/node_modules`.
pub fn browser_driver(script: &str) -> PathBuf {
    lab_root().join("web").join(script)
}

/// hls.js as the console ships it (`web/node_modules`, `npm ci --prefix
/// web`): what the drivers' pages and WebKit load, so the lab plays with
/// what viewers get.
pub fn hls_js() -> PathBuf {
    repo_root().join("web/node_modules/hls.js/dist/hls.min.js")
}

/// Every program the lab runs: the product's and the lab's own.
const PROGRAMS: [&str; 12] = [
    "worker",
    "server1",
    "server2",
    "reporter",
    "discovery",
    "origin",
    "proxy",
    "status",
    "console",
    "faultproxy",
    "probe",
    "gstplayer",
];

/// The path of a workspace program, built beside the running test or bench
/// (`target/<profile>/`). Cargo gives a package's tests only its own programs
/// (`CARGO_BIN_EXE_*`), and the product's belong to another package, so they
/// are found where cargo puts them: `cargo test --workspace` and the `just`
/// recipes build them all first.
pub fn bin(name: &str) -> String {
    assert!(PROGRAMS.contains(&name), "unknown program {name}");
    let exe = std::env::current_exe().expect("the test knows its own path");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("tests run from target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace --bins` (or `just test`, which builds every program)",
        path.display()
    );
    path.display().to_string()
}

/// The target folder (`target/`) the running test or bench was built in:
/// its executable sits in `target/<profile>/deps/` (tests) or
/// `target/<profile>/` (programs).
pub(crate) fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    let mut dir = exe.parent().expect("the executable is in a folder");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent().expect("deps is inside target/<profile>");
    }
    dir.parent()
        .expect("target/<profile> is inside target")
        .to_path_buf()
}

/// Where a test keeps what a person can look at afterwards:
/// `target/test-artifacts/<name>`.
pub fn test_artifact(name: &str) -> PathBuf {
    repo_root().join("target/test-artifacts").join(name)
}
