//! A tamper-evident audit log: one JSON record per line, each carrying the
//! SHA-256 of the previous record, so that changing, removing or reordering
//! any record breaks the chain at that point (`nannyctl audit verify`).
//!
//! Limits: the chain is an unkeyed hash, so it detects edits, removals and
//! reordering inside the log, but not the loss of its tail (truncation,
//! deletion) nor a rewrite of every record after some point. Anchoring the
//! latest hash outside the file (HealingAction status, a keyed MAC) is the
//! next step; see the safety-gate issue notes.

use std::{
    fs::{File, OpenOptions},
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

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
}

impl AuditLog {
    /// Opens (or creates) the log and returns its records; an existing log
    /// is verified first, and a broken one is refused — a chain that cannot
    /// be checked cannot be extended.
    ///
    /// # Errors
    /// [`AuditError`] when the file cannot be opened or its chain is broken.
    pub fn open(path: &Path) -> Result<(Self, Vec<AuditRecord>), AuditError> {
        let io = |source| AuditError::Io {
            path: path.to_owned(),
            source,
        };
        let records = if path.exists() {
            read(path)?
        } else {
            Vec::new()
        };
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
            },
            records,
        ))
    }

    /// Appends one record and flushes it to the OS before returning.
    ///
    /// # Errors
    /// [`AuditError::Io`] when the write fails; the caller must then treat
    /// the decision as not made.
    pub fn append(
        &mut self,
        time: String,
        audit_id: String,
        entry: serde_json::Value,
    ) -> Result<(), AuditError> {
        let mut record = AuditRecord {
            seq: self.seq + 1,
            prev_hash: self.last_hash.clone(),
            time,
            audit_id,
            entry,
            hash: String::new(),
        };
        record.hash = record.compute_hash();
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
        self.last_hash = record.hash;
        Ok(())
    }
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

/// Checks the whole chain; returns the record count and the last hash.
///
/// # Errors
/// As [`read`].
pub fn verify(path: &Path) -> Result<(u64, String), AuditError> {
    let records = read(path)?;
    Ok(records
        .last()
        .map_or((0, GENESIS.to_owned()), |r| (r.seq, r.hash.clone())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with(records: usize) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "nanny-audit-{}-{records}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let _ = std::fs::remove_file(&path);
        let (mut log, _) = AuditLog::open(&path).unwrap();
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

    fn edit_line(path: &Path, line: usize, edit: impl Fn(&str) -> String) {
        let text = std::fs::read_to_string(path).unwrap();
        let lines: Vec<String> = text
            .lines()
            .enumerate()
            .map(|(i, l)| if i + 1 == line { edit(l) } else { l.to_owned() })
            .collect();
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
    }

    #[test]
    fn an_intact_chain_verifies_and_reopening_continues_it() {
        let path = log_with(3);
        assert_eq!(verify(&path).unwrap().0, 3);
        let (mut log, _) = AuditLog::open(&path).unwrap();
        log.append("t".into(), "a3".into(), serde_json::json!({}))
            .unwrap();
        assert_eq!(verify(&path).unwrap().0, 4);
    }

    #[test]
    fn a_modified_record_is_named() {
        let path = log_with(3);
        edit_line(&path, 2, |l| l.replace("DENIED", "APPROVED"));
        let err = verify(&path).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("modified"), "{err}");
        assert!(
            AuditLog::open(&path).is_err(),
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
        assert!(verify(&path).unwrap_err().to_string().contains("line 2"));

        // Recomputing the tampered record's own hash does not help: the next one breaks.
        let path = log_with(3);
        edit_line(&path, 2, |l| {
            let mut record: AuditRecord = serde_json::from_str(l).unwrap();
            record.entry = serde_json::json!({"decision": "APPROVED"});
            record.hash = record.compute_hash();
            serde_json::to_string(&record).unwrap()
        });
        assert!(verify(&path).unwrap_err().to_string().contains("line 3"));
    }
}
