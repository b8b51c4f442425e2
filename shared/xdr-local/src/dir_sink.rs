use std::path::{Component, Path, PathBuf};

use xdr_core::{ObjectSink, SinkError};

/// Objects as files under a root folder; the key is the relative path.
#[derive(Debug, Clone)]
pub struct DirSink {
    root: PathBuf,
}

impl DirSink {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &str) -> Result<PathBuf, SinkError> {
        let relative = Path::new(key);
        let plain = relative.components().all(|component| matches!(component, Component::Normal(_)));
        if key.is_empty() || !plain {
            return Err(SinkError::new(format!("object key `{key}` is not a plain relative path")));
        }
        Ok(self.root.join(relative))
    }
}

impl ObjectSink for DirSink {
    /// Writes to a temporary file and renames it: a reader (or a crash) never sees half an object.
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), SinkError> {
        let path = self.path_of(key)?;
        let parent = path.parent().map(Path::to_path_buf).unwrap_or_else(|| self.root.clone());
        let file_name = path.file_name().and_then(|name| name.to_str()).unwrap_or("object");
        let temporary = parent.join(format!(".{file_name}.partial"));
        let result = async {
            tokio::fs::create_dir_all(&parent).await?;
            tokio::fs::write(&temporary, &body).await?;
            tokio::fs::rename(&temporary, &path).await
        }
        .await;
        result
            .map_err(|error| SinkError::new(format!("writing {}: {error}", path.display())).caused_by(error))
    }

    async fn exists(&self, key: &str) -> Result<bool, SinkError> {
        let path = self.path_of(key)?;
        tokio::fs::try_exists(&path)
            .await
            .map_err(|error| SinkError::new(format!("checking {}: {error}", path.display())).caused_by(error))
    }

    async fn read(&self, key: &str) -> Result<Option<Vec<u8>>, SinkError> {
        let path = self.path_of(key)?;
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => {
                Err(SinkError::new(format!("reading {}: {error}", path.display())).caused_by(error))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_write_keeps_the_io_error_as_its_source() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"a file where a folder should be").unwrap();
        let error = DirSink::new(dir.path()).put("a/dt=2026-01-01/x.gz", b"x".to_vec()).await.unwrap_err();
        let source = std::error::Error::source(&error).expect("a source");
        assert!(source.downcast_ref::<std::io::Error>().is_some(), "{source:?}");
        assert!(error.to_string().starts_with("writing "), "{error}");
    }

    #[tokio::test]
    async fn writes_objects_atomically_under_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let sink = DirSink::new(dir.path());
        assert!(!sink.exists("a/dt=2026-01-01/x.gz").await.unwrap());
        sink.put("a/dt=2026-01-01/x.gz", b"hello".to_vec()).await.unwrap();
        assert!(sink.exists("a/dt=2026-01-01/x.gz").await.unwrap());
        assert_eq!(std::fs::read(dir.path().join("a/dt=2026-01-01/x.gz")).unwrap(), b"hello");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("a/dt=2026-01-01")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
        assert!(sink.put("../escape", vec![]).await.is_err());
        assert!(sink.put("/abs", vec![]).await.is_err());
    }
}
