//! A writer for the newc cpio format, the one the kernel unpacks as an initramfs.
//!
//! Written here rather than shelling out to `cpio` so that device nodes and modes do not
//! depend on the host's files, and so the per-run archive needs no temporary tree.
use std::collections::BTreeSet;

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

/// One newc archive, built in memory. Parent directories are emitted automatically,
/// because the kernel's unpacker does not create missing parents.
pub struct Cpio {
    buf: Vec<u8>,
    next_ino: u32,
    dirs: BTreeSet<String>,
}

impl Cpio {
    pub fn new() -> Self {
        // Inode numbers only matter for hard links (nlink > 1), which this writer never emits.
        Self { buf: Vec::new(), next_ino: 1000, dirs: BTreeSet::new() }
    }

    pub fn dir(&mut self, path: &str, mode: u32) {
        let path = clean(path);
        if path.is_empty() || self.dirs.contains(&path) {
            return;
        }
        self.parents(&path);
        self.entry(&path, S_IFDIR | (mode & 0o7777), 2, (0, 0), &[]);
        self.dirs.insert(path);
    }

    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) {
        let path = clean(path);
        self.parents(&path);
        self.entry(&path, S_IFREG | (mode & 0o7777), 1, (0, 0), data);
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        let path = clean(path);
        self.parents(&path);
        self.entry(&path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes());
    }

    pub fn char_dev(&mut self, path: &str, mode: u32, major: u32, minor: u32) {
        let path = clean(path);
        self.parents(&path);
        self.entry(&path, S_IFCHR | (mode & 0o7777), 1, (major, minor), &[]);
    }

    /// Close the archive with the trailer entry and return its bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, 1, (0, 0), &[]);
        self.buf
    }

    fn parents(&mut self, path: &str) {
        let mut prefix = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if !self.dirs.contains(&prefix) {
                self.entry(&prefix.clone(), S_IFDIR | 0o755, 2, (0, 0), &[]);
                self.dirs.insert(prefix.clone());
            }
        }
    }

    fn entry(&mut self, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) {
        let ino = self.next_ino;
        self.next_ino += 1;
        let fields = [
            ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime: fixed so archives are reproducible
            u32::try_from(data.len()).unwrap_or(u32::MAX),
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            u32::try_from(name.len() + 1).unwrap_or(u32::MAX),
            0, // check
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }
}

fn clean(path: &str) -> String {
    path.trim_start_matches('/').trim_end_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_matches_newc() {
        let mut c = Cpio::new();
        c.file("/a/b", 0o644, b"xyz");
        let bytes = c.finish();
        // Parent "a" comes first, then "a/b", then the trailer.
        assert_eq!(&bytes[..6], b"070701");
        let text = String::from_utf8_lossy(&bytes);
        let a = text.find("a\0").expect("parent dir entry");
        let ab = text.find("a/b\0").expect("file entry");
        let trailer = text.find("TRAILER!!!\0").expect("trailer");
        assert!(a < ab && ab < trailer);
        assert_eq!(bytes.len() % 4, 0);
        // The header is 110 bytes before the name; the mode is its second field.
        let mode = &text[ab - 110 + 14..ab - 110 + 22];
        assert_eq!(mode, "000081a4", "regular file 0644");
        let size = &text[ab - 110 + 54..ab - 110 + 62];
        assert_eq!(size, "00000003");
    }

    #[test]
    fn directories_are_emitted_once() {
        let mut c = Cpio::new();
        c.dir("lib", 0o755);
        c.file("lib/x", 0o644, b"");
        c.file("lib/y", 0o644, b"");
        let text = String::from_utf8_lossy(&c.finish()).into_owned();
        assert_eq!(text.matches("lib\0").count(), 1);
    }
}
