//! Where tape files live: the [`Store`] the writer writes through (a directory on disk, or in
//! tests a slow or failing one) and its open files.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// Buffer of one open tape file.
const FILE_BUFFER: usize = 64 * 1024;

/// One open tape file.
pub trait TapeFile: Write + Send {
    /// Hands buffered bytes to the kernel and fsyncs them.
    fn sync(&mut self) -> io::Result<()>;
}

/// Where tape files live.
pub trait Store: Send {
    /// Creates the file `name`; fails with `AlreadyExists` if it exists.
    fn create(&mut self, name: &str) -> io::Result<Box<dyn TapeFile>>;
    /// Opens the existing file `name` for appending.
    fn append(&mut self, name: &str) -> io::Result<Box<dyn TapeFile>>;
    /// Deletes tape files last modified more than `keep` ago, except those `in_use` names;
    /// returns how many went.
    fn sweep(&mut self, keep: Duration, in_use: &dyn Fn(&str) -> bool) -> usize;
}

/// A directory on disk.
pub struct DirStore {
    dir: PathBuf,
}

impl DirStore {
    /// Tapes in `dir` (which exists).
    pub fn new(dir: PathBuf) -> DirStore {
        DirStore { dir }
    }
}

struct DiskFile(BufWriter<std::fs::File>);

impl Write for DiskFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl TapeFile for DiskFile {
    fn sync(&mut self) -> io::Result<()> {
        self.0.flush()?;
        self.0.get_ref().sync_data()
    }
}

impl Store for DirStore {
    fn create(&mut self, name: &str) -> io::Result<Box<dyn TapeFile>> {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(self.dir.join(name))?;
        Ok(Box::new(DiskFile(BufWriter::with_capacity(FILE_BUFFER, f))))
    }

    fn append(&mut self, name: &str) -> io::Result<Box<dyn TapeFile>> {
        let f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join(name))?;
        Ok(Box::new(DiskFile(BufWriter::with_capacity(FILE_BUFFER, f))))
    }

    fn sweep(&mut self, keep: Duration, in_use: &dyn Fn(&str) -> bool) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let now = SystemTime::now();
        let mut removed = 0;
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if !name.ends_with(".jsonl") || name.starts_with('.') || in_use(name) {
                continue;
            }
            let old = e
                .metadata()
                .ok()
                .filter(|m| m.is_file())
                .and_then(|m| m.modified().ok())
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > keep);
            if old && std::fs::remove_file(e.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }
}
