//! The artifact store seam: where datasets, stage outputs and exports live. Jobs carry artifact
//! keys, never the data. The local-directory store is the default; a distributed deployment
//! points every process at the same shared volume.

use std::{
    path::{Path, PathBuf},
    pin::Pin,
};

use tokio::io::AsyncRead;

use crate::{Error, Result};

/// Every artifact key, in one place: what lives where in the store.
pub mod keys {
    use uuid::Uuid;

    use crate::domain::pipeline::{DatasetFormat, ExportFormat, Stage};

    /// An uploaded dataset, as it was uploaded.
    pub fn dataset(id: Uuid, format: DatasetFormat) -> String {
        let extension = match format {
            DatasetFormat::Ndjson => "ndjson",
            DatasetFormat::Json => "json",
            DatasetFormat::Csv => "csv",
        };
        format!("datasets/{id}.{extension}")
    }

    /// One shard of a stage's output (JSON lines).
    pub fn shard(execution: Uuid, stage: Stage, shard: u32) -> String {
        format!("executions/{execution}/{stage}/{shard:05}.jsonl")
    }

    /// The de-duplication fingerprints the validation stage wrote for one shard.
    pub fn fingerprints(execution: Uuid, shard: u32) -> String {
        format!("executions/{execution}/fingerprints/{shard:05}.bin")
    }

    /// The exported file of `format`.
    pub fn export(execution: Uuid, format: ExportFormat) -> String {
        format!("executions/{execution}/export/{}", format.file_name())
    }

    /// The execution's report.
    pub fn report(execution: Uuid) -> String {
        format!("executions/{execution}/export/report.json")
    }
}

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

/// The store `MCP_ARTIFACT_STORE` names: `s3://bucket/prefix` for an S3-compatible store
/// (credentials, region and endpoint from the standard `AWS_*` variables), otherwise a directory
/// path (the default, `./data/artifacts`).
pub fn open(location: &str) -> Result<std::sync::Arc<dyn ArtifactStore>> {
    if location.starts_with("s3://") {
        return Ok(std::sync::Arc::new(S3Store::from_env(location)?));
    }
    Ok(std::sync::Arc::new(LocalDirStore::new(location)?))
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.partial", uuid::Uuid::new_v4().simple()));
    path.with_file_name(name)
}

/// Keys are relative paths made of safe segments; anything else is refused, so a key can
/// never name a file outside the store (or an object outside the prefix).
fn check_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.split('/').all(|seg| {
            !seg.is_empty()
                && seg != ".."
                && seg != "."
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        });
    if ok {
        Ok(())
    } else {
        Err(Error::Artifact(format!("invalid artifact key {key:?}")))
    }
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
        check_key(key)?;
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
        // Write then rename, so a reader never sees half a file; the temporary name is unique,
        // so two writers of one key cannot interleave.
        let tmp = partial_path(&path);
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
            let tmp = partial_path(&dest);
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

/// An S3-compatible object store (AWS S3, MinIO, Ceph, …) for deployments without a shared
/// volume. Uploads stage on local disk and go up in multipart chunks; reads stream.
#[derive(Debug)]
pub struct S3Store {
    store: object_store::prefix::PrefixStore<object_store::aws::AmazonS3>,
    staging: PathBuf,
}

/// Multipart chunk size: S3's minimum part is 5 MiB.
const S3_PART: usize = 8 * 1024 * 1024;

fn s3_error(e: object_store::Error) -> Error {
    match e {
        object_store::Error::NotFound { .. } => Error::NotFound("artifact"),
        other => Error::Artifact(other.to_string()),
    }
}

impl S3Store {
    /// `url` is `s3://bucket` or `s3://bucket/prefix`.
    pub fn from_env(url: &str) -> Result<Self> {
        let rest = url.trim_start_matches("s3://");
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::Config(
                "MCP_ARTIFACT_STORE: an s3:// URL needs a bucket (s3://bucket/prefix)".into(),
            ));
        }
        let s3 = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| Error::Config(format!("MCP_ARTIFACT_STORE: {e}")))?;
        let staging = std::env::temp_dir().join("mcp-artifact-staging");
        std::fs::create_dir_all(&staging)?;
        Ok(Self {
            store: object_store::prefix::PrefixStore::new(s3, prefix.trim_matches('/')),
            staging,
        })
    }

    fn path(key: &str) -> Result<object_store::path::Path> {
        check_key(key)?;
        object_store::path::Path::parse(key).map_err(|e| Error::Artifact(e.to_string()))
    }
}

#[async_trait::async_trait]
impl ArtifactStore for S3Store {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        use object_store::ObjectStore;
        self.store
            .put(&Self::path(key)?, bytes.into())
            .await
            .map_err(s3_error)?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>> {
        use object_store::ObjectStore;
        let got = self.store.get(&Self::path(key)?).await.map_err(s3_error)?;
        Ok(got.bytes().await.map_err(s3_error)?.to_vec())
    }

    async fn put_file(&self, key: &str, path: &Path) -> Result<()> {
        use object_store::ObjectStore;
        use tokio::io::AsyncReadExt;
        let upload = self
            .store
            .put_multipart(&Self::path(key)?)
            .await
            .map_err(s3_error)?;
        let mut writer = object_store::WriteMultipart::new_with_chunk_size(upload, S3_PART);
        let mut file = tokio::fs::File::open(path).await?;
        let mut buf = vec![0u8; 1024 * 1024];
        loop {
            let n = file.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            // Bounded memory: at most a few parts in flight.
            writer.wait_for_capacity(4).await.map_err(s3_error)?;
            writer.write(&buf[..n]);
        }
        writer.finish().await.map_err(s3_error)?;
        tokio::fs::remove_file(path).await.ok();
        Ok(())
    }

    async fn reader(&self, key: &str) -> Result<ArtifactReader> {
        use futures::TryStreamExt;
        use object_store::ObjectStore;
        let got = self.store.get(&Self::path(key)?).await.map_err(s3_error)?;
        let stream = got.into_stream().map_err(std::io::Error::other);
        Ok(Box::pin(tokio_util::io::StreamReader::new(stream)))
    }

    fn staging_dir(&self) -> PathBuf {
        self.staging.clone()
    }

    async fn ping(&self) -> Result<()> {
        use object_store::ObjectStore;
        self.store
            .list_with_delimiter(None)
            .await
            .map_err(s3_error)?;
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
