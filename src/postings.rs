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

/// One stored key: its item and its position in the item (a frame, an
/// event index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Posting {
    /// Item id.
    pub item: u32,
    /// Position in the item.
    pub pos: u32,
}

/// The postings of every hash in `0..hashes`.
#[derive(Debug, Clone, Default)]
pub struct PostingTable {
    /// `starts[h]..starts[h + 1]` are the postings of hash `h`.
    starts: Vec<u64>,
    postings: Vec<Posting>,
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
        PostingTable { starts, postings }
    }

    /// The postings of `hash` (empty for a hash out of range or an empty
    /// table).
    #[inline]
    pub fn list(&self, hash: u32) -> &[Posting] {
        let h = hash as usize;
        match self.starts.get(h..h + 2) {
            Some(s) => &self.postings[s[0] as usize..s[1] as usize],
            None => &[],
        }
    }

    /// How many postings `hash` has (0 for a hash out of range).
    #[inline]
    pub fn list_len(&self, hash: u32) -> usize {
        self.list(hash).len()
    }

    /// Number of stored keys.
    pub fn len(&self) -> usize {
        self.postings.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.postings.is_empty()
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
    }
}
