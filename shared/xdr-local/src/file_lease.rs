//! The run lease in a folder: one small JSON file per lease, read and replaced under an OS file
//! lock, with the same rules as the DynamoDB lease (an expired lease is free, the holder may
//! take it again). Two local runs (a cron job and a hand-started one) then never work on one
//! state at once, as two Lambda invocations never do.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use xdr_core::{Lease, LeaseOutcome, StoreError};

use crate::file_name_for_key;

#[derive(Debug, Clone)]
pub struct FileLease {
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Held {
    holder: String,
    until_ms: i64,
    /// The holding process: a lease whose process is gone is free (a local run stopped with
    /// Ctrl-C must not block the next one until its deadline).
    #[serde(default)]
    pid: Option<u32>,
}

/// Whether process `pid` is gone (only known where `/proc` tells; elsewhere it counts as alive).
fn process_gone(pid: u32) -> bool {
    cfg!(target_os = "linux") && pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
}

impl FileLease {
    /// Leases kept as files in `dir` (created when first needed).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("lease_{}.json", file_name_for_key(key)))
    }

    fn unavailable(
        path: &Path,
        action: &str,
        error: impl std::error::Error + Send + Sync + 'static,
    ) -> StoreError {
        StoreError::unavailable_because(format!("{action} the lease {}: {error}", path.display()), error)
    }

    fn locked(&self, path: &Path) -> Result<File, StoreError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|error| Self::unavailable(path, "creating the folder of", error))?;
        let lock_path = path.with_extension("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|error| Self::unavailable(path, "opening the lock of", error))?;
        file.lock().map_err(|error| Self::unavailable(path, "locking", error))?;
        Ok(file)
    }

    fn read(path: &Path) -> Option<Held> {
        std::fs::read(path).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok())
    }

    fn acquire_blocking(
        &self,
        key: &str,
        holder: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<LeaseOutcome, StoreError> {
        let path = self.path(key);
        let _lock = self.locked(&path)?;
        if let Some(held) = Self::read(&path)
            && held.holder != holder
            && held.until_ms >= now.timestamp_millis()
            && !held.pid.is_some_and(process_gone)
        {
            let until = DateTime::from_timestamp_millis(held.until_ms).unwrap_or(now);
            return Ok(LeaseOutcome::Held { holder: held.holder, until });
        }
        let text = serde_json::to_vec(&Held {
            holder: holder.to_owned(),
            until_ms: until.timestamp_millis(),
            pid: Some(std::process::id()),
        })
        .map_err(|error| Self::unavailable(&path, "encoding", error))?;
        std::fs::write(&path, text).map_err(|error| Self::unavailable(&path, "writing", error))?;
        Ok(LeaseOutcome::Acquired)
    }

    fn release_blocking(&self, key: &str, holder: &str) -> Result<(), StoreError> {
        let path = self.path(key);
        let _lock = self.locked(&path)?;
        if Self::read(&path).is_some_and(|held| held.holder == holder) {
            std::fs::remove_file(&path).map_err(|error| Self::unavailable(&path, "removing", error))?;
        }
        Ok(())
    }
}

impl Lease for FileLease {
    async fn acquire(
        &self,
        key: &str,
        holder: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<LeaseOutcome, StoreError> {
        let (lease, key, holder) = (self.clone(), key.to_owned(), holder.to_owned());
        tokio::task::spawn_blocking(move || lease.acquire_blocking(&key, &holder, until, now))
            .await
            .map_err(|error| StoreError::unavailable(format!("taking a local lease: {error}")))?
    }

    async fn release(&self, key: &str, holder: &str) -> Result<(), StoreError> {
        let (lease, key, holder) = (self.clone(), key.to_owned(), holder.to_owned());
        tokio::task::spawn_blocking(move || lease.release_blocking(&key, &holder))
            .await
            .map_err(|error| StoreError::unavailable(format!("releasing a local lease: {error}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[tokio::test]
    async fn a_lease_is_held_until_released_or_expired() {
        let dir = tempfile::tempdir().unwrap();
        let lease = FileLease::new(dir.path().join("state"));
        let now = Utc::now();
        let key = "sync#5db5d7e5-4c1e-4a31-9c5e-0123456789ab#alerts";
        assert_eq!(
            lease.acquire(key, "a", now + TimeDelta::minutes(5), now).await.unwrap(),
            LeaseOutcome::Acquired
        );
        let held = lease.acquire(key, "b", now + TimeDelta::minutes(5), now).await.unwrap();
        assert!(matches!(held, LeaseOutcome::Held { ref holder, .. } if holder == "a"), "{held:?}");
        // Another key is another lease.
        assert_eq!(lease.acquire("sync#other#alerts", "b", now, now).await.unwrap(), LeaseOutcome::Acquired);
        lease.release(key, "b").await.unwrap();
        assert!(
            matches!(lease.acquire(key, "b", now, now).await.unwrap(), LeaseOutcome::Held { .. }),
            "only its holder releases it"
        );
        lease.release(key, "a").await.unwrap();
        assert_eq!(
            lease.acquire(key, "b", now + TimeDelta::minutes(1), now).await.unwrap(),
            LeaseOutcome::Acquired
        );
        // Expired: free for anyone.
        let later = now + TimeDelta::minutes(2);
        assert_eq!(
            lease.acquire(key, "c", later + TimeDelta::minutes(1), later).await.unwrap(),
            LeaseOutcome::Acquired
        );
    }

    #[tokio::test]
    async fn a_lease_whose_process_is_gone_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let lease = FileLease::new(dir.path());
        let now = Utc::now();
        let key = "sync#t#alerts";
        // A run in a process that has exited (a child that ran `true`) left its lease behind.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        let until_ms = (now + TimeDelta::minutes(10)).timestamp_millis();
        let held = Held { holder: "stopped-run".into(), until_ms, pid: Some(gone) };
        std::fs::write(lease.path(key), serde_json::to_vec(&held).unwrap()).unwrap();
        let outcome = lease.acquire(key, "next-run", now + TimeDelta::minutes(1), now).await.unwrap();
        assert_eq!(outcome, LeaseOutcome::Acquired, "(on Linux, where /proc tells)");
        // A live process's lease holds (this one's, as another holder sees it).
        let alive = Held { holder: "running".into(), until_ms, pid: Some(std::process::id()) };
        std::fs::write(lease.path(key), serde_json::to_vec(&alive).unwrap()).unwrap();
        assert!(matches!(lease.acquire(key, "next-run", now, now).await.unwrap(), LeaseOutcome::Held { .. }));
    }
}
