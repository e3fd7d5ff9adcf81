//! Batches: one NDJSON file of seeds, one run per line.
//!
//! Pure pieces only: the batch's states and limits, the run id a line gets (derived from the
//! batch and the line, so a fan-out that restarts creates no duplicate), the line splitter the
//! fan-out streams the file through (bounded memory whatever the file), what one line parses
//! to, and the batch manifest with its Merkle tree over the runs' manifests.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::merkle::{self, Hash, MemoryLog};
use crate::MerchantId;

crate::text_enum! {
    /// Where a batch is: `created` (seeds being uploaded) → `running` (fanned out, runs under
    /// way) → `completed` | `cancelled` | `failed`, forward only.
    BatchStatus {
        Created => "created",
        Running => "running",
        Completed => "completed",
        Cancelled => "cancelled",
        Failed => "failed",
    }
}

impl BatchStatus {
    pub const fn has_ended(self) -> bool {
        matches!(
            self,
            BatchStatus::Completed | BatchStatus::Cancelled | BatchStatus::Failed
        )
    }
}

/// Codes of the lines that became no run (`GET /api/v1/batches/{id}/errors`).
pub mod line_errors {
    /// The line is not UTF-8.
    pub const INVALID_UTF8: &str = "INVALID_UTF8";
    /// The line is not one JSON value (or nests too deep).
    pub const INVALID_JSON: &str = "INVALID_JSON";
    /// The seed does not satisfy the configuration's `dataSchema`.
    pub const SCHEMA_VIOLATION: &str = "SCHEMA_VIOLATION";
    /// The line is longer than a seed may be.
    pub const LINE_TOO_LONG: &str = "LINE_TOO_LONG";
    /// The file has more seeds than a batch may: this line and every later one were not read.
    pub const TOO_MANY_SEEDS: &str = "TOO_MANY_SEEDS";
}

/// Codes of a batch that failed as a whole (its `error`).
pub mod batch_errors {
    /// The seeds file is larger than a batch may read.
    pub const SEEDS_TOO_LARGE: &str = "SEEDS_TOO_LARGE";
    /// `failFast`: a line became no run, so the batch stopped (its `line` says which).
    pub const LINE_REFUSED: &str = "LINE_REFUSED";
    /// The seeds file is gone.
    pub const SEEDS_MISSING: &str = "SEEDS_MISSING";
    /// The seeds file was replaced after the start.
    pub const SEEDS_CHANGED: &str = "SEEDS_CHANGED";
    /// The fan-out failed on every delivery its message had.
    pub const FANOUT_FAILED: &str = "FANOUT_FAILED";
}

/// The run a line of a batch becomes: a name-based (SHA-1, version 5) UUID of the line number
/// in the batch's namespace, so any restart of the fan-out derives the same id.
pub fn run_id(batch: Uuid, line: u32) -> Uuid {
    Uuid::new_v5(&batch, format!("line:{line}").as_bytes())
}

/// Where a batch's seeds file lives in the artefact bucket.
pub fn seeds_key(merchant: MerchantId, batch: Uuid) -> String {
    format!("batches/{merchant}/{batch}/seeds.ndjson")
}

/// Where a batch's manifest lives: named by its SHA-256, so that no later write (a second
/// finisher, a retried cancel) can replace the bytes a batch records.
pub fn manifest_key(merchant: MerchantId, batch: Uuid, sha256: &str) -> String {
    format!("batches/{merchant}/{batch}/batch-manifest-{sha256}.json")
}

/// The TSA's time-stamp of the batch's signed statement (an RFC 3161 `TimeStampResp`).
pub fn timestamp_key(merchant: MerchantId, batch: Uuid, sha256: &str) -> String {
    format!("batches/{merchant}/{batch}/batch-statement-{sha256}.tsr")
}

/// One line of the file, as the splitter hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A whole line (without its `\n`, nor a `\r` before it).
    Whole {
        number: u32,
        bytes: Vec<u8>,
        /// The file offset just after this line: where a resumed read starts.
        end: u64,
    },
    /// A line longer than the limit: its bytes were dropped as they came.
    TooLong { number: u32, end: u64 },
}

impl Line {
    pub fn number(&self) -> u32 {
        match self {
            Line::Whole { number, .. } | Line::TooLong { number, .. } => *number,
        }
    }

    pub fn end(&self) -> u64 {
        match self {
            Line::Whole { end, .. } | Line::TooLong { end, .. } => *end,
        }
    }
}

/// Splits a byte stream into lines, keeping at most `max_line + 1` bytes of the current line:
/// a longer line is reported as [`Line::TooLong`] and its bytes skipped, so memory stays
/// bounded by the limit whatever the file holds.
#[derive(Debug)]
pub struct LineSplitter {
    max_line: usize,
    current: Vec<u8>,
    too_long: bool,
    /// Lines completed so far (the next line's number is this + 1).
    lines: u32,
    /// Offset of the next byte fed.
    offset: u64,
    /// Whether the current line has any byte yet.
    started: bool,
}

impl LineSplitter {
    /// A splitter resuming at `offset` after `lines` lines.
    pub fn new(max_line: usize, offset: u64, lines: u32) -> Self {
        LineSplitter {
            max_line,
            current: Vec::new(),
            too_long: false,
            lines,
            offset,
            started: false,
        }
    }

    /// Feeds `chunk`, pushing every line it completes to `out`.
    pub fn feed(&mut self, mut chunk: &[u8], out: &mut Vec<Line>) {
        while !chunk.is_empty() {
            let (part, rest, ends) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (&chunk[..i], &chunk[i + 1..], true),
                None => (chunk, &[][..], false),
            };
            self.offset += part.len() as u64 + u64::from(ends);
            if !part.is_empty() {
                self.started = true;
            }
            if !self.too_long {
                if self.current.len() + part.len() > self.max_line + 1 {
                    self.too_long = true;
                    self.current = Vec::new();
                } else {
                    self.current.extend_from_slice(part);
                }
            }
            if ends {
                self.emit(out);
            }
            chunk = rest;
        }
    }

    /// The last line, when the file does not end with `\n`.
    pub fn finish(&mut self, out: &mut Vec<Line>) {
        if self.started {
            self.emit(out);
        }
    }

    fn emit(&mut self, out: &mut Vec<Line>) {
        self.lines = self.lines.saturating_add(1);
        let number = self.lines;
        let mut bytes = std::mem::take(&mut self.current);
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        if self.too_long || bytes.len() > self.max_line {
            out.push(Line::TooLong {
                number,
                end: self.offset,
            });
        } else {
            out.push(Line::Whole {
                number,
                bytes,
                end: self.offset,
            });
        }
        self.too_long = false;
        self.started = false;
    }
}

/// Why a line became no run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineRefusal {
    pub code: &'static str,
    pub message: String,
}

/// A line's seed: `None` for a blank line (skipped, as NDJSON readers do), else the JSON value
/// or why it is not one. Nesting is bounded by the JSON reader's own recursion limit.
pub fn parse_line(bytes: &[u8]) -> Result<Option<Value>, LineRefusal> {
    let text = std::str::from_utf8(bytes).map_err(|e| LineRefusal {
        code: line_errors::INVALID_UTF8,
        message: format!("the line is not UTF-8 (byte {})", e.valid_up_to() + 1),
    })?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str::<Value>(text)
        .map(Some)
        .map_err(|e| LineRefusal {
            code: line_errors::INVALID_JSON,
            message: format!("the line is not one JSON value: {e}"),
        })
}

pub const MANIFEST_SCHEMA: &str = "docbundle.batch-manifest/v1";

/// One run of a batch, as its manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManifestRun {
    pub line: u32,
    pub run_id: Uuid,
    pub status: crate::RunStatus,
    pub seed_hash: String,
    /// The SHA-256 of the run's signed manifest (completed runs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_sha256: Option<String>,
    /// The run's error code (failed runs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The run's index in the batch's Merkle tree (completed runs only, in line order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf_index: Option<u64>,
}

impl ManifestRun {
    /// The tree's entry for a completed run: `line runId manifestSha256` (ASCII, one space
    /// apart), hashed as an RFC 6962 leaf.
    pub fn leaf_entry(&self) -> Option<String> {
        self.manifest_sha256
            .as_ref()
            .map(|sha| format!("{} {} {sha}", self.line, self.run_id))
    }
}

/// The batch's Merkle tree over its completed runs' manifests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManifestTree {
    /// RFC 6962 (SHA-256, `0x00` leaves, `0x01` nodes), leaves in line order.
    pub algorithm: String,
    pub size: u64,
    /// Hex; the empty tree's root is SHA-256 of nothing.
    pub root: String,
}

/// Totals of a batch's lines by what became of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BatchTotals {
    pub lines: u32,
    pub runs: u32,
    pub pending: u32,
    pub processing: u32,
    pub completed: u32,
    pub failed: u32,
    /// Lines that became no run.
    pub errors: u32,
}

/// What a batch produced: signed by the service's manifest key, stored beside the runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BatchManifest {
    pub schema: String,
    pub batch_id: Uuid,
    pub merchant_id: MerchantId,
    pub configuration_id: Uuid,
    pub configuration_version: i32,
    pub status: BatchStatus,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: chrono::DateTime<chrono::Utc>,
    pub totals: BatchTotals,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    pub tree: ManifestTree,
    /// Every run, in line order.
    pub runs: Vec<ManifestRun>,
}

impl BatchManifest {
    /// Numbers the completed runs' leaves (in line order) and computes the tree.
    pub fn seal(runs: &mut [ManifestRun]) -> (ManifestTree, MemoryLog) {
        runs.sort_by_key(|r| r.line);
        let mut log = MemoryLog::default();
        for run in runs.iter_mut() {
            run.leaf_index = run.leaf_entry().map(|entry| log.append(entry.as_bytes()));
        }
        let root = tree_root(&mut log);
        (
            ManifestTree {
                algorithm: "rfc6962-sha256".to_owned(),
                size: log.size(),
                root: hex::encode(root),
            },
            log,
        )
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// Checks the manifest against itself: every listed completed run is a leaf at its index,
    /// and the leaves make the stated root. `Err` names the first mismatch.
    pub fn check_tree(&self) -> Result<(), String> {
        let mut runs = self.runs.clone();
        let (tree, _) = Self::seal(&mut runs);
        for (listed, sealed) in self.runs.iter().zip(&runs) {
            if listed.leaf_index != sealed.leaf_index || listed.line != sealed.line {
                return Err(format!(
                    "line {}: leaf index {:?}, expected {:?} (runs must be in line order)",
                    listed.line, listed.leaf_index, sealed.leaf_index
                ));
            }
        }
        if tree != self.tree {
            return Err(format!(
                "the runs make root {} of {} leaves; the manifest says {} of {}",
                tree.root, tree.size, self.tree.root, self.tree.size
            ));
        }
        Ok(())
    }
}

pub const STATEMENT_SCHEMA: &str = "docbundle.batch-statement/v1";

/// What the service's key signs for a batch: the manifest by its SHA-256, with its tree and
/// totals. Small whatever the batch (a 100,000-run manifest is about 26 MB, more than a
/// signer takes in one request); a verifier checks the signature over these bytes, then the
/// manifest's SHA-256 and tree against them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BatchStatement {
    pub schema: String,
    pub batch_id: Uuid,
    pub merchant_id: MerchantId,
    pub status: BatchStatus,
    pub manifest_sha256: String,
    pub tree: ManifestTree,
    pub totals: BatchTotals,
}

impl BatchStatement {
    pub fn of(manifest: &BatchManifest, manifest_sha256: &str) -> Self {
        BatchStatement {
            schema: STATEMENT_SCHEMA.to_owned(),
            batch_id: manifest.batch_id,
            merchant_id: manifest.merchant_id,
            status: manifest.status,
            manifest_sha256: manifest_sha256.to_owned(),
            tree: manifest.tree.clone(),
            totals: manifest.totals.clone(),
        }
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// Whether `manifest` (its exact bytes) is the one this statement names; `Err` says why
    /// not.
    pub fn covers(&self, manifest_bytes: &[u8], manifest: &BatchManifest) -> Result<(), String> {
        use sha2::Digest;
        let sha = hex::encode(sha2::Sha256::digest(manifest_bytes));
        if sha != self.manifest_sha256 {
            return Err(format!(
                "the manifest's SHA-256 is {sha}; the signed statement names {}",
                self.manifest_sha256
            ));
        }
        if manifest.batch_id != self.batch_id
            || manifest.tree != self.tree
            || manifest.totals != self.totals
        {
            return Err("the manifest's batch, tree or totals are not the statement's".to_owned());
        }
        manifest.check_tree()
    }
}

/// The root of `log` (SHA-256 of nothing when it is empty, as RFC 6962 has it).
pub fn tree_root(log: &mut MemoryLog) -> Hash {
    if log.size() == 0 {
        use sha2::Digest;
        return sha2::Sha256::digest([]).into();
    }
    merkle::root(log, log.size()).expect("a memory log holds every subtree")
}

/// The inclusion proof of leaf `index` in `log` (hex hashes, as a verifier reads them).
pub fn inclusion_proof(log: &mut MemoryLog, index: u64) -> Vec<String> {
    merkle::range_hashes(log, &merkle::inclusion_ranges(index, log.size()))
        .map(|hashes| hashes.iter().map(hex::encode).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(max: usize, chunks: &[&[u8]]) -> Vec<Line> {
        let mut splitter = LineSplitter::new(max, 0, 0);
        let mut out = Vec::new();
        for chunk in chunks {
            splitter.feed(chunk, &mut out);
        }
        splitter.finish(&mut out);
        out
    }

    #[test]
    fn lines_are_split_across_chunks_with_their_end_offsets() {
        let lines = split(10, &[b"{\"a\"", b":1}\n\r\n{}", b"\r\n", b"x"]);
        assert_eq!(
            lines,
            vec![
                Line::Whole {
                    number: 1,
                    bytes: b"{\"a\":1}".to_vec(),
                    end: 8
                },
                Line::Whole {
                    number: 2,
                    bytes: vec![],
                    end: 10
                },
                Line::Whole {
                    number: 3,
                    bytes: b"{}".to_vec(),
                    end: 14
                },
                Line::Whole {
                    number: 4,
                    bytes: b"x".to_vec(),
                    end: 15
                },
            ]
        );
        assert_eq!(
            split(10, &[b"a\n"]).len(),
            1,
            "a final newline ends the last line"
        );
        assert!(split(10, &[]).is_empty());
    }

    #[test]
    fn a_long_line_is_reported_without_keeping_its_bytes() {
        let long = vec![b'x'; 1000];
        let mut splitter = LineSplitter::new(10, 0, 0);
        let mut out = Vec::new();
        for _ in 0..1000 {
            splitter.feed(&long, &mut out);
            assert!(splitter.current.len() <= 11, "memory stays bounded");
        }
        splitter.feed(b"\n{}\n", &mut out);
        assert_eq!(
            out,
            vec![
                Line::TooLong {
                    number: 1,
                    end: 1_000_001
                },
                Line::Whole {
                    number: 2,
                    bytes: b"{}".to_vec(),
                    end: 1_000_004
                }
            ]
        );
        // Exactly the limit is fine, one more byte is not.
        assert!(matches!(split(3, &[b"abc\n"])[0], Line::Whole { .. }));
        assert!(matches!(split(3, &[b"abcd\n"])[0], Line::TooLong { .. }));
        assert!(matches!(split(3, &[b"abc\r\n"])[0], Line::Whole { .. }));
    }

    #[test]
    fn a_resumed_splitter_numbers_lines_from_where_it_stopped() {
        let file = b"{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n";
        let all = split(100, &[file]);
        let cut = all[0].end();
        let mut resumed = LineSplitter::new(100, cut, 1);
        let mut out = Vec::new();
        resumed.feed(&file[cut as usize..], &mut out);
        resumed.finish(&mut out);
        assert_eq!(out, all[1..].to_vec());
    }

    #[test]
    fn lines_parse_to_seeds_or_say_why_not() {
        assert_eq!(
            parse_line(br#"{"a":1}"#).unwrap(),
            Some(serde_json::json!({"a":1}))
        );
        assert_eq!(parse_line(b"   ").unwrap(), None);
        assert_eq!(
            parse_line(b"{\xff}").unwrap_err().code,
            line_errors::INVALID_UTF8
        );
        assert_eq!(
            parse_line(b"{\"a\":").unwrap_err().code,
            line_errors::INVALID_JSON
        );
        assert_eq!(
            parse_line(b"{} {}").unwrap_err().code,
            line_errors::INVALID_JSON
        );
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(
            parse_line(deep.as_bytes()).unwrap_err().code,
            line_errors::INVALID_JSON
        );
    }

    #[test]
    fn run_ids_are_derived_from_batch_and_line() {
        let batch = Uuid::from_u128(7);
        assert_eq!(run_id(batch, 1), run_id(batch, 1));
        assert_ne!(run_id(batch, 1), run_id(batch, 2));
        assert_ne!(run_id(batch, 1), run_id(Uuid::from_u128(8), 1));
        assert_eq!(run_id(batch, 1).get_version_num(), 5);
    }

    fn run(line: u32, sha: Option<&str>) -> ManifestRun {
        ManifestRun {
            line,
            run_id: run_id(Uuid::nil(), line),
            status: if sha.is_some() {
                crate::RunStatus::Completed
            } else {
                crate::RunStatus::Failed
            },
            seed_hash: "00".repeat(32),
            manifest_sha256: sha.map(str::to_owned),
            error: sha.is_none().then(|| "TEMPLATE_ERROR".to_owned()),
            leaf_index: None,
        }
    }

    #[test]
    fn the_tree_covers_completed_runs_in_line_order_and_proves_each() {
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let mut runs = vec![run(3, Some(&b)), run(2, None), run(1, Some(&a))];
        let (tree, mut log) = BatchManifest::seal(&mut runs);
        assert_eq!(tree.size, 2);
        assert_eq!(
            runs.iter().map(|r| r.leaf_index).collect::<Vec<_>>(),
            [Some(0), None, Some(1)]
        );
        let root: Hash = hex::decode(&tree.root).unwrap().try_into().unwrap();
        for run in runs.iter().filter(|r| r.leaf_index.is_some()) {
            let index = run.leaf_index.unwrap();
            let proof: Vec<Hash> = inclusion_proof(&mut log, index)
                .iter()
                .map(|h| hex::decode(h).unwrap().try_into().unwrap())
                .collect();
            let leaf = merkle::leaf_hash(run.leaf_entry().unwrap().as_bytes());
            assert!(merkle::verify_inclusion(index, 2, &leaf, &proof, &root));
        }

        let manifest = |runs: Vec<ManifestRun>, tree: ManifestTree| BatchManifest {
            schema: MANIFEST_SCHEMA.to_owned(),
            batch_id: Uuid::nil(),
            merchant_id: MerchantId::new(Uuid::nil()),
            configuration_id: Uuid::nil(),
            configuration_version: 1,
            status: BatchStatus::Completed,
            started_at: chrono::DateTime::UNIX_EPOCH,
            finished_at: chrono::DateTime::UNIX_EPOCH,
            totals: BatchTotals::default(),
            error: None,
            tree,
            runs,
        };
        assert_eq!(manifest(runs.clone(), tree.clone()).check_tree(), Ok(()));
        let mut tampered = runs.clone();
        tampered[2].manifest_sha256 = Some("c".repeat(64));
        assert!(manifest(tampered, tree.clone()).check_tree().is_err());
        let mut dropped = runs.clone();
        dropped.remove(0);
        assert!(manifest(dropped, tree).check_tree().is_err());

        let (empty, _) = BatchManifest::seal(&mut []);
        assert_eq!(
            empty.root,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
