use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use xdr_core::{Revision, StateStore, StoreError, SyncState};

/// The sync state in one JSON file. Saves are compare-and-swap on a revision number, under an
/// OS file lock, so two local runs can no more clobber each other than two Lambdas can.
#[derive(Debug, Clone)]
pub struct FileStateStore {
    path: PathBuf,
}

#[derive(Serialize)]
struct StoredOut<'a> {
    revision: u64,
    state: &'a RawValue,
}

#[derive(Deserialize)]
struct StoredIn {
    revision: u64,
    state: Box<RawValue>,
}

impl FileStateStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn unavailable(&self, action: &str, error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
        StoreError::unavailable_because(format!("{action} {}: {error}", self.path.display()), error)
    }

    /// The stored document, its state not yet decoded.
    fn read_stored(&self) -> Result<Option<StoredIn>, StoreError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(self.unavailable("reading", error)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|error| StoreError::Corrupt(format!("{}: {error}", self.path.display())))
    }

    fn read(&self) -> Result<Option<(SyncState, u64)>, StoreError> {
        let Some(stored) = self.read_stored()? else { return Ok(None) };
        let state = SyncState::from_json(stored.state.get())
            .map_err(|error| StoreError::Corrupt(format!("{}: {error}", self.path.display())))?;
        Ok(Some((state, stored.revision)))
    }

    fn lock(&self) -> Result<File, StoreError> {
        let lock_path = self.path.with_extension("lock");
        if let Some(parent) = lock_path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|error| self.unavailable("creating the folder of", error))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|error| self.unavailable("opening the lock of", error))?;
        file.lock().map_err(|error| self.unavailable("locking", error))?;
        Ok(file)
    }

    fn save_blocking(&self, state_json: String, expected: Option<u64>) -> Result<Revision, StoreError> {
        let _lock = self.lock()?;
        // The revision alone: the state itself is not decoded.
        let current = self.read_stored()?.map(|stored| stored.revision);
        if current != expected {
            return Err(StoreError::Conflict);
        }
        let next = current.unwrap_or(0) + 1;
        let raw =
            RawValue::from_string(state_json).map_err(|error| StoreError::Corrupt(error.to_string()))?;
        let text = serde_json::to_string(&StoredOut { revision: next, state: &raw })
            .map_err(|error| StoreError::Corrupt(error.to_string()))?;
        let temporary = self.path.with_extension("json.partial");
        let mut file = File::create(&temporary).map_err(|error| self.unavailable("writing", error))?;
        file.write_all(text.as_bytes()).map_err(|error| self.unavailable("writing", error))?;
        file.sync_all().map_err(|error| self.unavailable("syncing", error))?;
        std::fs::rename(&temporary, &self.path).map_err(|error| self.unavailable("replacing", error))?;
        Ok(Revision(next))
    }
}

impl StateStore for FileStateStore {
    fn location(&self) -> String {
        format!("file:{}", std::path::absolute(&self.path).unwrap_or_else(|_| self.path.clone()).display())
    }

    async fn load(&self) -> Result<Option<(SyncState, Revision)>, StoreError> {
        let store = self.clone();
        let loaded = tokio::task::spawn_blocking(move || store.read())
            .await
            .map_err(|error| StoreError::unavailable(error.to_string()))??;
        Ok(loaded.map(|(state, revision)| (state, Revision(revision))))
    }

    async fn save(&self, state: &mut SyncState, expected: Option<&Revision>) -> Result<Revision, StoreError> {
        // A file has no size limit: the whole state, dedup memory included, in one document.
        let store = self.clone();
        let state_json = state.to_json();
        let expected = expected.map(|revision| revision.0);
        tokio::task::spawn_blocking(move || store.save_blocking(state_json, expected))
            .await
            .map_err(|error| StoreError::unavailable(error.to_string()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn saves_are_compare_and_swap() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStateStore::new(dir.path().join("state/sync.json"));
        assert!(store.load().await.unwrap().is_none());
        let t = xdr_core::timeutil::parse_instant("2026-11-28T06:00:00Z").unwrap();
        let mut state = SyncState::first_run(t);
        let first = store.save(&mut state, None).await.unwrap();
        assert!(matches!(store.save(&mut state, None).await, Err(StoreError::Conflict)));
        let second = store.save(&mut state, Some(&first)).await.unwrap();
        assert!(matches!(store.save(&mut state, Some(&first)).await, Err(StoreError::Conflict)));
        let (loaded, revision) = store.load().await.unwrap().unwrap();
        assert_eq!(loaded, state);
        assert_eq!(revision, second);
    }

    #[tokio::test]
    async fn a_corrupt_file_is_reported_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sync.json");
        std::fs::write(&path, "{not json").unwrap();
        let store = FileStateStore::new(&path);
        assert!(matches!(store.load().await, Err(StoreError::Corrupt(_))));
    }
}
