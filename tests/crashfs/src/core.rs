//! What a power cut would leave, kept beside a live directory tree.
//!
//! Every change goes straight to the backing directory, so that reads need no merging; what
//! is kept apart is the way back. For each file changed since its last fsync or fdatasync, the
//! bytes each write, truncation or hole overwrote (within the length the file had at that
//! sync) and that length; for each directory changed since its last fsync, its entries as of
//! that fsync. Names that leave the live tree (unlink, rmdir, a rename over them) are moved
//! into a hidden attic rather than deleted, so that a cut can bring them back. The cut rolls
//! every file back to its synced bytes and every directory back to its synced entries, and
//! what is then left in the backing directory is what the disk would hold.
//!
//! Only data and names are modelled: permissions and times are passed through as they are.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The attic, a hidden directory at the root of the backing tree.
pub const ATTIC: &str = ".crashfs-attic";
/// FUSE's root inode.
pub const ROOT: u64 = 1;
const ATTIC_NODE: u64 = u64::MAX;

/// When a name change (create, unlink, rename…) reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    /// Only an fsync of the directory holding the name makes it durable, as POSIX promises.
    Posix,
    /// Any fsync makes every earlier name change durable, as ext4's single journal does in
    /// practice (the transaction an fsync commits holds all metadata changed before it).
    Journal,
}

struct Node {
    parent: u64,
    name: OsString,
    dir: bool,
    backing: (u64, u64),
}

/// How to put a file back as its last sync left it.
struct Undo {
    len: u64,
    /// (offset, bytes overwritten), oldest first.
    chunks: Vec<(u64, Vec<u8>)>,
}

/// What a cut threw away.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CutReport {
    /// Files whose bytes or length went back to their last sync.
    pub files: usize,
    /// Bytes written back over un-synced changes.
    pub bytes: u64,
    /// Directories whose entries went back to their last sync.
    pub dirs: usize,
    /// Live names that the cut removed or brought back.
    pub names: usize,
    /// Those names, relative to the backing directory: `-` removed, `+` brought back.
    pub changed: Vec<String>,
    /// With torn writes: pages of un-synced bytes the disk kept, and files left with a length
    /// between their synced one and their last one.
    pub kept_pages: usize,
    pub torn_files: usize,
}

pub struct Core {
    root: PathBuf,
    names: Names,
    nodes: HashMap<u64, Node>,
    by_backing: HashMap<(u64, u64), u64>,
    next: u64,
    undo: HashMap<u64, Undo>,
    /// Directory → its entries at its last sync, for those changed since.
    synced: HashMap<u64, BTreeMap<OsString, u64>>,
    /// Torn writes (`tear`): the seed deciding which un-synced pages the disk had written.
    torn: Option<u64>,
}

/// The disk's unit of writing, for torn writes.
const PAGE: u64 = 4096;

/// A well-mixed 64-bit hash (splitmix64's finaliser): the same page of the same file always
/// gets the same fate within a cut, whichever saved chunk covers it.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

impl Core {
    /// Takes over `root`, whose present content is taken as synced.
    pub fn new(root: &Path, names: Names) -> io::Result<Core> {
        let attic = root.join(ATTIC);
        if attic.exists() {
            return Err(io::Error::other(format!(
                "{} exists: a previous crashfs over this directory did not finish",
                attic.display()
            )));
        }
        std::fs::DirBuilder::new().mode(0o700).create(&attic)?;
        let meta = std::fs::metadata(root)?;
        let mut core = Core {
            root: root.to_owned(),
            names,
            nodes: HashMap::new(),
            by_backing: HashMap::new(),
            next: ROOT + 1,
            undo: HashMap::new(),
            synced: HashMap::new(),
            torn: None,
        };
        core.nodes.insert(
            ROOT,
            Node {
                parent: ROOT,
                name: OsString::new(),
                dir: true,
                backing: (meta.dev(), meta.ino()),
            },
        );
        core.by_backing.insert((meta.dev(), meta.ino()), ROOT);
        Ok(core)
    }

    /// At the cut, un-synced writes are no longer all dropped: as a disk's write-back may
    /// have reached any of them in any order, each page of un-synced bytes is kept or
    /// dropped at random, and a file that grew ends anywhere between its synced length and
    /// its last one, the part the disk never got reading as zeros.
    pub fn tear(&mut self, seed: u64) {
        self.torn = Some(seed);
    }

    pub fn path(&self, id: u64) -> PathBuf {
        if id == ROOT {
            return self.root.clone();
        }
        if id == ATTIC_NODE {
            return self.root.join(ATTIC);
        }
        let node = &self.nodes[&id];
        self.path(node.parent).join(&node.name)
    }

    fn known(&self, id: u64) -> io::Result<&Node> {
        self.nodes.get(&id).ok_or_else(|| errno(libc::ENOENT))
    }

    /// The node for the entry `name` of `parent`, as the backing tree has it now.
    fn node_at(&mut self, parent: u64, name: &OsStr, meta: &std::fs::Metadata) -> u64 {
        let key = (meta.dev(), meta.ino());
        let id = match self.by_backing.get(&key) {
            Some(id) => *id,
            None => {
                let id = self.next;
                self.next += 1;
                self.by_backing.insert(key, id);
                id
            }
        };
        self.nodes.insert(
            id,
            Node {
                parent,
                name: name.to_owned(),
                dir: meta.is_dir(),
                backing: key,
            },
        );
        id
    }

    pub fn lookup(&mut self, parent: u64, name: &OsStr) -> io::Result<(u64, std::fs::Metadata)> {
        self.known(parent)?;
        if parent == ROOT && name == ATTIC {
            return Err(errno(libc::ENOENT));
        }
        let meta = std::fs::symlink_metadata(self.path(parent).join(name))?;
        Ok((self.node_at(parent, name, &meta), meta))
    }

    pub fn lookup_parent(&self, id: u64) -> io::Result<u64> {
        Ok(self.known(id)?.parent)
    }

    pub fn metadata(&self, id: u64) -> io::Result<std::fs::Metadata> {
        self.known(id)?;
        std::fs::symlink_metadata(self.path(id))
    }

    /// The live entries of a directory: (name, node, is a directory).
    pub fn entries(&mut self, dir: u64) -> io::Result<Vec<(OsString, u64, bool)>> {
        let path = self.path(dir);
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&path)? {
            let entry = entry?;
            let name = entry.file_name();
            if dir == ROOT && name == ATTIC {
                continue;
            }
            let meta = std::fs::symlink_metadata(entry.path())?;
            let id = self.node_at(dir, &name, &meta);
            out.push((name, id, meta.is_dir()));
        }
        out.sort();
        Ok(out)
    }

    /// Opens the backing file read-write whatever the caller asked: saving what a write
    /// overwrites needs to read it.
    pub fn open(&self, id: u64) -> io::Result<File> {
        self.known(id)?;
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.path(id))
    }

    fn undo_for(&mut self, id: u64, file: &File) -> io::Result<(&mut Undo, u64)> {
        let len = file.metadata()?.len();
        let undo = self.undo.entry(id).or_insert_with(|| Undo {
            len,
            chunks: vec![],
        });
        Ok((undo, len))
    }

    /// Saves what lies in [from, to) and was synced, before it changes.
    fn save(&mut self, id: u64, file: &File, from: u64, to: u64) -> io::Result<()> {
        let (undo, len) = self.undo_for(id, file)?;
        let end = to.min(len).min(undo.len);
        if from < end {
            let mut old = vec![0; (end - from) as usize];
            file.read_exact_at(&mut old, from)?;
            undo.chunks.push((from, old));
        }
        Ok(())
    }

    pub fn write(&mut self, id: u64, file: &File, offset: u64, data: &[u8]) -> io::Result<()> {
        self.save(id, file, offset, offset + data.len() as u64)?;
        file.write_all_at(data, offset)
    }

    pub fn set_len(&mut self, id: u64, file: &File, len: u64) -> io::Result<()> {
        self.save(id, file, len, u64::MAX)?;
        file.set_len(len)
    }

    /// fallocate(2): plain allocation, punching a hole and zeroing a range are kept apart;
    /// collapsing or inserting a range shifts bytes and is refused.
    pub fn fallocate(
        &mut self,
        id: u64,
        file: &File,
        mode: i32,
        offset: u64,
        len: u64,
    ) -> io::Result<()> {
        let shifts = libc::FALLOC_FL_COLLAPSE_RANGE | libc::FALLOC_FL_INSERT_RANGE;
        if mode & shifts != 0 {
            return Err(errno(libc::EOPNOTSUPP));
        }
        if mode & (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_ZERO_RANGE) != 0 {
            self.save(id, file, offset, offset.saturating_add(len))?;
        } else {
            // The length may grow: remember the synced one.
            self.undo_for(id, file)?;
        }
        nix::fcntl::fallocate(
            file,
            nix::fcntl::FallocateFlags::from_bits_retain(mode),
            offset as i64,
            len as i64,
        )
        .map_err(io::Error::from)
    }

    /// fsync or fdatasync of a file: its bytes and length are now on disk.
    pub fn fsync(&mut self, id: u64) -> io::Result<()> {
        self.known(id)?;
        self.undo.remove(&id);
        if self.names == Names::Journal {
            self.synced.clear();
            self.collect_attic()?;
        }
        Ok(())
    }

    /// fsync of a directory: its entries are now on disk.
    pub fn fsyncdir(&mut self, id: u64) -> io::Result<()> {
        self.known(id)?;
        if self.names == Names::Journal {
            self.synced.clear();
        } else {
            self.synced.remove(&id);
        }
        self.collect_attic()
    }

    /// Remembers the directory's entries before its first change since its last sync.
    fn changing(&mut self, dir: u64) -> io::Result<()> {
        if !self.synced.contains_key(&dir) {
            let entries = self
                .entries(dir)?
                .into_iter()
                .map(|(name, id, _)| (name, id))
                .collect();
            self.synced.insert(dir, entries);
        }
        Ok(())
    }

    pub fn create(
        &mut self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        exclusive: bool,
    ) -> io::Result<(u64, File, std::fs::Metadata)> {
        self.known(parent)?;
        let path = self.path(parent).join(name);
        if !exclusive && path.exists() {
            let (id, _) = self.lookup(parent, name)?;
            let file = self.open(id)?;
            let meta = file.metadata()?;
            return Ok((id, file, meta));
        }
        self.changing(parent)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)?;
        let meta = file.metadata()?;
        let id = self.node_at(parent, name, &meta);
        // Nothing of a new file is synced: not even its length.
        self.undo.insert(
            id,
            Undo {
                len: 0,
                chunks: vec![],
            },
        );
        Ok((id, file, meta))
    }

    pub fn mkdir(
        &mut self,
        parent: u64,
        name: &OsStr,
        mode: u32,
    ) -> io::Result<(u64, std::fs::Metadata)> {
        self.known(parent)?;
        self.changing(parent)?;
        let path = self.path(parent).join(name);
        std::fs::DirBuilder::new().mode(mode).create(&path)?;
        let meta = std::fs::symlink_metadata(&path)?;
        Ok((self.node_at(parent, name, &meta), meta))
    }

    /// Moves a node out of the live tree, into the attic.
    fn move_to_attic(&mut self, id: u64) -> io::Result<()> {
        let name = OsString::from(id.to_string());
        std::fs::rename(self.path(id), self.root.join(ATTIC).join(&name))?;
        let node = self.nodes.get_mut(&id).expect("known node");
        node.parent = ATTIC_NODE;
        node.name = name;
        Ok(())
    }

    pub fn unlink(&mut self, parent: u64, name: &OsStr) -> io::Result<()> {
        let (id, meta) = self.lookup(parent, name)?;
        if meta.is_dir() {
            return Err(errno(libc::EISDIR));
        }
        self.changing(parent)?;
        self.move_to_attic(id)
    }

    pub fn rmdir(&mut self, parent: u64, name: &OsStr) -> io::Result<()> {
        let (id, meta) = self.lookup(parent, name)?;
        if !meta.is_dir() {
            return Err(errno(libc::ENOTDIR));
        }
        if std::fs::read_dir(self.path(id))?.next().is_some() {
            return Err(errno(libc::ENOTEMPTY));
        }
        self.changing(parent)?;
        self.move_to_attic(id)
    }

    pub fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        flags: u32,
    ) -> io::Result<()> {
        if flags & libc::RENAME_EXCHANGE != 0 {
            return Err(errno(libc::EINVAL));
        }
        let (id, meta) = self.lookup(parent, name)?;
        let target = match self.lookup(new_parent, new_name) {
            Ok(found) => Some(found),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if let Some((target, target_meta)) = &target {
            if *target == id {
                return Ok(());
            }
            if flags & libc::RENAME_NOREPLACE != 0 {
                return Err(errno(libc::EEXIST));
            }
            match (meta.is_dir(), target_meta.is_dir()) {
                (true, false) => return Err(errno(libc::ENOTDIR)),
                (false, true) => return Err(errno(libc::EISDIR)),
                (true, true) if std::fs::read_dir(self.path(*target))?.next().is_some() => {
                    return Err(errno(libc::ENOTEMPTY));
                }
                _ => {}
            }
        }
        self.changing(parent)?;
        self.changing(new_parent)?;
        if let Some((target, _)) = target {
            self.move_to_attic(target)?;
        }
        std::fs::rename(self.path(id), self.path(new_parent).join(new_name))?;
        let node = self.nodes.get_mut(&id).expect("known node");
        node.parent = new_parent;
        node.name = new_name.to_owned();
        Ok(())
    }

    /// Deletes for good what no synced directory still names.
    fn collect_attic(&mut self) -> io::Result<()> {
        loop {
            let named: HashSet<u64> = self
                .synced
                .values()
                .flat_map(|entries| entries.values().copied())
                .collect();
            let gone: Vec<u64> = self
                .nodes
                .iter()
                .filter(|(id, n)| n.parent == ATTIC_NODE && !named.contains(id))
                .map(|(id, _)| *id)
                .collect();
            if gone.is_empty() {
                return Ok(());
            }
            for id in gone {
                let path = self.path(id);
                let node = self.nodes.remove(&id).expect("listed node");
                if node.dir {
                    std::fs::remove_dir_all(path)?;
                } else {
                    std::fs::remove_file(path)?;
                }
                self.by_backing.remove(&node.backing);
                self.undo.remove(&id);
                self.synced.remove(&id);
            }
        }
    }

    /// The power cut: rolls the backing tree back to what was synced, and ends this core.
    pub fn cut(mut self) -> io::Result<CutReport> {
        let mut report = CutReport::default();
        // Where each node must end up, read before anything moves: (node, parent, name).
        let mut targets = Vec::new();
        let mut stack = vec![ROOT];
        let mut seen = HashSet::from([ROOT]);
        while let Some(dir) = stack.pop() {
            let entries: Vec<(OsString, u64)> = match self.synced.get(&dir) {
                Some(synced) => synced.iter().map(|(n, id)| (n.clone(), *id)).collect(),
                None => self
                    .entries(dir)?
                    .into_iter()
                    .map(|(n, id, _)| (n, id))
                    .collect(),
            };
            for (name, id) in entries {
                targets.push((id, dir, name));
                if self.nodes[&id].dir && seen.insert(id) {
                    stack.push(id);
                }
            }
        }
        report.dirs = self.synced.len();

        for (id, undo) in std::mem::take(&mut self.undo) {
            let file = self.open(id)?;
            match self.torn {
                None => {
                    for (offset, old) in undo.chunks.iter().rev() {
                        file.write_all_at(old, *offset)?;
                        report.bytes += old.len() as u64;
                    }
                    file.set_len(undo.len)?;
                }
                Some(seed) => tear_file(&file, &undo, mix(seed ^ mix(id)), &mut report)?,
            }
            report.files += 1;
        }

        // Every live name into the attic, children before their directory…
        let mut live = Vec::new();
        let mut stack = vec![(ROOT, false)];
        while let Some((dir, expanded)) = stack.pop() {
            if expanded {
                if dir != ROOT {
                    live.push(dir);
                }
                continue;
            }
            stack.push((dir, true));
            for (_, id, is_dir) in self.entries(dir)? {
                if is_dir {
                    stack.push((id, false));
                } else {
                    live.push(id);
                }
            }
        }
        let before: HashMap<(u64, u64, OsString), PathBuf> = live
            .iter()
            .map(|id| {
                let n = &self.nodes[id];
                let path = self.path(*id);
                let path = path.strip_prefix(&self.root).unwrap_or(&path).to_owned();
                ((*id, n.parent, n.name.clone()), path)
            })
            .collect();
        for id in live {
            self.move_to_attic(id)?;
        }
        // …then each synced name back from it, directories before their entries.
        let mut placed = HashSet::new();
        for (id, parent, name) in targets {
            let to = self.path(parent).join(&name);
            if !placed.insert(id) {
                // Named in two synced directories (a rename across them, half synced): the
                // second name gets a copy; a directory keeps its first name only.
                if !self.nodes[&id].dir {
                    std::fs::copy(self.path(id), &to)?;
                }
                continue;
            }
            std::fs::rename(self.path(id), &to)?;
            let node = self.nodes.get_mut(&id).expect("known node");
            node.parent = parent;
            node.name = name.clone();
            if !before.contains_key(&(id, parent, name)) {
                let to = to.strip_prefix(&self.root).unwrap_or(&to);
                report.changed.push(format!("+{}", to.display()));
            }
        }
        for ((id, parent, name), path) in &before {
            let n = &self.nodes[id];
            if (n.parent, &n.name) != (*parent, name) {
                report.changed.push(format!("-{}", path.display()));
            }
        }
        report.changed.sort();
        report.names = report.changed.len();
        std::fs::remove_dir_all(self.root.join(ATTIC))?;
        Ok(report)
    }

    /// A clean unmount: everything is on disk, and the attic goes.
    pub fn settle(self) -> io::Result<()> {
        std::fs::remove_dir_all(self.root.join(ATTIC))
    }
}

/// One file's un-synced changes, torn: each page's fate is drawn from `seed`.
fn tear_file(file: &File, undo: &Undo, seed: u64, report: &mut CutReport) -> io::Result<()> {
    let dropped = |page: u64| mix(seed ^ page).is_multiple_of(2);
    let mut kept = HashSet::new();
    for (offset, old) in undo.chunks.iter().rev() {
        let end = offset + old.len() as u64;
        let mut at = *offset;
        while at < end {
            let page = at / PAGE;
            let next = ((page + 1) * PAGE).min(end);
            let part = &old[(at - offset) as usize..(next - offset) as usize];
            if dropped(page) {
                file.write_all_at(part, at)?;
                report.bytes += part.len() as u64;
            } else {
                kept.insert(page);
            }
            at = next;
        }
    }
    let now = file.metadata()?.len();
    let len = if now > undo.len {
        // Grown: it ends anywhere in what was appended, byte-exact (a torn tail).
        let len = undo.len + mix(seed ^ u64::MAX) % (now - undo.len + 1);
        let mut at = undo.len;
        while at < len {
            let page = at / PAGE;
            let next = ((page + 1) * PAGE).min(len);
            if dropped(page) {
                file.write_all_at(&vec![0; (next - at) as usize], at)?;
                report.bytes += next - at;
            } else {
                kept.insert(page);
            }
            at = next;
        }
        len
    } else if mix(seed ^ 1).is_multiple_of(2) {
        undo.len
    } else {
        now
    };
    if len != undo.len {
        report.torn_files += 1;
    }
    report.kept_pages += kept.len();
    file.set_len(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A core over a fresh directory holding `synced` (name, content), taken as on disk.
    fn setup(synced: &[(&str, &str)], names: Names) -> (tempfile::TempDir, Core) {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in synced {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let core = Core::new(dir.path(), names).unwrap();
        (dir, core)
    }

    /// The tree as name → content, directories as "/".
    fn tree(root: &Path) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut stack = vec![root.to_owned()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                let name = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                if p.is_dir() {
                    out.insert(name, "/".into());
                    stack.push(p);
                } else {
                    out.insert(name, std::fs::read_to_string(&p).unwrap());
                }
            }
        }
        out
    }

    fn expect(dir: &tempfile::TempDir, want: &[(&str, &str)]) {
        let want: BTreeMap<String, String> = want
            .iter()
            .map(|(n, c)| (n.to_string(), c.to_string()))
            .collect();
        assert_eq!(tree(dir.path()), want);
    }

    fn os(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    fn write(core: &mut Core, id: u64, offset: u64, data: &str) {
        let file = core.open(id).unwrap();
        core.write(id, &file, offset, data.as_bytes()).unwrap();
    }

    #[test]
    fn a_write_without_fsync_is_gone_and_with_fsync_stays() {
        let (dir, mut core) = setup(&[("a", "synced"), ("b", "synced")], Names::Posix);
        let (a, _) = core.lookup(ROOT, os("a")).unwrap();
        let (b, _) = core.lookup(ROOT, os("b")).unwrap();
        write(&mut core, a, 0, "SYNCED and longer");
        write(&mut core, b, 2, "NC");
        core.fsync(a).unwrap();
        write(&mut core, a, 0, "lost");
        write(&mut core, b, 0, "overwritten and grown");
        let file = core.open(a).unwrap();
        core.set_len(a, &file, 3).unwrap();
        // Live reads see everything until the cut.
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a")).unwrap(),
            "los"
        );
        let report = core.cut().unwrap();
        expect(&dir, &[("a", "SYNCED and longer"), ("b", "synced")]);
        assert_eq!(report.files, 2);
        assert_eq!(report.names, 0);
    }

    #[test]
    fn a_punched_hole_and_a_truncation_come_back() {
        let (dir, mut core) = setup(&[("seg", "0123456789")], Names::Posix);
        let (seg, _) = core.lookup(ROOT, os("seg")).unwrap();
        let file = core.open(seg).unwrap();
        let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        core.fallocate(seg, &file, punch, 2, 4).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("seg")).unwrap(),
            b"01\0\0\0\x006789"
        );
        core.set_len(seg, &file, 1).unwrap();
        core.set_len(seg, &file, 20).unwrap();
        core.cut().unwrap();
        expect(&dir, &[("seg", "0123456789")]);

        // Synced, the hole stays.
        let (dir, mut core) = setup(&[("seg", "0123456789")], Names::Posix);
        let (seg, _) = core.lookup(ROOT, os("seg")).unwrap();
        let file = core.open(seg).unwrap();
        core.fallocate(seg, &file, punch, 2, 4).unwrap();
        core.fsync(seg).unwrap();
        core.cut().unwrap();
        expect(&dir, &[("seg", "01\0\0\0\x006789")]);
    }

    #[test]
    fn a_new_file_needs_its_fsync_and_its_directory_fsync() {
        let (dir, mut core) = setup(&[], Names::Posix);
        let (a, file, _) = core.create(ROOT, os("a"), 0o600, true).unwrap();
        core.write(a, &file, 0, b"data").unwrap();
        core.fsync(a).unwrap();
        let (b, file, _) = core.create(ROOT, os("b"), 0o600, true).unwrap();
        core.write(b, &file, 0, b"data").unwrap();
        core.fsyncdir(ROOT).unwrap();
        let (c, file, _) = core.create(ROOT, os("c"), 0o600, true).unwrap();
        core.write(c, &file, 0, b"data").unwrap();
        core.fsync(c).unwrap();
        core.cut().unwrap();
        // a: data synced, then named by the directory sync; b: named, its data never
        // synced; c: data synced, its name never.
        expect(&dir, &[("a", "data"), ("b", "")]);
    }

    #[test]
    fn a_rename_without_directory_fsync_is_undone() {
        let (dir, mut core) = setup(&[("old", "1"), ("target", "2")], Names::Posix);
        core.lookup(ROOT, os("old")).unwrap();
        core.rename(ROOT, os("old"), ROOT, os("target"), 0).unwrap();
        expect(
            &dir,
            &[(ATTIC, "/"), (&format!("{ATTIC}/3"), "2"), ("target", "1")],
        );
        let report = core.cut().unwrap();
        assert_eq!(report.changed, ["+old", "+target", "-target"]);
        expect(&dir, &[("old", "1"), ("target", "2")]);

        // The write-then-rename pattern, done right, survives whole.
        let (dir, mut core) = setup(&[("conf", "old")], Names::Posix);
        let (tmp, file, _) = core.create(ROOT, os("conf.tmp"), 0o600, true).unwrap();
        core.write(tmp, &file, 0, b"new").unwrap();
        core.fsync(tmp).unwrap();
        core.rename(ROOT, os("conf.tmp"), ROOT, os("conf"), 0)
            .unwrap();
        core.fsyncdir(ROOT).unwrap();
        assert!(
            !dir.path().join(ATTIC).join("2").exists(),
            "the replaced file is deleted once no synced directory names it"
        );
        core.cut().unwrap();
        expect(&dir, &[("conf", "new")]);
    }

    #[test]
    fn unlinked_files_and_new_directories_follow_their_directory() {
        let (dir, mut core) = setup(&[("gone", "kept")], Names::Posix);
        core.unlink(ROOT, os("gone")).unwrap();
        let (sub, _) = core.mkdir(ROOT, os("sub"), 0o700).unwrap();
        let (f, file, _) = core.create(sub, os("f"), 0o600, true).unwrap();
        core.write(f, &file, 0, b"x").unwrap();
        core.fsync(f).unwrap();
        core.fsyncdir(sub).unwrap();
        core.cut().unwrap();
        // sub's own entry was never synced in the root: it goes, with all it holds.
        expect(&dir, &[("gone", "kept")]);

        let (dir, mut core) = setup(&[("gone", "x")], Names::Posix);
        core.unlink(ROOT, os("gone")).unwrap();
        let (sub, _) = core.mkdir(ROOT, os("sub"), 0o700).unwrap();
        core.fsyncdir(ROOT).unwrap();
        let (f, _, _) = core.create(sub, os("f"), 0o600, true).unwrap();
        core.fsync(f).unwrap();
        core.fsyncdir(sub).unwrap();
        core.rmdir(ROOT, os("sub")).unwrap_err();
        core.cut().unwrap();
        expect(&dir, &[("sub", "/"), ("sub/f", "")]);
    }

    #[test]
    fn journal_mode_commits_every_name_with_any_fsync() {
        let (dir, mut core) = setup(&[("a", "1")], Names::Journal);
        let (b, file, _) = core.create(ROOT, os("b"), 0o600, true).unwrap();
        core.write(b, &file, 0, b"2").unwrap();
        core.rename(ROOT, os("a"), ROOT, os("c"), 0).unwrap();
        core.fsync(b).unwrap();
        core.unlink(ROOT, os("c")).unwrap();
        core.cut().unwrap();
        expect(&dir, &[("b", "2"), ("c", "1")]);
    }

    #[test]
    fn a_clean_unmount_keeps_everything() {
        let (dir, mut core) = setup(&[("a", "1")], Names::Posix);
        let (a, _) = core.lookup(ROOT, os("a")).unwrap();
        write(&mut core, a, 0, "2");
        core.unlink(ROOT, os("a")).unwrap();
        core.create(ROOT, os("b"), 0o600, true).unwrap();
        core.settle().unwrap();
        expect(&dir, &[("b", "")]);
    }

    #[test]
    fn torn_writes_keep_whole_pages_of_either_version_and_end_within_what_was_appended() {
        let page = PAGE as usize;
        let (mut whole_old, mut whole_new, mut torn_tails) = (0, 0, 0);
        for seed in 0..32 {
            let synced = "o".repeat(2 * page);
            let (dir, mut core) = setup(&[("f", &synced)], Names::Journal);
            core.tear(seed);
            let (f, _) = core.lookup(ROOT, os("f")).unwrap();
            write(&mut core, f, 0, &"n".repeat(2 * page));
            write(&mut core, f, 2 * PAGE, &"a".repeat(3 * page));
            let report = core.cut().unwrap();
            let after = std::fs::read(dir.path().join("f")).unwrap();
            assert!(after.len() >= 2 * page && after.len() <= 5 * page);
            for (i, chunk) in after.chunks(page).enumerate() {
                let first = chunk[0];
                let want: &[u8] = if i < 2 { b"on" } else { b"a\0" };
                assert!(want.contains(&first), "page {i} starts with {first}");
                assert!(chunk.iter().all(|&b| b == first), "page {i} is one version");
            }
            whole_old += (after[0] == b'o') as usize;
            whole_new += (after[0] == b'n') as usize;
            torn_tails += (after.len() % page != 0) as usize;
            assert_eq!(report.torn_files, (after.len() != 2 * page) as usize);
        }
        assert!(whole_old > 0 && whole_new > 0, "both fates occur");
        assert!(torn_tails > 0, "tails end inside a page");
    }
}
