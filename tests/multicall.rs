//! The services image ships one program file, `nonstop-services`, and a link
//! to it per HTTP program (`--link`). Each link must answer exactly as that
//! program's own file does (help, version, flag errors and their exit codes),
//! and the file must hold every product program but the worker, so a program
//! added to `src/bin/` cannot be left out of the image.

use std::path::Path;
use std::process::Command;

/// Each HTTP program's own file, as cargo built it for this test.
const PROGRAMS: [(&str, &str); 8] = [
    ("server1", env!("CARGO_BIN_EXE_server1")),
    ("server2", env!("CARGO_BIN_EXE_server2")),
    ("reporter", env!("CARGO_BIN_EXE_reporter")),
    ("discovery", env!("CARGO_BIN_EXE_discovery")),
    ("origin", env!("CARGO_BIN_EXE_origin")),
    ("proxy", env!("CARGO_BIN_EXE_proxy")),
    ("console", env!("CARGO_BIN_EXE_console")),
    ("status", env!("CARGO_BIN_EXE_status")),
];

const MULTI: &str = env!("CARGO_BIN_EXE_nonstop-services");

/// Arguments that never start a service: each ends in help, a version or a
/// flag error.
const ASKS: [&[&str]; 4] = [&["--help"], &["-h"], &["--version"], &["--no-such-flag"]];

/// (exit code, stdout, stderr) of `program args`.
fn answer(program: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_link_answers_as_the_program_itself() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let status = Command::new(MULTI)
        .arg("--link")
        .arg(dir.path())
        .status()
        .expect("nonstop-services runs");
    assert!(status.success(), "nonstop-services --link failed");
    for (name, own) in PROGRAMS {
        let link = dir.path().join(name);
        assert!(link.is_symlink(), "--link made no link {name}");
        for args in ASKS {
            let expected = answer(Path::new(own), args);
            assert_eq!(
                answer(&link, args),
                expected,
                "{name} {args:?} through its link"
            );
            let mut named = vec![name];
            named.extend_from_slice(args);
            assert_eq!(
                answer(Path::new(MULTI), &named),
                expected,
                "nonstop-services {name} {args:?}"
            );
        }
    }
}

#[test]
fn it_holds_every_product_program_but_the_worker() {
    let (code, listed, _) = answer(Path::new(MULTI), &["--list"]);
    assert_eq!(code, Some(0));
    let listed: Vec<&str> = listed.lines().collect();
    let names: Vec<&str> = PROGRAMS.iter().map(|(n, _)| *n).collect();
    assert_eq!(listed, names);

    let mut in_src_bin: Vec<String> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/src/bin"))
            .expect("src/bin")
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".rs")
                    .map(str::to_owned)
            })
            .filter(|n| n != "worker" && n != "nonstop-services")
            .collect();
    in_src_bin.sort();
    let mut names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    names.sort();
    assert_eq!(
        in_src_bin, names,
        "src/bin/ programs and nonstop-services --list differ"
    );
}

#[test]
fn an_unknown_program_is_refused_with_the_list() {
    let (code, stdout, stderr) = answer(Path::new(MULTI), &["worker"]);
    assert_eq!(code, Some(2));
    assert!(stdout.is_empty());
    assert!(stderr.contains("no program called 'worker'"), "{stderr}");
    assert!(stderr.contains("server1, server2"), "{stderr}");
}
