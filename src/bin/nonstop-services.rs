//! `nonstop-services`: the eight HTTP programs in one file, for the `services`
//! image (see `--help`).
//!
//! Eight programs built apart repeat the same library (tokio, hyper, warp,
//! rustls ...) eight times; one program holding all of them ships it once.
//! It runs the program its name says: the image has a link per program
//! (`/usr/local/bin/server1 -> nonstop-services`, made by `--link`), so
//! `server1 --port 8081` runs exactly `server1`'s own `main` (the same
//! source file, compiled in here as a module) with the same flags,
//! environment, `--help` and exit codes. By its own name, the first argument
//! names the program: `nonstop-services server1 --port 8081`.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::ExitCode;

#[path = "console.rs"]
mod console;
#[path = "discovery.rs"]
mod discovery;
#[path = "origin.rs"]
mod origin;
#[path = "proxy.rs"]
mod proxy;
#[path = "reporter.rs"]
mod reporter;
#[path = "server1.rs"]
mod server1;
#[path = "server2.rs"]
mod server2;
#[path = "status.rs"]
mod status;

/// This program's own name: called by it, the first argument names the program.
const OWN_NAME: &str = "nonstop-services";

/// Every program held here, by the name it answers to, in the seed's order.
const PROGRAMS: [(&str, fn()); 8] = [
    ("server1", server1::main),
    ("server2", server2::main),
    ("reporter", reporter::main),
    ("discovery", discovery::main),
    ("origin", origin::main),
    ("proxy", proxy::main),
    ("console", console::main),
    ("status", status::main),
];

/// The program called `name`, if this file holds it.
fn program(name: &str) -> Option<fn()> {
    PROGRAMS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, main)| *main)
}

fn usage() -> String {
    let names: Vec<&str> = PROGRAMS.iter().map(|(n, _)| *n).collect();
    format!(
        "nonstop's HTTP programs in one file: called by a program's name (a link to it), it runs that program.\n\n\
         Usage: {OWN_NAME} <PROGRAM> [ARGS]...   run PROGRAM with ARGS (its own --help says which)\n       \
         {OWN_NAME} --list                print the program names, one a line\n       \
         {OWN_NAME} --link <DIR>          make DIR/<PROGRAM> a link to this file for every program\n\n\
         Programs: {}\n",
        names.join(", ")
    )
}

/// Makes `dir/<program>` a symbolic link to this file, named as `dir` sees
/// it, for every program (what the image's build runs once).
fn link(dir: &Path) -> std::io::Result<()> {
    let exe = std::env::current_exe()?;
    let target = if exe.parent() == Some(dir) {
        Path::new(exe.file_name().unwrap_or(OWN_NAME.as_ref())).to_path_buf()
    } else {
        exe
    };
    for (name, _) in PROGRAMS {
        let path = dir.join(name);
        if path.symlink_metadata().is_ok() {
            std::fs::remove_file(&path)?;
        }
        std::os::unix::fs::symlink(&target, &path)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    let called = args
        .next()
        .and_then(|a| {
            Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    if let Some(main) = program(&called) {
        main();
        return ExitCode::SUCCESS;
    }
    let first: Option<OsString> = args.next();
    match first.as_ref().and_then(|a| a.to_str()) {
        Some(name) if program(name).is_some() => {
            // Run again with the program's name as argv[0], so its flags,
            // --help and usage lines are exactly its own.
            let error = match std::env::current_exe() {
                Ok(exe) => std::process::Command::new(exe).arg0(name).args(args).exec(),
                Err(e) => e,
            };
            eprintln!("{OWN_NAME}: cannot run {name}: {error}");
            ExitCode::FAILURE
        }
        Some("--list") => {
            for (name, _) in PROGRAMS {
                println!("{name}");
            }
            ExitCode::SUCCESS
        }
        Some("--link") => match args.next() {
            Some(dir) => match link(Path::new(&dir)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!(
                        "{OWN_NAME}: cannot link the programs in {}: {e}",
                        Path::new(&dir).display()
                    );
                    ExitCode::FAILURE
                }
            },
            None => {
                eprint!("{}", usage());
                ExitCode::from(2)
            }
        },
        Some("--help" | "-h") => {
            print!("{}", usage());
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("{OWN_NAME}: no program called '{other}'\n");
            eprint!("{}", usage());
            ExitCode::from(2)
        }
        None => {
            eprint!("{}", usage());
            ExitCode::from(2)
        }
    }
}
