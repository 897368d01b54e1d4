//! Inverted lists in compressed sparse row form: the table behind the
//! landmark index ([`crate::landmarks::LandmarkIndex`]) and the melodic
//! n-gram index ([`crate::ngrams::MelodicIndex`]).
//!
//! Every stored key (a landmark pair, a melodic n-gram) is a hash and a
//! [`Posting`] (which item, where in it). The postings of hash `h` are
//! `postings[starts[h]..starts[h + 1]]`, in item order and, within an item,
//! in the order its keys were given. [`PostingTable::build`] makes two
//! passes over the items (count, then place), so the keys are never held
//! twice: memory is 8 bytes per key plus 8 bytes per hash.
//!
//! An index stores each table as one file (`landmarks.post`,
//! `melodic.post`; [`PostingTable::file_parts`]) laid out so that an opened
//! index views it in place, memory-mapped ([`PostingTable::from_file`]),
//! instead of rebuilding it from the items. Little-endian, every array at
//! an 8-byte aligned offset:
//!
//! | offset | field | type |
//! |---|---|---|
//! | 0 | magic `RFRNPOST` | 8 bytes |
//! | 8 | index format version | `u32` |
//! | 12 | table kind ([`TableKind`]) | `u32` |
//! | 16 | analysis parameter hash | `u64` |
//! | 24 | hash count `H` | `u64` |
//! | 32 | posting count `P` | `u64` |
//! | 40 | `starts` | `H + 1` × `u64` |
//! | 40 + 8 (H + 1) | postings: item, position | `P` × (`u32`, `u32`) |
//!
//! The file is exactly that long; `starts[0] = 0`, `starts` never
//! decreases and `starts[H] = P`.

use crate::mapped::Bytes;

/// First bytes of a posting-table file.
pub const POST_MAGIC: &[u8; 8] = b"RFRNPOST";
/// Bytes before the `starts` array (a multiple of 8, so the arrays after
/// it are aligned for in-place views).
pub const POST_HEADER: usize = 40;

/// Which index a posting-table file holds (so that the two files cannot be
/// swapped unnoticed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum TableKind {
    /// Landmark pairs ([`crate::landmarks::LandmarkIndex`]).
    Landmarks = 1,
    /// Melodic n-grams ([`crate::ngrams::MelodicIndex`]).
    Melodic = 2,
}

/// One stored key: its item and its position in the item (a frame, an
/// event index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct Posting {
    /// Item id.
    pub item: u32,
    /// Position in the item.
    pub pos: u32,
}

/// The postings of every hash in `0..hashes`, built in memory or viewed in
/// a stored file.
#[derive(Debug, Clone)]
pub struct PostingTable {
    store: Store,
}

impl Default for PostingTable {
    fn default() -> Self {
        PostingTable {
            store: Store::Owned {
                starts: Vec::new(),
                postings: Vec::new(),
            },
        }
    }
}

#[derive(Debug, Clone)]
enum Store {
    /// Built: `starts[h]..starts[h + 1]` are the postings of hash `h`.
    Owned {
        starts: Vec<u64>,
        postings: Vec<Posting>,
    },
    /// A checked file image (see the module docs) of `hashes` hashes and
    /// `count` postings.
    File {
        bytes: Bytes,
        hashes: usize,
        count: usize,
    },
}

impl PostingTable {
    /// Builds the table for hashes `0..hashes` from `items` (item id =
    /// position). `keys(item, out)` appends the item's `(hash, position)`
    /// keys to `out` (cleared before each item); it is called twice per
    /// item and must give the same keys both times. Keys whose hash is not
    /// below `hashes` are left out.
    pub fn build<I>(
        hashes: usize,
        items: I,
        mut keys: impl FnMut(I::Item, &mut Vec<(u32, u32)>),
    ) -> Self
    where
        I: IntoIterator + Clone,
    {
        let mut starts = vec![0u64; hashes + 1];
        let mut k = Vec::new();
        for item in items.clone() {
            k.clear();
            keys(item, &mut k);
            for &(h, _) in k.iter().filter(|(h, _)| (*h as usize) < hashes) {
                starts[h as usize + 1] += 1;
            }
        }
        for h in 0..hashes {
            starts[h + 1] += starts[h];
        }
        let mut next = starts.clone();
        let mut postings = vec![Posting::default(); starts[hashes] as usize];
        for (id, item) in items.into_iter().enumerate() {
            k.clear();
            keys(item, &mut k);
            for &(h, pos) in k.iter().filter(|(h, _)| (*h as usize) < hashes) {
                let slot = &mut next[h as usize];
                postings[*slot as usize] = Posting {
                    item: id as u32,
                    pos,
                };
                *slot += 1;
            }
        }
        PostingTable {
            store: Store::Owned { starts, postings },
        }
    }

    /// The `starts` and posting arrays, wherever they are held.
    #[inline]
    fn arrays(&self) -> (&[u64], &[Posting]) {
        match &self.store {
            Store::Owned { starts, postings } => (starts, postings),
            Store::File {
                bytes,
                hashes,
                count,
            } => {
                // checked in `from_file`: in range and aligned, so the
                // fallbacks (an empty table) are never taken
                let s_end = POST_HEADER + 8 * (hashes + 1);
                let starts = bytes
                    .get(POST_HEADER..s_end)
                    .and_then(|b| bytemuck::try_cast_slice(b).ok())
                    .unwrap_or(&[]);
                let postings = bytes
                    .get(s_end..s_end + 8 * count)
                    .and_then(|b| bytemuck::try_cast_slice(b).ok())
                    .unwrap_or(&[]);
                (starts, postings)
            }
        }
    }

    /// The postings of `hash` (empty for a hash out of range or an empty
    /// table).
    #[inline]
    pub fn list(&self, hash: u32) -> &[Posting] {
        let h = hash as usize;
        let (starts, postings) = self.arrays();
        match starts.get(h..h + 2) {
            Some(s) => postings.get(s[0] as usize..s[1] as usize).unwrap_or(&[]),
            None => &[],
        }
    }

    /// Number of hashes the table covers (`0..hashes`).
    pub fn hashes(&self) -> usize {
        self.arrays().0.len().saturating_sub(1)
    }

    /// The file image (see the module docs) in three pieces to be written
    /// one after the other: header, `starts`, postings (borrowed, not
    /// copied, on a little-endian machine). A table built for 0 hashes is
    /// written as one of `hashes` empty lists.
    pub fn file_parts(
        &self,
        kind: TableKind,
        params_hash: u64,
        hashes: usize,
    ) -> [std::borrow::Cow<'_, [u8]>; 3] {
        use std::borrow::Cow;
        let (starts, postings) = self.arrays();
        let starts: Cow<'_, [u64]> = if starts.is_empty() {
            Cow::Owned(vec![0u64; hashes + 1])
        } else {
            Cow::Borrowed(starts)
        };
        let mut head = Vec::with_capacity(POST_HEADER);
        head.extend_from_slice(POST_MAGIC);
        head.extend_from_slice(&crate::index::INDEX_VERSION.to_le_bytes());
        head.extend_from_slice(&(kind as u32).to_le_bytes());
        head.extend_from_slice(&params_hash.to_le_bytes());
        head.extend_from_slice(&((starts.len() - 1) as u64).to_le_bytes());
        head.extend_from_slice(&(postings.len() as u64).to_le_bytes());
        debug_assert_eq!(head.len(), POST_HEADER);
        if cfg!(target_endian = "little") {
            let s = match starts {
                Cow::Borrowed(s) => Cow::Borrowed(bytemuck::cast_slice(s)),
                Cow::Owned(s) => Cow::Owned(bytemuck::cast_slice(&s).to_vec()),
            };
            return [
                Cow::Owned(head),
                s,
                Cow::Borrowed(bytemuck::cast_slice(postings)),
            ];
        }
        let s: Vec<u8> = starts.iter().flat_map(|x| x.to_le_bytes()).collect();
        let p: Vec<u8> = postings
            .iter()
            .flat_map(|x| x.item.to_le_bytes().into_iter().chain(x.pos.to_le_bytes()))
            .collect();
        [Cow::Owned(head), Cow::Owned(s), Cow::Owned(p)]
    }

    /// Views a stored table file (its whole bytes, checksum already
    /// checked), checking the header against `kind`, `params_hash` and
    /// `hashes`, the length, and that `starts` starts at 0, never decreases
    /// and ends at the posting count (one pass over `starts`, 8 bytes per
    /// hash; the postings are not read).
    ///
    /// # Errors
    ///
    /// What does not match, in words (the caller names the file).
    pub fn from_file(
        bytes: Bytes,
        kind: TableKind,
        params_hash: u64,
        hashes: usize,
    ) -> std::result::Result<Self, String> {
        if cfg!(target_endian = "big") {
            return Err("posting tables are little-endian; this machine is not".into());
        }
        let b = &bytes[..];
        let u32_at = |o: usize| {
            b.get(o..o + 4)
                .map(|x| u32::from_le_bytes(x.try_into().unwrap_or([0; 4])))
        };
        let u64_at = |o: usize| {
            b.get(o..o + 8)
                .map(|x| u64::from_le_bytes(x.try_into().unwrap_or([0; 8])))
        };
        if b.len() < POST_HEADER || &b[..8] != POST_MAGIC {
            return Err("not a posting table".into());
        }
        if u32_at(8) != Some(crate::index::INDEX_VERSION) {
            return Err("posting table of another format version".into());
        }
        if u32_at(12) != Some(kind as u32) {
            return Err(format!("not the {kind:?} posting table"));
        }
        if u64_at(16) != Some(params_hash) {
            return Err("posting table made with other analysis parameters".into());
        }
        if u64_at(24) != Some(hashes as u64) {
            return Err(format!("posting table does not cover {hashes} hashes"));
        }
        let count = u64_at(32).unwrap_or(u64::MAX);
        let want = (hashes as u64 + 1)
            .checked_mul(8)
            .and_then(|s| count.checked_mul(8).and_then(|p| p.checked_add(s)))
            .and_then(|x| x.checked_add(POST_HEADER as u64));
        if want != Some(b.len() as u64) || !(bytes.as_ptr() as usize).is_multiple_of(8) {
            return Err("posting table has the wrong length".into());
        }
        let count = count as usize;
        let table = PostingTable {
            store: Store::File {
                bytes: bytes.clone(),
                hashes,
                count,
            },
        };
        let (starts, postings) = table.arrays();
        let monotone = starts.first() == Some(&0)
            && starts.windows(2).all(|w| w[0] <= w[1])
            && starts.last() == Some(&(count as u64))
            && postings.len() == count;
        if !monotone {
            return Err("posting table offsets are not in order".into());
        }
        Ok(table)
    }

    /// How many postings `hash` has (0 for a hash out of range).
    #[inline]
    pub fn list_len(&self, hash: u32) -> usize {
        self.list(hash).len()
    }

    /// Number of stored keys.
    pub fn len(&self) -> usize {
        self.arrays().1.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_hold_each_items_keys_in_order() {
        let items: Vec<Vec<(u32, u32)>> = vec![
            vec![(3, 10), (1, 11), (3, 12)],
            vec![],
            vec![(1, 0), (9, 5), (0, 7)],
        ];
        let t = PostingTable::build(4, &items, |keys, out| out.extend_from_slice(keys));
        let p = |item, pos| Posting { item, pos };
        assert_eq!(t.list(0), [p(2, 7)]);
        assert_eq!(t.list(1), [p(0, 11), p(2, 0)]);
        assert_eq!(t.list(2), []);
        assert_eq!(t.list(3), [p(0, 10), p(0, 12)]);
        // hash 9 is out of range: left out, and looked up as empty
        assert_eq!(t.list(9), []);
        assert_eq!((t.len(), t.list_len(3), t.list_len(u32::MAX)), (5, 2, 0));
        assert!(PostingTable::default().list(0).is_empty());
        // the stored image views the same lists, and a damaged one is refused
        let image: Vec<u8> = t.file_parts(TableKind::Melodic, 7, 4).concat();
        let back =
            PostingTable::from_file(Bytes::from_vec(image.clone()), TableKind::Melodic, 7, 4)
                .unwrap();
        for h in 0..10 {
            assert_eq!(back.list(h), t.list(h));
        }
        assert_eq!((back.len(), back.hashes()), (5, 4));
        let open = |b: Vec<u8>, k, ph, n| PostingTable::from_file(Bytes::from_vec(b), k, ph, n);
        assert!(open(image.clone(), TableKind::Landmarks, 7, 4).is_err());
        assert!(open(image.clone(), TableKind::Melodic, 8, 4).is_err());
        assert!(open(image.clone(), TableKind::Melodic, 7, 5).is_err());
        assert!(open(image[..image.len() - 1].to_vec(), TableKind::Melodic, 7, 4).is_err());
        let mut bad = image.clone();
        bad[POST_HEADER + 8] = 9; // starts[1] = 9 > starts[2]
        assert!(open(bad, TableKind::Melodic, 7, 4).is_err());
        let mut bad = image;
        bad[POST_HEADER] = 1; // starts[0] != 0
        assert!(open(bad, TableKind::Melodic, 7, 4).is_err());
        // an empty table is written with its hashes' (empty) lists
        let e = PostingTable::default()
            .file_parts(TableKind::Landmarks, 1, 3)
            .concat();
        let e = open(e, TableKind::Landmarks, 1, 3).unwrap();
        assert!(e.is_empty() && e.list(2).is_empty());
    }
}
