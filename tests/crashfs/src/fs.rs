//! The FUSE skin over `Core`: requests in, the backing tree's answers out, and after the cut
//! nothing but EIO, as from a machine that is off.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    FileAttr, FileType, Filesystem, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
};

use crate::core::{Core, ROOT};

/// Short, so that the kernel asks again rather than trusting what a rename changed.
const TTL: Duration = Duration::from_secs(1);

pub struct CrashFs {
    pub core: Arc<Mutex<Option<Core>>>,
    pub cut: Arc<AtomicBool>,
    files: HashMap<u64, File>,
    next_fh: u64,
}

impl CrashFs {
    pub fn new(core: Arc<Mutex<Option<Core>>>, cut: Arc<AtomicBool>) -> CrashFs {
        CrashFs {
            core,
            cut,
            files: HashMap::new(),
            next_fh: 1,
        }
    }

    /// The core, or EIO once the power is off.
    fn with<T>(&self, f: impl FnOnce(&mut Core) -> io::Result<T>) -> Result<T, i32> {
        if self.cut.load(Ordering::SeqCst) {
            return Err(libc::EIO);
        }
        let mut core = self.core.lock().unwrap();
        let core = core.as_mut().ok_or(libc::EIO)?;
        f(core).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
    }

    fn file(&self, fh: u64) -> io::Result<&File> {
        self.files
            .get(&fh)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))
    }

    fn keep(&mut self, file: File) -> u64 {
        let fh = self.next_fh;
        self.next_fh += 1;
        self.files.insert(fh, file);
        fh
    }
}

fn time(secs: i64, nsecs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsecs as u32)
    } else {
        UNIX_EPOCH
    }
}

fn attr(ino: u64, m: &std::fs::Metadata) -> FileAttr {
    let ft = m.file_type();
    let kind = if ft.is_dir() {
        FileType::Directory
    } else if ft.is_symlink() {
        FileType::Symlink
    } else {
        FileType::RegularFile
    };
    FileAttr {
        ino,
        size: m.size(),
        blocks: m.blocks(),
        atime: time(m.atime(), m.atime_nsec()),
        mtime: time(m.mtime(), m.mtime_nsec()),
        ctime: time(m.ctime(), m.ctime_nsec()),
        crtime: UNIX_EPOCH,
        kind,
        perm: (m.mode() & 0o7777) as u16,
        nlink: m.nlink() as u32,
        uid: m.uid(),
        gid: m.gid(),
        rdev: m.rdev() as u32,
        blksize: m.blksize() as u32,
        flags: 0,
    }
}

fn when(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

impl Filesystem for CrashFs {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        match self.with(|c| c.lookup(parent, name)) {
            Ok((id, m)) => reply.entry(&TTL, &attr(id, &m), 0),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        match self.with(|c| c.metadata(ino)) {
            Ok(m) => reply.attr(&TTL, &attr(ino, &m)),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        let own = fh.and_then(|fh| self.files.get(&fh)).map(File::try_clone);
        let result = self.with(|c| {
            let path = c.path(ino);
            if let Some(mode) = mode {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
            }
            if uid.is_some() || gid.is_some() {
                std::os::unix::fs::lchown(&path, uid, gid)?;
            }
            if size.is_some() || atime.is_some() || mtime.is_some() {
                let file = match own {
                    Some(f) => f?,
                    None if c.metadata(ino)?.is_dir() => File::open(&path)?,
                    None => c.open(ino)?,
                };
                if let Some(size) = size {
                    c.set_len(ino, &file, size)?;
                }
                let mut times = std::fs::FileTimes::new();
                if let Some(t) = atime {
                    times = times.set_accessed(when(t));
                }
                if let Some(t) = mtime {
                    times = times.set_modified(when(t));
                }
                file.set_times(times)?;
            }
            c.metadata(ino)
        });
        match result {
            Ok(m) => reply.attr(&TTL, &attr(ino, &m)),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        match self.with(|c| c.mkdir(parent, name, mode & !umask)) {
            Ok((id, m)) => reply.entry(&TTL, &attr(id, &m), 0),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        match self.with(|c| c.unlink(parent, name)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        match self.with(|c| c.rmdir(parent, name)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
        reply: ReplyEmpty,
    ) {
        match self.with(|c| c.rename(parent, name, newparent, newname, flags)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        let result = self.with(|c| {
            let file = c.open(ino)?;
            if flags & libc::O_TRUNC != 0 {
                c.set_len(ino, &file, 0)?;
            }
            Ok(file)
        });
        match result {
            Ok(file) => {
                let fh = self.keep(file);
                reply.opened(fh, 0)
            }
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let result = self.with(|_| Ok(())).and_then(|()| {
            let file = self.file(fh).map_err(|_| libc::EBADF)?;
            let mut buf = vec![0; size as usize];
            let mut got = 0;
            while got < buf.len() {
                match file.read_at(&mut buf[got..], offset as u64 + got as u64) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.raw_os_error().unwrap_or(libc::EIO)),
                }
            }
            buf.truncate(got);
            Ok(buf)
        });
        match result {
            Ok(buf) => reply.data(&buf),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        let file = self.file(fh).and_then(File::try_clone);
        match self.with(|c| c.write(ino, &file?, offset as u64, data)) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _lock: u64, reply: ReplyEmpty) {
        // Closing a file syncs nothing.
        reply.ok();
    }

    fn release(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        _lock_owner: Option<u64>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.files.remove(&fh);
        reply.ok();
    }

    fn fsync(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, _data: bool, reply: ReplyEmpty) {
        match self.with(|c| c.fsync(ino)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        let result = self.with(|c| {
            let parent = if ino == ROOT {
                ROOT
            } else {
                c.lookup_parent(ino)?
            };
            let mut all = vec![(".".into(), ino, true), ("..".into(), parent, true)];
            all.extend(c.entries(ino)?);
            Ok(all)
        });
        match result {
            Ok(entries) => {
                for (i, (name, id, dir)) in entries.into_iter().enumerate().skip(offset as usize) {
                    let kind = if dir {
                        FileType::Directory
                    } else {
                        FileType::RegularFile
                    };
                    if reply.add(id, i as i64 + 1, kind, name) {
                        break;
                    }
                }
                reply.ok()
            }
            Err(e) => reply.error(e),
        }
    }

    fn fsyncdir(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, _d: bool, reply: ReplyEmpty) {
        match self.with(|c| c.fsyncdir(ino)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        let result =
            self.with(|c| nix::sys::statvfs::statvfs(&c.path(ROOT)).map_err(io::Error::from));
        match result {
            Ok(st) => reply.statfs(
                st.blocks(),
                st.blocks_free(),
                st.blocks_available(),
                st.files(),
                st.files_free(),
                st.block_size() as u32,
                st.name_max() as u32,
                st.fragment_size() as u32,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn access(&mut self, _req: &Request<'_>, ino: u64, _mask: i32, reply: ReplyEmpty) {
        match self.with(|c| c.metadata(ino)) {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let exclusive = flags & libc::O_EXCL != 0;
        match self.with(|c| c.create(parent, name, mode & !umask & 0o7777, exclusive)) {
            Ok((id, file, m)) => {
                let fh = self.keep(file);
                reply.created(&TTL, &attr(id, &m), 0, fh, 0)
            }
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        offset: i64,
        length: i64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let file = self.file(fh).and_then(File::try_clone);
        match self.with(|c| c.fallocate(ino, &file?, mode, offset as u64, length as u64)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}
