//! The artifact store seam: where datasets, stage outputs and exports live. Jobs carry artifact
//! keys, never the data. The local-directory store is the default; a distributed deployment
//! points every process at the same shared volume.

use std::{
    path::{Path, PathBuf},
    pin::Pin,
};

use tokio::io::AsyncRead;

use crate::{Error, Result};

/// A byte stream read from the store.
pub type ArtifactReader = Pin<Box<dyn AsyncRead + Send>>;

#[async_trait::async_trait]
pub trait ArtifactStore: Send + Sync + std::fmt::Debug {
    /// Stores small artifacts (shards, reports) whole; a reader never sees half of one.
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()>;
    async fn get(&self, key: &str) -> Result<Vec<u8>>;
    /// Moves a finished local file into the store under `key` (uploads stream to a staging
    /// file first, so their size is bounded by disk, not memory).
    async fn put_file(&self, key: &str, path: &Path) -> Result<()>;
    /// Streams an artifact, for datasets and exports too large to hold in memory.
    async fn reader(&self, key: &str) -> Result<ArtifactReader>;
    /// Where uploads are staged before [`ArtifactStore::put_file`].
    fn staging_dir(&self) -> PathBuf;
    async fn ping(&self) -> Result<()>;
}

/// The store `MCP_ARTIFACT_STORE` names: a directory path (the default).
pub fn open(location: &str) -> Result<std::sync::Arc<dyn ArtifactStore>> {
    Ok(std::sync::Arc::new(LocalDirStore::new(location)?))
}

#[derive(Debug, Clone)]
pub struct LocalDirStore {
    root: PathBuf,
}

impl LocalDirStore {
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(Self { root })
    }

    /// Keys are relative paths made of safe segments; anything else is refused, so a key can
    /// never name a file outside the store.
    fn path(&self, key: &str) -> Result<PathBuf> {
        let ok = !key.is_empty()
            && key.split('/').all(|seg| {
                !seg.is_empty()
                    && seg != ".."
                    && seg != "."
                    && seg
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            });
        if !ok {
            return Err(Error::Artifact(format!("invalid artifact key {key:?}")));
        }
        Ok(self.root.join(Path::new(key)))
    }
}

#[async_trait::async_trait]
impl ArtifactStore for LocalDirStore {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        let path = self.path(key)?;
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        // Write then rename, so a reader never sees half a file.
        let tmp = path.with_extension("partial");
        tokio::fs::write(&tmp, bytes).await?;
        tokio::fs::rename(&tmp, &path).await?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>> {
        match tokio::fs::read(self.path(key)?).await {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NotFound("artifact")),
            Err(e) => Err(e.into()),
        }
    }

    async fn put_file(&self, key: &str, path: &Path) -> Result<()> {
        let dest = self.path(key)?;
        if let Some(dir) = dest.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        // Staging lives under the root, so this is a rename on the same filesystem.
        if tokio::fs::rename(path, &dest).await.is_err() {
            let tmp = dest.with_extension("partial");
            tokio::fs::copy(path, &tmp).await?;
            tokio::fs::rename(&tmp, &dest).await?;
            tokio::fs::remove_file(path).await.ok();
        }
        Ok(())
    }

    async fn reader(&self, key: &str) -> Result<ArtifactReader> {
        match tokio::fs::File::open(self.path(key)?).await {
            Ok(f) => Ok(Box::pin(f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NotFound("artifact")),
            Err(e) => Err(e.into()),
        }
    }

    fn staging_dir(&self) -> PathBuf {
        self.root.join(".staging")
    }

    async fn ping(&self) -> Result<()> {
        tokio::fs::metadata(&self.root).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_refuses_escaping_keys() {
        let dir = std::env::temp_dir().join(format!("mcp-art-{}", uuid::Uuid::now_v7()));
        let store = LocalDirStore::new(&dir).unwrap();
        store.put("a/b.jsonl", b"x".to_vec()).await.unwrap();
        assert_eq!(store.get("a/b.jsonl").await.unwrap(), b"x");
        assert!(store.put("../evil", vec![]).await.is_err());
        assert!(store.get("/etc/passwd").await.is_err());
        assert!(matches!(
            store.get("missing").await,
            Err(Error::NotFound(_))
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
