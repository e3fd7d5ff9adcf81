//! A transparency log's Merkle tree, as RFC 9162 (Certificate Transparency 2.0) defines it:
//! leaf = SHA-256(0x00 ‖ entry), node = SHA-256(0x01 ‖ left ‖ right), a tree of `n` leaves
//! split at the largest power of two below `n`. Pure: the hashes come from a [`NodeSource`].
//!
//! The log stores, for every complete subtree, its hash once, by `(level, index)`: the leaves
//! `(0, i)`, and `(l, k)` covering leaves `[k·2^l, (k+1)·2^l)`. An append writes the leaf and
//! the subtrees it completes (one on average); any range a proof needs is a handful of
//! complete subtrees, so a proof is `O(log n)` stored hashes, read in one query, never the
//! whole log.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// A complete subtree: `(level, index)`, covering leaves `[index·2^level, (index+1)·2^level)`.
pub type Node = (u8, u64);

pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(entry);
    hasher.finalize().into()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The largest power of two strictly below `n` (`n ≥ 2`).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// A range of leaves `[start, end)` whose hash (`MTH(D[start:end])`) a proof carries.
pub type Range = (u64, u64);

/// The complete subtrees that make up `[start, end)`, left to right (greedy: each the largest
/// aligned one that fits). For the ranges of a tree starting at leaf 0, the range's hash is
/// these folded from the right ([`fold`]).
pub fn subtrees((start, end): Range) -> Vec<Node> {
    let mut nodes = Vec::new();
    let mut at = start;
    while at < end {
        let mut level = if at == 0 {
            63
        } else {
            at.trailing_zeros() as u8
        };
        while level > 0 && at.checked_add(1u64 << level).is_none_or(|e| e > end) {
            level -= 1;
        }
        nodes.push((level, at >> level));
        at += 1u64 << level;
    }
    nodes
}

/// The hash of a range from its subtrees' hashes (left to right).
pub fn fold(hashes: &[Hash]) -> Option<Hash> {
    let (last, rest) = hashes.split_last()?;
    Some(rest.iter().rev().fold(*last, |acc, h| node_hash(h, &acc)))
}

/// The ranges of the inclusion proof of leaf `index` in a tree of `size` leaves (RFC 9162
/// `PATH`), deepest first.
pub fn inclusion_ranges(index: u64, size: u64) -> Vec<Range> {
    fn path(m: u64, start: u64, end: u64, out: &mut Vec<Range>) {
        let n = end - start;
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m < k {
            path(m, start, start + k, out);
            out.push((start + k, end));
        } else {
            path(m - k, start + k, end, out);
            out.push((start, start + k));
        }
    }
    let mut out = Vec::new();
    if index < size {
        path(index, 0, size, &mut out);
    }
    out
}

/// The ranges of the consistency proof from a tree of `old` leaves to one of `new` leaves
/// (RFC 9162 `PROOF`), `0 < old ≤ new`.
pub fn consistency_ranges(old: u64, new: u64) -> Vec<Range> {
    fn subproof(m: u64, start: u64, end: u64, whole: bool, out: &mut Vec<Range>) {
        let n = end - start;
        if m == n {
            if !whole {
                out.push((start, end));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            subproof(m, start, start + k, whole, out);
            out.push((start + k, end));
        } else {
            subproof(m - k, start + k, end, false, out);
            out.push((start, start + k));
        }
    }
    let mut out = Vec::new();
    if 0 < old && old <= new {
        subproof(old, 0, new, true, &mut out);
    }
    out
}

/// What a proof could not be built from: a stored subtree the source did not give (a log
/// whose stored tree has a gap), or a range of no leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Node(Node),
    EmptyRange(Range),
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Missing::Node((level, index)) => {
                write!(
                    f,
                    "the log has no stored subtree at level {level}, index {index}"
                )
            }
            Missing::EmptyRange((start, end)) => write!(f, "the range {start}..{end} is empty"),
        }
    }
}

/// Where the stored hashes come from.
pub trait NodeSource {
    type Error: From<Missing>;
    /// The hashes of `nodes`, in their order; every node asked for is a complete subtree of
    /// the log. A node the source does not hold is left out (or an error).
    fn nodes(&mut self, nodes: &[Node]) -> Result<Vec<Hash>, Self::Error>;
}

/// The hashes of `ranges`, with one call to `source` for all their subtrees.
pub fn range_hashes<S: NodeSource>(
    source: &mut S,
    ranges: &[Range],
) -> Result<Vec<Hash>, S::Error> {
    let parts: Vec<Vec<Node>> = ranges.iter().map(|r| subtrees(*r)).collect();
    let mut wanted: Vec<Node> = parts.iter().flatten().copied().collect();
    wanted.sort_unstable();
    wanted.dedup();
    let found = source.nodes(&wanted)?;
    if found.len() != wanted.len() {
        // Which one is missing cannot be told from the count alone: name the first.
        let first = wanted.get(found.len()).copied().unwrap_or((0, 0));
        return Err(Missing::Node(first).into());
    }
    let lookup = |node: &Node| -> Result<Hash, Missing> {
        let i = wanted
            .binary_search(node)
            .map_err(|_| Missing::Node(*node))?;
        found.get(i).copied().ok_or(Missing::Node(*node))
    };
    let mut hashes = Vec::with_capacity(parts.len());
    for (range, nodes) in ranges.iter().zip(&parts) {
        let nodes = nodes.iter().map(lookup).collect::<Result<Vec<_>, _>>()?;
        hashes.push(fold(&nodes).ok_or(Missing::EmptyRange(*range))?);
    }
    Ok(hashes)
}

/// The root of a tree of `size ≥ 1` leaves.
pub fn root<S: NodeSource>(source: &mut S, size: u64) -> Result<Hash, S::Error> {
    Ok(range_hashes(source, &[(0, size)])?.remove(0))
}

/// The subtrees an append of leaf `index` completes besides the leaf itself, and the left
/// siblings each needs: `(sibling, completed)` from the bottom up.
pub fn completed_by(index: u64) -> Vec<(Node, Node)> {
    let ones = index.trailing_ones() as u8;
    (0..ones)
        .map(|level| {
            let k = index >> level;
            ((level, k - 1), (level + 1, k >> 1))
        })
        .collect()
}

/// The stored subtrees an append of `count` leaves at index `first` needs: the left siblings
/// the new leaves complete that the batch does not make itself (the log's right edge).
pub fn needed_for_append(first: u64, count: u64) -> Vec<Node> {
    let mut made = std::collections::HashSet::new();
    let mut needed = Vec::new();
    for index in first..first.saturating_add(count) {
        made.insert((0, index));
        for (sibling, completed) in completed_by(index) {
            if !made.contains(&sibling) && !needed.contains(&sibling) {
                needed.push(sibling);
            }
            made.insert(completed);
        }
    }
    needed
}

/// Appends the leaf hashes `leaves` at index `first`: every node they make (each leaf, then
/// the subtrees it completes), in order. `stored` holds at least the nodes
/// [`needed_for_append`] names.
pub fn append_leaves(
    first: u64,
    leaves: &[Hash],
    stored: &std::collections::HashMap<Node, Hash>,
) -> Result<Vec<(Node, Hash)>, Missing> {
    let mut made: std::collections::HashMap<Node, Hash> = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(leaves.len() * 2);
    for (i, leaf) in leaves.iter().enumerate() {
        let index = first + i as u64;
        let mut hash = *leaf;
        made.insert((0, index), hash);
        out.push(((0, index), hash));
        for (sibling, completed) in completed_by(index) {
            let left = made
                .get(&sibling)
                .or_else(|| stored.get(&sibling))
                .ok_or(Missing::Node(sibling))?;
            hash = node_hash(left, &hash);
            made.insert(completed, hash);
            out.push((completed, hash));
        }
    }
    Ok(out)
}

/// RFC 9162 §2.1.3.2: does `proof` show `leaf` at `index` in the tree of `size` with `root`?
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// RFC 9162 §2.1.4.2: does `proof` show the tree of `old` leaves with `old_root` to be a
/// prefix of the tree of `new` leaves with `new_root`?
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old == 0 || old > new {
        return false;
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut f, mut s) = (old - 1, new - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == *old_root && sr == *new_root && s == 0
}

/// A log held in memory, stored as the database stores it: for tests and tools.
#[derive(Debug, Default, Clone)]
pub struct MemoryLog {
    nodes: std::collections::HashMap<Node, Hash>,
    size: u64,
}

impl MemoryLog {
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn append(&mut self, entry: &[u8]) -> u64 {
        let index = self.size;
        let made = append_leaves(index, &[leaf_hash(entry)], &self.nodes)
            .expect("a memory log holds its right edge");
        self.nodes.extend(made);
        self.size += 1;
        index
    }

    /// Overwrites one stored hash (a tampered database, in tests).
    pub fn tamper(&mut self, node: Node, hash: Hash) {
        self.nodes.insert(node, hash);
    }
}

impl NodeSource for MemoryLog {
    type Error = Missing;

    fn nodes(&mut self, nodes: &[Node]) -> Result<Vec<Hash>, Missing> {
        nodes
            .iter()
            .map(|n| self.nodes.get(n).copied().ok_or(Missing::Node(*n)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_node_is_an_error_not_a_zero_hash() {
        let (mut log, _) = log_of(5);
        log.nodes.remove(&(0, 4));
        assert_eq!(root(&mut log, 5), Err(Missing::Node((0, 4))));
        // A source that answers fewer hashes than asked.
        struct Short;
        impl NodeSource for Short {
            type Error = Missing;
            fn nodes(&mut self, nodes: &[Node]) -> Result<Vec<Hash>, Missing> {
                Ok(vec![[7; 32]; nodes.len().saturating_sub(1)])
            }
        }
        assert!(matches!(root(&mut Short, 3), Err(Missing::Node(_))));
        assert_eq!(
            range_hashes(&mut log, &[(2, 2)]),
            Err(Missing::EmptyRange((2, 2)))
        );
    }

    /// RFC 9162's definitions, straight from the text, over the leaves themselves.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => Sha256::digest([]).into(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    fn log_of(n: u64) -> (MemoryLog, Vec<Hash>) {
        let mut log = MemoryLog::default();
        let mut leaves = Vec::new();
        for i in 0..n {
            let entry = format!("entry {i}");
            log.append(entry.as_bytes());
            leaves.push(leaf_hash(entry.as_bytes()));
        }
        (log, leaves)
    }

    #[test]
    fn stored_subtrees_give_the_rfc_root_at_every_size() {
        let (mut log, leaves) = log_of(300);
        for n in 1..=300u64 {
            assert_eq!(
                root(&mut log, n).unwrap(),
                mth(&leaves[..n as usize]),
                "size {n}"
            );
        }
    }

    #[test]
    fn proofs_verify_and_tampering_is_caught() {
        let (mut log, leaves) = log_of(70);
        for n in 1..=70u64 {
            let r = root(&mut log, n).unwrap();
            for m in 0..n {
                let proof = range_hashes(&mut log, &inclusion_ranges(m, n)).unwrap();
                assert!(
                    verify_inclusion(m, n, &leaves[m as usize], &proof, &r),
                    "{m} in {n}"
                );
                assert!(!verify_inclusion(m, n, &leaf_hash(b"other"), &proof, &r));
            }
            for old in 1..=n {
                let old_root = root(&mut log, old).unwrap();
                let proof = range_hashes(&mut log, &consistency_ranges(old, n)).unwrap();
                assert!(
                    verify_consistency(old, n, &old_root, &r, &proof),
                    "{old} → {n}"
                );
                if old < n {
                    assert!(
                        !verify_consistency(old, n, &r, &r, &proof),
                        "{old} → {n} forged"
                    );
                }
            }
        }
        // One stored leaf rewritten: the new root differs and old proofs fail against it.
        let before = root(&mut log, 70).unwrap();
        let proof = range_hashes(&mut log, &inclusion_ranges(5, 70)).unwrap();
        log.tamper((0, 5), leaf_hash(b"rewritten"));
        let proof_after = range_hashes(&mut log, &inclusion_ranges(5, 70)).unwrap();
        assert!(verify_inclusion(5, 70, &leaves[5], &proof, &before));
        assert!(!verify_inclusion(
            5,
            70,
            &leaf_hash(b"rewritten"),
            &proof_after,
            &before
        ));
    }

    /// An independent implementation, written from RFC 9162 §2.1 in Python: its roots and
    /// proofs for every size 1…1000 (inclusion of the first, middle and last leaf; consistency
    /// from 1, a middle size and the size before) must be ours, byte for byte.
    #[test]
    fn proofs_match_an_independent_implementation_at_sizes_1_to_1000() {
        const SCRIPT: &str = r#"
import hashlib, json, sys
from functools import lru_cache
N = 1000
leaves = [hashlib.sha256(b"\x00" + ("entry %d" % i).encode()).digest() for i in range(N)]
def k_of(n):
    k = 1
    while k * 2 < n:
        k *= 2
    return k
@lru_cache(maxsize=None)
def mth(a, b):
    if b - a == 1:
        return leaves[a]
    k = k_of(b - a)
    return hashlib.sha256(b"\x01" + mth(a, a + k) + mth(a + k, b)).digest()
def path(m, a, b):
    if b - a == 1:
        return []
    k = k_of(b - a)
    if m < k:
        return path(m, a, a + k) + [mth(a + k, b)]
    return path(m - k, a + k, b) + [mth(a, a + k)]
def subproof(m, a, b, whole):
    n = b - a
    if m == n:
        return [] if whole else [mth(a, b)]
    k = k_of(n)
    if m <= k:
        return subproof(m, a, a + k, whole) + [mth(a + k, b)]
    return subproof(m - k, a + k, b, False) + [mth(a, a + k)]
out = []
for n in range(1, N + 1):
    row = {"n": n, "root": mth(0, n).hex(), "inclusion": {}, "consistency": {}}
    for m in sorted({0, n // 2, n - 1}):
        row["inclusion"][str(m)] = [h.hex() for h in path(m, 0, n)]
    for old in sorted({1, max(1, n // 2), max(1, n - 1)}):
        row["consistency"][str(old)] = [h.hex() for h in subproof(old, 0, n, True)]
    out.append(row)
json.dump(out, sys.stdout)
"#;
        let output = std::process::Command::new("python3")
            .args(["-c", SCRIPT])
            .output()
            .expect("python3");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let rows: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let (mut log, leaves) = log_of(1000);
        let hex_all =
            |hashes: Vec<Hash>| -> Vec<String> { hashes.iter().map(hex::encode).collect() };
        for row in rows.as_array().unwrap() {
            let n = row["n"].as_u64().unwrap();
            let r = root(&mut log, n).unwrap();
            assert_eq!(hex::encode(r), row["root"], "root of {n}");
            for (m, expected) in row["inclusion"].as_object().unwrap() {
                let m: u64 = m.parse().unwrap();
                let proof = range_hashes(&mut log, &inclusion_ranges(m, n)).unwrap();
                assert_eq!(
                    serde_json::json!(hex_all(proof.clone())),
                    *expected,
                    "inclusion {m} in {n}"
                );
                assert!(verify_inclusion(m, n, &leaves[m as usize], &proof, &r));
            }
            for (old, expected) in row["consistency"].as_object().unwrap() {
                let old: u64 = old.parse().unwrap();
                let proof = range_hashes(&mut log, &consistency_ranges(old, n)).unwrap();
                assert_eq!(
                    serde_json::json!(hex_all(proof.clone())),
                    *expected,
                    "consistency {old} → {n}"
                );
                let old_root = root(&mut log, old).unwrap();
                assert!(
                    verify_consistency(old, n, &old_root, &r, &proof),
                    "{old} → {n}"
                );
            }
        }
    }

    #[test]
    fn hostile_sizes_are_refused_not_trusted() {
        let h = [7u8; 32];
        assert!(!verify_inclusion(3, 3, &h, &[], &h));
        assert!(!verify_inclusion(0, 0, &h, &[], &h));
        assert!(!verify_inclusion(0, u64::MAX, &h, &[h; 70], &h));
        assert!(!verify_consistency(0, 5, &h, &h, &[h]));
        assert!(!verify_consistency(6, 5, &h, &h, &[h]));
        assert!(!verify_consistency(4, 5, &h, &h, &[]));
        assert!(verify_consistency(5, 5, &h, &h, &[]));
        assert!(!verify_consistency(5, 5, &h, &h, &[h]));
        assert!(inclusion_ranges(5, 5).is_empty());
        assert!(consistency_ranges(0, 5).is_empty());
        assert_eq!(subtrees((0, u64::MAX)).len(), 64);
        assert_eq!(subtrees((0, 6)), vec![(2, 0), (1, 2)]);
        assert_eq!(
            completed_by(7),
            vec![((0, 6), (1, 3)), ((1, 2), (2, 1)), ((2, 0), (3, 0))]
        );
    }

    /// A batch appended from only the stored right edge makes exactly the nodes that
    /// appending its leaves one by one makes, at every starting size and batch length.
    #[test]
    fn a_batch_append_from_the_right_edge_equals_appending_one_by_one() {
        for first in 0..40u64 {
            for count in 1..40u64 {
                let (before, _) = log_of(first);
                let mut one_by_one = before.clone();
                let leaves: Vec<Hash> = (first..first + count)
                    .map(|i| leaf_hash(format!("entry {i}").as_bytes()))
                    .collect();
                for i in first..first + count {
                    one_by_one.append(format!("entry {i}").as_bytes());
                }
                let edge: std::collections::HashMap<Node, Hash> = needed_for_append(first, count)
                    .into_iter()
                    .map(|n| (n, before.nodes[&n]))
                    .collect();
                let made = append_leaves(first, &leaves, &edge).unwrap();
                let mut batched = before.nodes.clone();
                batched.extend(made);
                assert_eq!(batched, one_by_one.nodes, "first {first}, count {count}");
            }
        }
        // Without the right edge, the append says which node it lacks.
        let leaf = leaf_hash(b"x");
        assert!(append_leaves(1, &[leaf], &Default::default()).is_err());
    }
}
