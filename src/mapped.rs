//! The bytes of a stored index file: owned (an index just built) or
//! memory-mapped (an index opened), behind one read-only view.
//!
//! Index files are opened by mapping them, not by reading and rebuilding
//! them, so that opening costs a checksum pass and no per-item work, and
//! only the pages a query touches become resident. Files of a generation
//! are never modified in place: a new generation is written under a new
//! directory and switched to by renaming `CURRENT` (see
//! [`crate::index`]), so a mapping stays valid for the life of the opened
//! index (on Unix a removed file stays mapped until it is unmapped).

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

/// Bytes read from a file larger than this are hashed in pieces of this
/// size (1 MiB: large enough that `crc32fast`'s SIMD path dominates, small
/// enough to stay in cache).
const CRC_CHUNK: usize = 1 << 20;

/// Read-only bytes, 8-byte aligned at their start (so that `u64` and
/// posting arrays at 8-byte aligned offsets can be viewed in place).
#[derive(Clone)]
pub struct Bytes(Arc<Inner>);

enum Inner {
    /// Built in memory: `u64` words, so the start is 8-byte aligned; `len`
    /// bytes of them are the contents.
    Owned { words: Vec<u64>, len: usize },
    /// A file mapped read-only (page-aligned).
    Mapped(memmap2::Mmap),
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &*self.0 {
            Inner::Owned { .. } => "owned",
            Inner::Mapped(_) => "mapped",
        };
        write!(f, "Bytes({kind}, {} bytes)", self.len())
    }
}

impl Default for Bytes {
    fn default() -> Self {
        Bytes::from_vec(Vec::new())
    }
}

impl Bytes {
    /// Owned bytes (copied once into an 8-byte aligned buffer).
    pub fn from_vec(v: Vec<u8>) -> Self {
        let len = v.len();
        let mut words = vec![0u64; len.div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..len].copy_from_slice(&v);
        Bytes(Arc::new(Inner::Owned { words, len }))
    }

    /// Maps the file at `path` read-only.
    ///
    /// # Errors
    ///
    /// The I/O error of opening or mapping it.
    pub fn map(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::File::open(path)?;
        if file.metadata()?.len() == 0 {
            // nothing to map (mapping zero bytes fails on some platforms)
            return Ok(Bytes::default());
        }
        // SAFETY: the mapping is read-only, and index files are never
        // written in place once their generation is live (a new generation
        // is a new directory; see the module docs). Another process
        // truncating the file anyway is outside what the index supports,
        // as for every memory-mapping reader.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Ok(Bytes(Arc::new(Inner::Mapped(map))))
    }

    /// The contents.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        match &*self.0 {
            Inner::Owned { words, len } => &bytemuck::cast_slice::<u64, u8>(words)[..*len],
            Inner::Mapped(m) => m,
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the bytes are a mapped file.
    pub fn is_mapped(&self) -> bool {
        matches!(&*self.0, Inner::Mapped(_))
    }
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

/// The size and CRC-32 (IEEE) of the file at `path`, read in pieces
/// through a small buffer: the pages go to the page cache, not into the
/// reader's resident memory as touching a mapping would.
///
/// # Errors
///
/// The I/O error of opening or reading it.
pub fn file_crc(path: &Path) -> std::io::Result<(u64, u32)> {
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; CRC_CHUNK];
    let mut h = crc32fast::Hasher::new();
    let mut total = 0u64;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_and_mapped_bytes_read_the_same_and_are_aligned() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let owned = Bytes::from_vec(data.clone());
        assert_eq!(owned.as_slice(), &data[..]);
        assert_eq!(owned.as_ptr() as usize % 8, 0);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, &data).unwrap();
        let mapped = Bytes::map(&p).unwrap();
        assert!(mapped.is_mapped() && !owned.is_mapped());
        assert_eq!(mapped.as_slice(), &data[..]);
        assert_eq!(mapped.as_ptr() as usize % 8, 0);
        assert_eq!(file_crc(&p).unwrap(), (1000, crc32fast::hash(&data)));
        std::fs::write(&p, b"").unwrap();
        assert!(Bytes::map(&p).unwrap().is_empty());
    }
}
