//! The artifact store seam: where datasets, stage outputs and exports live. Jobs carry artifact
//! keys, never the data. The local-directory store is the default; a distributed deployment
//! points every process at the same shared volume.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

#[async_trait::async_trait]
pub trait ArtifactStore: Send + Sync + std::fmt::Debug {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()>;
    async fn get(&self, key: &str) -> Result<Vec<u8>>;
    async fn ping(&self) -> Result<()>;
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
