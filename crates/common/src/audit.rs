//! A tamper-evident audit log: one JSON record per line, each carrying the
//! SHA-256 of the previous record, so that changing, removing or reordering
//! any record breaks the chain at that point (`nannyctl audit verify`).
//!
//! Every record is also signed (Ed25519, the gate's verdict key) over its
//! hash, so re-hashing the chain after an edit does not help without the
//! key. Losing the tail (truncation) leaves an intact, shorter chain: it is
//! caught against [`Anchor`]s kept outside the file. The gate returns the
//! anchor of each verdict's record with the verdict, and the coordinator
//! keeps it in the HealingAction's status (`nannyctl audit verify
//! --anchors-from-cluster`).

use std::{
    fs::{File, OpenOptions},
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::verdict::{Signer, Verifier};

/// The hash before the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audited decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the log, from 1.
    pub seq: u64,
    /// Hash of the previous record ([`GENESIS`] for the first).
    pub prev_hash: String,
    /// RFC 3339 time of the decision.
    pub time: String,
    /// The id handed out with the decision.
    pub audit_id: String,
    /// What was decided on and how, as the service records it.
    pub entry: serde_json::Value,
    /// SHA-256 over every field above, hex.
    pub hash: String,
    /// Ed25519 signature by the gate's key over `hash`, hex.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub signature: String,
    /// Which gate key signed it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key_id: String,
}

/// Where the chain stood after one record: kept outside the log, it shows a
/// later truncation or rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// The record's position, from 1.
    pub seq: u64,
    /// Its hash.
    pub hash: String,
    /// Where the anchor was kept, for messages (e.g. a HealingAction).
    pub source: String,
}

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Records in the log.
    pub records: u64,
    /// The last record's hash ([`GENESIS`] for an empty log).
    pub head: String,
    /// Anchors checked against the log.
    pub anchors: usize,
}

impl AuditRecord {
    fn compute_hash(&self) -> String {
        let mut hasher = Sha256::new();
        // Field order is fixed by this code, and serde_json writes map keys
        // of `entry` in a stable order, so the digest is reproducible.
        for part in [
            self.seq.to_string().as_str(),
            &self.prev_hash,
            &self.time,
            &self.audit_id,
            &self.entry.to_string(),
        ] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// What can go wrong with the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The file cannot be read or written.
    #[error("audit log {path}: {source}")]
    Io {
        /// The log file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The log is shorter than an anchor kept outside it: its tail was cut.
    #[error(
        "audit log {path}: truncated: {source_name} anchors record {anchored}, but the log ends at record {records}"
    )]
    Truncated {
        /// The log file.
        path: PathBuf,
        /// Records in the log.
        records: u64,
        /// The anchored record's position.
        anchored: u64,
        /// Where the anchor was kept.
        source_name: String,
    },
    /// A record does not fit the chain.
    #[error("audit log {path}, line {line}: {problem}")]
    Broken {
        /// The log file.
        path: PathBuf,
        /// 1-based line number of the first bad record.
        line: usize,
        /// What is wrong with it.
        problem: String,
    },
}

/// Appends records to the log, continuing an existing chain.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: File,
    seq: u64,
    last_hash: String,
    signer: std::sync::Arc<Signer>,
}

impl AuditLog {
    /// Opens (or creates) the log, signing with `signer`, and returns its
    /// records; an existing log is verified first (its chain, and the
    /// signature of every record `signer`'s key made; records of an earlier
    /// key are checked by `nannyctl audit verify` with both keys), and a
    /// broken or unsigned one is refused: a chain that cannot be checked
    /// cannot be extended.
    ///
    /// # Errors
    /// [`AuditError`] when the file cannot be opened or its chain is broken.
    pub fn open(
        path: &Path,
        signer: std::sync::Arc<Signer>,
    ) -> Result<(Self, Vec<AuditRecord>), AuditError> {
        let io = |source| AuditError::Io {
            path: path.to_owned(),
            source,
        };
        let records = if path.exists() {
            read(path)?
        } else {
            Vec::new()
        };
        let own = signer.verifier();
        for (index, record) in records.iter().enumerate() {
            if record.signature.is_empty() || record.key_id == signer.key_id() {
                check_signature(path, index + 1, record, &own)?;
            }
        }
        let (seq, last_hash) = records
            .last()
            .map_or((0, GENESIS.to_owned()), |r| (r.seq, r.hash.clone()));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        Ok((
            Self {
                path: path.to_owned(),
                file,
                seq,
                last_hash,
                signer,
            },
            records,
        ))
    }

    /// Where the chain stands: the last record's position and hash (0 and
    /// [`GENESIS`] while empty).
    pub fn head(&self) -> (u64, String) {
        (self.seq, self.last_hash.clone())
    }

    /// Appends one signed record and flushes it to the disk before
    /// returning its anchor.
    ///
    /// # Errors
    /// [`AuditError::Io`] when the write fails; the caller must then treat
    /// the decision as not made.
    pub fn append(
        &mut self,
        time: String,
        audit_id: String,
        entry: serde_json::Value,
    ) -> Result<Anchor, AuditError> {
        let mut record = AuditRecord {
            seq: self.seq + 1,
            prev_hash: self.last_hash.clone(),
            time,
            audit_id,
            entry,
            hash: String::new(),
            signature: String::new(),
            key_id: String::new(),
        };
        record.hash = record.compute_hash();
        (record.key_id, record.signature) = self.signer.sign_audit(&record.hash);
        let io = |source| AuditError::Io {
            path: self.path.clone(),
            source,
        };
        let mut line = serde_json::to_string(&record).map_err(|e| io(std::io::Error::other(e)))?;
        line.push('\n');
        // A failed or short write is cut off again, so a later append never
        // follows half a record; the data reaches the disk before the
        // decision is handed out.
        let offset = self.file.metadata().map_err(io)?.len();
        if let Err(error) = self
            .file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data())
        {
            let _ = self.file.set_len(offset);
            return Err(io(error));
        }
        self.seq = record.seq;
        self.last_hash.clone_from(&record.hash);
        Ok(Anchor {
            seq: record.seq,
            hash: record.hash,
            source: String::new(),
        })
    }
}

fn check_signature(
    path: &Path,
    line: usize,
    record: &AuditRecord,
    verifier: &Verifier,
) -> Result<(), AuditError> {
    verifier
        .verify_audit(&record.hash, &record.key_id, &record.signature)
        .map_err(|error| AuditError::Broken {
            path: path.to_owned(),
            line,
            problem: format!(
                "record {} (audit id {}) is not signed by a trusted gate key: {error}",
                record.seq, record.audit_id
            ),
        })
}

/// Every record of a log, checking the whole chain on the way.
///
/// # Errors
/// [`AuditError::Broken`] naming the first record that does not fit, or
/// [`AuditError::Io`] when the file cannot be read.
pub fn read(path: &Path) -> Result<Vec<AuditRecord>, AuditError> {
    let io = |source| AuditError::Io {
        path: path.to_owned(),
        source,
    };
    let broken = |line: usize, problem: String| AuditError::Broken {
        path: path.to_owned(),
        line,
        problem,
    };
    let reader = BufReader::new(File::open(path).map_err(io)?);
    let mut records: Vec<AuditRecord> = Vec::new();
    for (index, line) in reader.lines().enumerate() {
        let number = index + 1;
        let line = line.map_err(io)?;
        let record: AuditRecord = serde_json::from_str(&line)
            .map_err(|e| broken(number, format!("not an audit record: {e}")))?;
        let (seq, last_hash) = records
            .last()
            .map_or((0, GENESIS), |r| (r.seq, r.hash.as_str()));
        if record.seq != seq + 1 {
            return Err(broken(
                number,
                format!(
                    "sequence {} follows {seq}: a record is missing or out of order",
                    record.seq
                ),
            ));
        }
        if record.prev_hash != last_hash {
            return Err(broken(
                number,
                "does not follow the previous record (prev_hash differs)".to_owned(),
            ));
        }
        if record.compute_hash() != record.hash {
            return Err(broken(
                number,
                format!(
                    "record {} (audit id {}) was modified",
                    record.seq, record.audit_id
                ),
            ));
        }
        records.push(record);
    }
    Ok(records)
}

/// Checks the whole chain, every record's signature against `verifier`'s
/// keys, and the log against `anchors` kept outside it (truncation and
/// rewrites).
///
/// # Errors
/// As [`read`]; [`AuditError::Broken`] for a record not signed by a trusted
/// key or different from its anchor; [`AuditError::Truncated`] when an
/// anchor lies beyond the log's end.
pub fn verify(path: &Path, verifier: &Verifier, anchors: &[Anchor]) -> Result<Report, AuditError> {
    let records = read(path)?;
    for (index, record) in records.iter().enumerate() {
        check_signature(path, index + 1, record, verifier)?;
    }
    let count = records.len() as u64;
    for anchor in anchors {
        let Some(record) = usize::try_from(anchor.seq)
            .ok()
            .and_then(|seq| records.get(seq.checked_sub(1)?))
        else {
            return Err(AuditError::Truncated {
                path: path.to_owned(),
                records: count,
                anchored: anchor.seq,
                source_name: anchor.source.clone(),
            });
        };
        if record.hash != anchor.hash {
            return Err(AuditError::Broken {
                path: path.to_owned(),
                line: usize::try_from(anchor.seq).unwrap_or(usize::MAX),
                problem: format!(
                    "record {} differs from its anchor in {}: the log was rewritten from here",
                    anchor.seq, anchor.source
                ),
            });
        }
    }
    Ok(Report {
        records: count,
        head: records
            .last()
            .map_or_else(|| GENESIS.to_owned(), |r| r.hash.clone()),
        anchors: anchors.len(),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn signer() -> Arc<Signer> {
        Arc::new(Signer::from_bytes(
            &[9; 32],
            std::time::Duration::from_secs(60),
        ))
    }

    fn log_with(records: usize) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "nanny-audit-{}-{records}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let _ = std::fs::remove_file(&path);
        let (mut log, _) = AuditLog::open(&path, signer()).unwrap();
        for i in 0..records {
            log.append(
                format!("2026-11-22T00:00:0{i}Z"),
                format!("a{i}"),
                serde_json::json!({"decision": "DENIED", "n": i}),
            )
            .unwrap();
        }
        path
    }

    fn check(path: &Path, anchors: &[Anchor]) -> Result<Report, AuditError> {
        verify(path, &signer().verifier(), anchors)
    }

    fn edit_line(path: &Path, line: usize, edit: impl Fn(&str) -> String) {
        let text = std::fs::read_to_string(path).unwrap();
        let lines: Vec<String> = text
            .lines()
            .enumerate()
            .map(|(i, l)| if i + 1 == line { edit(l) } else { l.to_owned() })
            .collect();
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
    }

    fn anchor(path: &Path, seq: u64) -> Anchor {
        let records = read(path).unwrap();
        Anchor {
            seq,
            hash: records[usize::try_from(seq).unwrap() - 1].hash.clone(),
            source: format!("HealingAction shop/ha-{seq}"),
        }
    }

    #[test]
    fn an_intact_chain_verifies_and_reopening_continues_it() {
        let path = log_with(3);
        let anchored = anchor(&path, 3);
        assert_eq!(
            check(&path, std::slice::from_ref(&anchored))
                .unwrap()
                .records,
            3
        );
        let (mut log, _) = AuditLog::open(&path, signer()).unwrap();
        let next = log
            .append("t".into(), "a3".into(), serde_json::json!({}))
            .unwrap();
        assert_eq!(next.seq, 4);
        let report = check(&path, &[anchored]).unwrap();
        assert_eq!((report.records, report.head), (4, next.hash));
    }

    #[test]
    fn a_modified_record_is_named() {
        let path = log_with(3);
        edit_line(&path, 2, |l| l.replace("DENIED", "APPROVED"));
        let err = check(&path, &[]).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("modified"), "{err}");
        assert!(
            AuditLog::open(&path, signer()).is_err(),
            "a broken chain is not extended"
        );
    }

    #[test]
    fn a_removed_or_rehashed_record_is_detected() {
        let path = log_with(3);
        edit_line(&path, 2, |_| String::new());
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("\n\n", "\n");
        std::fs::write(&path, text).unwrap();
        assert!(
            check(&path, &[])
                .unwrap_err()
                .to_string()
                .contains("line 2")
        );

        // Recomputing the tampered record's own hash does not help: the next one breaks.
        let path = log_with(3);
        edit_line(&path, 2, |l| {
            let mut record: AuditRecord = serde_json::from_str(l).unwrap();
            record.entry = serde_json::json!({"decision": "APPROVED"});
            record.hash = record.compute_hash();
            serde_json::to_string(&record).unwrap()
        });
        assert!(
            check(&path, &[])
                .unwrap_err()
                .to_string()
                .contains("line 3")
        );
    }

    /// Flips one decision and re-hashes every record after it, as an
    /// attacker without the key would.
    fn rewrite_from(path: &Path, line: usize) {
        let mut records = read(path).unwrap();
        let mut prev = records[line - 2].hash.clone();
        for record in &mut records[line - 1..] {
            record.entry = serde_json::json!({"decision": "APPROVED"});
            record.prev_hash = prev;
            record.hash = record.compute_hash();
            prev = record.hash.clone();
        }
        let text: String = records
            .iter()
            .map(|r| serde_json::to_string(r).unwrap() + "\n")
            .collect();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn a_rewritten_and_rehashed_tail_fails_its_signatures_and_its_anchor() {
        let path = log_with(4);
        let anchored = anchor(&path, 3);
        rewrite_from(&path, 2);
        assert!(read(&path).is_ok(), "the unkeyed chain alone is intact");
        let err = check(&path, &[]).unwrap_err().to_string();
        assert!(
            err.contains("line 2") && err.contains("not signed by a trusted gate key"),
            "{err}"
        );
        // Stripping the signatures is no way out either.
        let text = std::fs::read_to_string(&path).unwrap();
        let stripped: String = text
            .lines()
            .map(|l| {
                let mut record: AuditRecord = serde_json::from_str(l).unwrap();
                record.signature.clear();
                serde_json::to_string(&record).unwrap() + "\n"
            })
            .collect();
        std::fs::write(&path, stripped).unwrap();
        assert!(check(&path, &[]).is_err());
        assert!(AuditLog::open(&path, signer()).is_err());
        let other = Arc::new(Signer::from_bytes(
            &[1; 32],
            std::time::Duration::from_secs(1),
        ));
        let err = verify(&path, &other.verifier(), &[anchored]).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn a_cut_tail_is_caught_by_its_anchor() {
        let path = log_with(5);
        let anchored = anchor(&path, 4);
        let text = std::fs::read_to_string(&path).unwrap();
        let kept: Vec<&str> = text.lines().take(2).collect();
        std::fs::write(&path, kept.join("\n") + "\n").unwrap();
        assert_eq!(check(&path, &[]).unwrap().records, 2, "intact but shorter");
        let err = check(&path, &[anchored]).unwrap_err();
        assert!(matches!(
            err,
            AuditError::Truncated {
                records: 2,
                anchored: 4,
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            format!(
                "audit log {}: truncated: HealingAction shop/ha-4 anchors record 4, but the log ends at record 2",
                path.display()
            )
        );
    }

    #[test]
    fn a_record_that_differs_from_its_anchor_is_named() {
        let path = log_with(3);
        let mut anchored = anchor(&path, 2);
        anchored.hash = GENESIS.to_owned();
        let err = check(&path, &[anchored]).unwrap_err().to_string();
        assert!(
            err.contains("line 2") && err.contains("differs from its anchor"),
            "{err}"
        );
    }
}
