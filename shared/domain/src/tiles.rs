//! A log as C2SP tlog-tiles (<https://c2sp.org/tlog-tiles>): the files any monitor can mirror
//! and check without our API. Pure: which tiles a checkpoint of a given size needs, what they
//! are called, and how an entry bundle is laid out.
//!
//! A hash tile at tile level `L` holds up to 256 hashes of tree level `8·L`: tile `N` the
//! hashes of nodes `256·N ..`. Tile `N` of `tile/entries` holds the entries (here each run's
//! manifest bytes) `256·N ..`. A tile that is not full is partial: its path ends `.p/<W>`, `W`
//! its width; a full tile never changes, a partial one is replaced by a wider one under
//! another name, so every path names one immutable file.

/// Hashes (or entries) in a full tile.
pub const WIDTH: u64 = 256;
/// Tree levels per tile level.
pub const HEIGHT: u8 = 8;
/// The highest tile level the spec names (2^48 entries need no more).
pub const MAX_LEVEL: u8 = 5;
/// The largest entry a bundle holds (its length is a big-endian `u16`).
pub const MAX_ENTRY_BYTES: usize = u16::MAX as usize;

/// One tile: `level` is the tile level (`None` for the entry bundle), `index` its index in
/// that level, `width` how many hashes or entries it holds (1..=256).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tile {
    pub level: Option<u8>,
    pub index: u64,
    pub width: u64,
}

impl Tile {
    /// Its path under the log's prefix, e.g. `tile/0/x001/234` or `tile/entries/067.p/12`.
    pub fn path(&self) -> String {
        let level = match self.level {
            Some(level) => level.to_string(),
            None => "entries".to_owned(),
        };
        let mut path = format!("tile/{level}/{}", index_path(self.index));
        if self.width < WIDTH {
            path.push_str(&format!(".p/{}", self.width));
        }
        path
    }

    /// The first tree node (at this tile's tree level) or entry it holds, and the one after
    /// its last.
    pub fn span(&self) -> (u64, u64) {
        let first = self.index * WIDTH;
        (first, first + self.width)
    }

    /// The tree level of its hashes (0 for the entry bundle's, whose leaves they hash).
    pub fn tree_level(&self) -> u8 {
        self.level.unwrap_or(0) * HEIGHT
    }
}

/// `n` as three-digit path elements, every one but the last prefixed with `x`:
/// 1234067 → `x001/x234/067`, 5 → `005`.
pub fn index_path(mut n: u64) -> String {
    let mut parts = vec![format!("{:03}", n % 1000)];
    n /= 1000;
    while n > 0 {
        parts.push(format!("x{:03}", n % 1000));
        n /= 1000;
    }
    parts.reverse();
    parts.join("/")
}

/// A path a reader may ask a log for: `checkpoint` or a tile's, exactly as [`Tile::path`]
/// writes it (no other spelling of the same index or width, nothing else). `None` otherwise.
pub fn parse_path(path: &str) -> Option<Option<Tile>> {
    if path == "checkpoint" {
        return Some(None);
    }
    let rest = path.strip_prefix("tile/")?;
    let (level, rest) = rest.split_once('/')?;
    let level = match level {
        "entries" => None,
        _ => {
            let l: u8 = level.parse().ok()?;
            (l <= MAX_LEVEL && level == l.to_string()).then_some(Some(l))?
        }
    };
    let (index, width) = match rest.split_once(".p/") {
        Some((index, width)) => {
            let w: u64 = width.parse().ok()?;
            ((1..WIDTH).contains(&w) && width == w.to_string()).then_some((index, w))?
        }
        None => (rest, WIDTH),
    };
    let parts: Vec<&str> = index.split('/').collect();
    if parts.len() > 7 {
        return None;
    }
    let mut n: u64 = 0;
    for (i, part) in parts.iter().enumerate() {
        let digits = if i + 1 < parts.len() {
            part.strip_prefix('x')?
        } else {
            part
        };
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        n = n.checked_mul(1000)?.checked_add(digits.parse().ok()?)?;
    }
    let tile = Tile {
        level,
        index: n,
        width,
    };
    (tile.path() == path).then_some(Some(tile))
}

/// The hash tile, in a tree of `size` leaves, that node `(level, index)` (a complete subtree)
/// is computed from: the tile at tile level `level / 8` holding its descendants at tree level
/// `8 · (level / 8)`, as wide as that tree has it.
pub fn tile_for((level, index): crate::merkle::Node, size: u64) -> Tile {
    let tile_level = (level / HEIGHT).min(MAX_LEVEL);
    let base = u32::from(tile_level) * u32::from(HEIGHT);
    // The node's first descendant at the tile's tree level.
    let first = index << (u32::from(level) - base);
    let tile = first / WIDTH;
    let complete = size >> base;
    Tile {
        level: Some(tile_level),
        index: tile,
        width: complete.saturating_sub(tile * WIDTH).min(WIDTH),
    }
}

/// Node hashes read from hash tiles a reader fetched (`(tile, its bytes)`), for the proofs of
/// a tree of `size` leaves ([`crate::merkle::range_hashes`]): each node is computed from its
/// tile ([`tile_for`]), so a proof checked against signed roots needs no trust in where the
/// tiles came from.
#[derive(Debug)]
pub struct TileSource<'a> {
    pub size: u64,
    pub tiles: &'a std::collections::HashMap<Tile, Vec<u8>>,
}

impl crate::merkle::NodeSource for TileSource<'_> {
    type Error = crate::merkle::Missing;

    fn nodes(
        &mut self,
        nodes: &[crate::merkle::Node],
    ) -> Result<Vec<crate::merkle::Hash>, Self::Error> {
        nodes
            .iter()
            .map(|node| {
                let tile = tile_for(*node, self.size);
                let bytes = self
                    .tiles
                    .get(&tile)
                    .ok_or(crate::merkle::Missing::Node(*node))?;
                node_from_tile(*node, &tile, bytes).ok_or(crate::merkle::Missing::Node(*node))
            })
            .collect()
    }
}

/// Node `(level, index)`'s hash from the bytes of its tile (`None` if the tile is not as wide
/// as it should be, or does not hold the node).
pub fn node_from_tile(
    (level, index): crate::merkle::Node,
    tile: &Tile,
    bytes: &[u8],
) -> Option<crate::merkle::Hash> {
    let base = u32::from(tile.level?) * u32::from(HEIGHT);
    let height = u32::from(level).checked_sub(base)?;
    if height >= u32::from(HEIGHT) || bytes.len() as u64 != tile.width * 32 {
        return None;
    }
    let first = (index << height).checked_sub(tile.index * WIDTH)?;
    let count = 1u64 << height;
    if first + count > tile.width {
        return None;
    }
    let mut hashes: Vec<crate::merkle::Hash> = bytes
        [(first * 32) as usize..((first + count) * 32) as usize]
        .chunks_exact(32)
        .map(|c| c.try_into().expect("32 bytes"))
        .collect();
    while hashes.len() > 1 {
        hashes = hashes
            .chunks_exact(2)
            .map(|pair| crate::merkle::node_hash(&pair[0], &pair[1]))
            .collect();
    }
    hashes.pop()
}

/// The tiles a log of `size` entries has that a log of `published` entries did not: each new
/// or widened hash tile at every level, then each new or widened entry bundle. Empty when
/// `size <= published`.
pub fn grown(published: u64, size: u64) -> Vec<Tile> {
    let mut tiles = Vec::new();
    if size <= published {
        return tiles;
    }
    for level in 0..=MAX_LEVEL {
        let shift = u32::from(level) * u32::from(HEIGHT);
        let (before, now) = (published >> shift, size >> shift);
        if now == 0 {
            break;
        }
        tiles.extend(widened(Some(level), before, now));
    }
    tiles.extend(widened(None, published, size));
    tiles
}

/// The tiles of one level holding items `before..now` that were not already there whole.
fn widened(level: Option<u8>, before: u64, now: u64) -> Vec<Tile> {
    if now <= before {
        return Vec::new();
    }
    let first = before / WIDTH;
    let last = (now - 1) / WIDTH;
    (first..=last)
        .map(|index| Tile {
            level,
            index,
            width: (now - index * WIDTH).min(WIDTH),
        })
        .collect()
}

/// Why an entry cannot be bundled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a log entry of {0} bytes is larger than a tile entry holds ({MAX_ENTRY_BYTES})")]
pub struct EntryTooLarge(pub usize);

/// Appends `entry` to an entry bundle: its length as a big-endian `u16`, then its bytes.
pub fn push_entry(bundle: &mut Vec<u8>, entry: &[u8]) -> Result<(), EntryTooLarge> {
    let length = u16::try_from(entry.len()).map_err(|_| EntryTooLarge(entry.len()))?;
    bundle.extend_from_slice(&length.to_be_bytes());
    bundle.extend_from_slice(entry);
    Ok(())
}

/// The entries of a bundle, or `None` when it is not one (a length past its end).
pub fn entries(bundle: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut rest = bundle;
    while !rest.is_empty() {
        let (length, tail) = rest.split_first_chunk::<2>()?;
        let length = usize::from(u16::from_be_bytes(*length));
        if tail.len() < length {
            return None;
        }
        let (entry, tail) = tail.split_at(length);
        out.push(entry);
        rest = tail;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log's hash tiles as a publisher writes them, from a memory log.
    fn tiles_of(
        log: &mut crate::merkle::MemoryLog,
        size: u64,
    ) -> std::collections::HashMap<Tile, Vec<u8>> {
        use crate::merkle::NodeSource;
        grown(0, size)
            .into_iter()
            .filter(|t| t.level.is_some())
            .map(|t| {
                let (start, end) = t.span();
                let nodes: Vec<_> = (start..end).map(|i| (t.tree_level(), i)).collect();
                (t, log.nodes(&nodes).unwrap().concat())
            })
            .collect()
    }

    #[test]
    fn proofs_computed_from_tiles_hold_against_the_roots() {
        use crate::merkle::{self, MemoryLog};
        let mut log = MemoryLog::default();
        let mut roots = Vec::new();
        for n in 0..70_000u64 {
            log.append(&n.to_be_bytes());
            if [1, 255, 256, 300, 65_536, 70_000].contains(&(n + 1)) {
                roots.push((n + 1, merkle::root(&mut log, n + 1).unwrap()));
            }
        }
        let size = 70_000;
        let tiles = tiles_of(&mut log, size);
        let mut source = TileSource {
            size,
            tiles: &tiles,
        };
        assert_eq!(
            merkle::root(&mut source, size).unwrap(),
            merkle::root(&mut log, size).unwrap()
        );
        let new_root = roots.last().unwrap().1;
        for (old, old_root) in &roots[..roots.len() - 1] {
            let proof =
                merkle::range_hashes(&mut source, &merkle::consistency_ranges(*old, size)).unwrap();
            assert!(
                merkle::verify_consistency(*old, size, old_root, &new_root, &proof),
                "{old} → {size}"
            );
        }
        // A tile that lies is caught by the roots, and a tile of the wrong width is refused.
        let mut forged = tiles.clone();
        // The tile `MTH(D[0:256])` comes from (the 300 → 70,000 proof carries it).
        let first = Tile {
            level: Some(1),
            index: 0,
            width: 256,
        };
        forged.get_mut(&first).unwrap()[0] ^= 1;
        let mut source = TileSource {
            size,
            tiles: &forged,
        };
        let proof =
            merkle::range_hashes(&mut source, &merkle::consistency_ranges(300, size)).unwrap();
        assert!(!merkle::verify_consistency(
            300,
            size,
            &roots[3].1,
            &new_root,
            &proof
        ));
        forged.get_mut(&first).unwrap().truncate(32 * 255);
        let mut source = TileSource {
            size,
            tiles: &forged,
        };
        assert!(merkle::range_hashes(&mut source, &merkle::consistency_ranges(300, size)).is_err());
        assert_eq!(tile_for((16, 0), size).path(), "tile/2/000.p/1");
        assert_eq!(tile_for((3, 9), size).path(), "tile/0/000");
    }

    #[test]
    fn index_paths_follow_the_spec() {
        assert_eq!(index_path(0), "000");
        assert_eq!(index_path(5), "005");
        assert_eq!(index_path(999), "999");
        assert_eq!(index_path(1000), "x001/000");
        assert_eq!(index_path(1234067), "x001/x234/067");
        assert_eq!(index_path(u64::MAX), "x018/x446/x744/x073/x709/x551/615");
    }

    #[test]
    fn paths_name_level_index_and_partial_width() {
        let full = Tile {
            level: Some(0),
            index: 1234067,
            width: 256,
        };
        assert_eq!(full.path(), "tile/0/x001/x234/067");
        let partial = Tile {
            level: Some(2),
            index: 0,
            width: 3,
        };
        assert_eq!(partial.path(), "tile/2/000.p/3");
        let bundle = Tile {
            level: None,
            index: 1,
            width: 255,
        };
        assert_eq!(bundle.path(), "tile/entries/001.p/255");
        assert_eq!(bundle.span(), (256, 511));
    }

    fn paths(published: u64, size: u64) -> Vec<String> {
        grown(published, size).iter().map(Tile::path).collect()
    }

    #[test]
    fn a_new_log_has_its_first_partial_tiles() {
        assert_eq!(paths(0, 1), ["tile/0/000.p/1", "tile/entries/000.p/1"]);
        assert_eq!(paths(0, 0), Vec::<String>::new());
        assert_eq!(paths(5, 5), Vec::<String>::new());
        assert_eq!(paths(9, 5), Vec::<String>::new());
    }

    #[test]
    fn growing_past_a_tile_completes_it_and_starts_the_next_level() {
        // 300 entries: level 0 has one full tile and 44 of the next; level 1 one node.
        assert_eq!(
            paths(0, 300),
            [
                "tile/0/000",
                "tile/0/001.p/44",
                "tile/1/000.p/1",
                "tile/entries/000",
                "tile/entries/001.p/44",
            ]
        );
        // From 300 to 310: only what widened.
        assert_eq!(
            paths(300, 310),
            ["tile/0/001.p/54", "tile/entries/001.p/54"]
        );
        // From 250 to 256: the first tile becomes full, level 1 gets its first node.
        assert_eq!(
            paths(250, 256),
            ["tile/0/000", "tile/1/000.p/1", "tile/entries/000"]
        );
        // 65,536 entries: a full level-1 tile and a level-2 node.
        let big = grown(0, 65_536);
        assert!(big.contains(&Tile {
            level: Some(1),
            index: 0,
            width: 256
        }));
        assert!(big.contains(&Tile {
            level: Some(2),
            index: 0,
            width: 1
        }));
        assert_eq!(big.iter().filter(|t| t.level == Some(0)).count(), 256);
    }

    #[test]
    fn only_the_paths_a_log_writes_parse() {
        assert_eq!(parse_path("checkpoint"), Some(None));
        for path in [
            "tile/0/000",
            "tile/0/x001/x234/067",
            "tile/2/000.p/3",
            "tile/entries/001.p/255",
            "tile/entries/x018/x446/x744/x073/x709/x551/615",
        ] {
            let tile = parse_path(path).unwrap().unwrap();
            assert_eq!(tile.path(), path);
        }
        for hostile in [
            "",
            "checkpoint/",
            "../checkpoint",
            "tile/0/../../other/checkpoint",
            "tile/0/0",
            "tile/0/0000",
            "tile/0/x000/001",
            "tile/0/001/002",
            "tile/00/001",
            "tile/6/001",
            "tile/8/001",
            "tile/0/001.p/0",
            "tile/0/001.p/256",
            "tile/0/001.p/07",
            "tile/0/-01",
            "tile/entries/001.p/",
            "tile/0/x999/x999/x999/x999/x999/x999/x999/999",
            "tile/0/00\u{0}",
            "tile/0/001?x=1",
        ] {
            assert_eq!(parse_path(hostile), None, "{hostile}");
        }
    }

    #[test]
    fn bundles_round_trip_and_refuse_what_does_not_fit() {
        let mut bundle = Vec::new();
        push_entry(&mut bundle, b"first").unwrap();
        push_entry(&mut bundle, b"").unwrap();
        push_entry(&mut bundle, &[7u8; 300]).unwrap();
        assert_eq!(&bundle[..7], b"\x00\x05first");
        let read = entries(&bundle).unwrap();
        assert_eq!(read.len(), 3);
        assert_eq!(read[0], b"first");
        assert_eq!(read[2].len(), 300);
        assert_eq!(
            push_entry(&mut bundle, &vec![0u8; MAX_ENTRY_BYTES + 1]),
            Err(EntryTooLarge(MAX_ENTRY_BYTES + 1))
        );
        assert_eq!(entries(b"\x00\x09short"), None);
        assert_eq!(entries(b"\x00"), None);
    }
}
