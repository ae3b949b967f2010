use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crashfs::core::{Core, Names};
use crashfs::fs::CrashFs;
use nix::sys::signal::{SigSet, Signal};

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let names = match args.iter().position(|a| a == "--journal") {
        Some(i) => {
            args.remove(i);
            Names::Journal
        }
        None => Names::Posix,
    };
    let torn = match args.iter().position(|a| a.starts_with("--torn=")) {
        Some(i) => match args.remove(i)["--torn=".len()..].parse::<u64>() {
            Ok(seed) => Some(seed),
            Err(_) => {
                eprintln!("crashfs: --torn=SEED takes a number");
                std::process::exit(2)
            }
        },
        None => None,
    };
    let [backing, mountpoint] = <[String; 2]>::try_from(args).unwrap_or_else(|_| {
        eprintln!("usage: crashfs [--journal] [--torn=SEED] BACKING MOUNTPOINT");
        std::process::exit(2)
    });
    let backing = std::fs::canonicalize(PathBuf::from(backing)).unwrap_or_else(|e| {
        eprintln!("crashfs: backing directory: {e}");
        std::process::exit(1)
    });

    // The signals are taken by one thread with sigwait, not by handlers; blocked before any
    // other thread exists, so that every thread inherits the mask.
    let mut set = SigSet::empty();
    for s in [Signal::SIGUSR1, Signal::SIGTERM, Signal::SIGINT] {
        set.add(s);
    }
    if let Err(e) = set.thread_block() {
        eprintln!("crashfs: cannot block signals: {e}");
        std::process::exit(1)
    }

    let core = match Core::new(&backing, names) {
        Ok(mut core) => {
            if let Some(seed) = torn {
                core.tear(seed);
            }
            Arc::new(Mutex::new(Some(core)))
        }
        Err(e) => {
            eprintln!("crashfs: {e}");
            std::process::exit(1)
        }
    };
    let cut = Arc::new(AtomicBool::new(false));
    let options = [
        fuser::MountOption::FSName("crashfs".into()),
        fuser::MountOption::RW,
    ];
    let fs = CrashFs::new(core.clone(), cut.clone());
    let mut session = match fuser::Session::new(fs, &mountpoint, &options) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("crashfs: cannot mount {mountpoint}: {e}");
            let _ = core.lock().unwrap().take().map(Core::settle);
            std::process::exit(1)
        }
    };
    let mut unmounter = session.unmount_callable();
    let signalled = cut.clone();
    std::thread::spawn(move || {
        loop {
            let Ok(sig) = set.wait() else {
                continue;
            };
            if sig == Signal::SIGUSR1 {
                signalled.store(true, Ordering::SeqCst);
                println!("cut");
                let _ = std::io::stdout().flush();
            } else {
                let _ = unmounter.unmount();
                return;
            }
        }
    });
    println!("ready");
    let _ = std::io::stdout().flush();
    let run = session.run();
    drop(session);
    let core = core.lock().unwrap().take().expect("core");
    let end = if cut.load(Ordering::SeqCst) {
        core.cut().map(|r| {
            for name in &r.changed {
                eprintln!("crashfs: name rolled back: {name}");
            }
            format!(
                "rolled back: {} files ({} bytes), {} directories ({} names); torn: {} pages kept, {} files cut short",
                r.files, r.bytes, r.dirs, r.names, r.kept_pages, r.torn_files
            )
        })
    } else {
        core.settle()
            .map(|()| "unmounted cleanly: everything kept".to_owned())
    };
    match (run, end) {
        (Ok(()), Ok(line)) => println!("{line}"),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("crashfs: {e}");
            std::process::exit(1)
        }
    }
}
