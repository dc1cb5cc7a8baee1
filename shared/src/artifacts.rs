//! The artifact store seam: where datasets, stage outputs and exports live. Jobs carry artifact
//! keys, never the data. The local-directory store is the default; a distributed deployment
//! points every process at the same shared volume, or at an S3-compatible store.
//!
//! Every store [`open`] returns encrypts at rest: a [`SealedStore`] seals what is put in it
//! (AES-256-GCM in authenticated chunks, [`crate::sealed_stream`]) under the key ring's
//! artifact key, and opens what is read from it, so every reader goes through the store.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use crate::{
    Error, Result,
    crypto::KeyRing,
    sealed_stream::{self, Sealer},
};

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
pub type ArtifactReader = sealed_stream::Reader;

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
    /// A sealer for a file staged for [`ArtifactStore::put_file`], so that the staged file is
    /// never in clear on disk either; `None` when the store keeps data as it is given.
    fn sealer(&self) -> Option<Sealer> {
        None
    }
    /// Every artifact key under `prefix` (`""` for all), staging excluded.
    async fn list(&self, prefix: &str) -> Result<Vec<String>>;
    /// Removes an artifact; a missing one is not an error.
    async fn delete(&self, key: &str) -> Result<()>;
    /// The key that sealed the artifact `key`; `None` when it is stored in clear.
    async fn sealed_by(&self, _key: &str) -> Result<Option<String>> {
        Ok(None)
    }
    /// Seals `key` anew under the active key (key rotation, or data stored before encryption);
    /// false when it already was, or when the store does not seal.
    async fn reseal(&self, _key: &str) -> Result<bool> {
        Ok(false)
    }
    async fn ping(&self) -> Result<()>;
}

/// The store `MCP_ARTIFACT_STORE` names: `s3://bucket/prefix` for an S3-compatible store
/// (credentials, region and endpoint from the standard `AWS_*` variables), otherwise a directory
/// path (the default, `./data/artifacts`).
/// What is stored is sealed under `ring`'s artifact key.
pub fn open(location: &str, ring: Arc<KeyRing>) -> Result<Arc<dyn ArtifactStore>> {
    let inner: Arc<dyn ArtifactStore> = if location.starts_with("s3://") {
        Arc::new(S3Store::from_env(location)?)
    } else {
        Arc::new(LocalDirStore::new(location)?)
    };
    Ok(Arc::new(SealedStore { inner, ring }))
}

/// Encryption at rest over another store: seals on the way in, opens on the way out. Data the
/// store holds from before encryption (no header) is read as it is, until `mcp-api keys rotate`
/// seals it.
#[derive(Debug)]
pub struct SealedStore {
    inner: Arc<dyn ArtifactStore>,
    ring: Arc<KeyRing>,
}

impl SealedStore {
    pub fn new(inner: Arc<dyn ArtifactStore>, ring: Arc<KeyRing>) -> Self {
        Self { inner, ring }
    }
}

#[async_trait::async_trait]
impl ArtifactStore for SealedStore {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        let sealed = sealed_stream::seal_all(&self.ring, &bytes)?;
        drop(bytes);
        self.inner.put(key, sealed).await
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>> {
        let bytes = self.inner.get(key).await?;
        sealed_stream::open_all(&self.ring, &bytes)
    }

    async fn put_file(&self, key: &str, path: &Path) -> Result<()> {
        if sealed_stream::file_is_sealed(path).await? {
            return self.inner.put_file(key, path).await;
        }
        // Staged in clear by a caller that did not seal as it wrote: seal it first.
        let sealed = partial_path(path);
        let result = async {
            sealed_stream::seal_file(&self.ring, path, &sealed).await?;
            tokio::fs::remove_file(path).await?;
            self.inner.put_file(key, &sealed).await
        }
        .await;
        tokio::fs::remove_file(&sealed).await.ok();
        result
    }

    async fn reader(&self, key: &str) -> Result<ArtifactReader> {
        let inner = self.inner.reader(key).await?;
        sealed_stream::open_reader(self.ring.clone(), inner).await
    }

    fn staging_dir(&self) -> PathBuf {
        self.inner.staging_dir()
    }

    fn sealer(&self) -> Option<Sealer> {
        Some(Sealer::new(&self.ring))
    }

    /// The key that sealed the artifact `key`, `None` when it is in clear.
    async fn sealed_by(&self, key: &str) -> Result<Option<String>> {
        use tokio::io::AsyncReadExt;
        let mut r = self.inner.reader(key).await?;
        let mut prefix = vec![0u8; sealed_stream::MAGIC.len() + 1 + 255];
        let mut n = 0;
        while n < prefix.len() {
            let got = r.read(&mut prefix[n..]).await?;
            if got == 0 {
                break;
            }
            n += got;
        }
        Ok(sealed_stream::key_id_of(&prefix[..n]))
    }

    /// Seals `key` anew under the active key (rotation, or data stored before encryption),
    /// streaming through a staged file. Returns false when it already was.
    async fn reseal(&self, key: &str) -> Result<bool> {
        if self.sealed_by(key).await?.as_deref() == Some(self.ring.active_key_id()) {
            return Ok(false);
        }
        let mut reader = self.reader(key).await?;
        let staging = self.inner.staging_dir();
        tokio::fs::create_dir_all(&staging).await?;
        let path = staging.join(format!("{}.reseal", uuid::Uuid::now_v7()));
        let written = async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut out = tokio::io::BufWriter::new(tokio::fs::File::create(&path).await?);
            let mut sealer = Sealer::new(&self.ring);
            let mut buf = vec![0u8; 4 * sealed_stream::CHUNK];
            let mut sealed = Vec::new();
            loop {
                let n = reader.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                sealed.clear();
                sealer.push(&buf[..n], &mut sealed)?;
                out.write_all(&sealed).await?;
            }
            sealed.clear();
            sealer.finish(&mut sealed)?;
            out.write_all(&sealed).await?;
            out.flush().await?;
            self.inner.put_file(key, &path).await
        }
        .await;
        tokio::fs::remove_file(&path).await.ok();
        written.map(|()| true)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.inner.list(prefix).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.inner.delete(key).await
    }

    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
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

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || {
            let mut keys = Vec::new();
            let mut dirs = vec![root.clone()];
            while let Some(dir) = dirs.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e.into()),
                };
                for entry in entries {
                    let entry = entry?;
                    let name = entry.file_name();
                    let name = name.to_string_lossy();
                    if name.starts_with('.') || name.ends_with(".partial") {
                        continue;
                    }
                    if entry.file_type()?.is_dir() {
                        dirs.push(entry.path());
                    } else if let Ok(rel) = entry.path().strip_prefix(&root) {
                        let key = rel.to_string_lossy().replace('\\', "/");
                        if key.starts_with(&prefix) && check_key(&key).is_ok() {
                            keys.push(key);
                        }
                    }
                }
            }
            keys.sort();
            Ok(keys)
        })
        .await
        .map_err(|e| Error::Artifact(e.to_string()))?
    }

    async fn delete(&self, key: &str) -> Result<()> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
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

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        use futures::TryStreamExt;
        use object_store::ObjectStore;
        let prefix = prefix.trim_end_matches('/');
        let at = (!prefix.is_empty()).then(|| object_store::path::Path::from(prefix));
        let mut keys: Vec<String> = self
            .store
            .list(at.as_ref())
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .map_err(s3_error)?;
        keys.sort();
        Ok(keys)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        use object_store::ObjectStore;
        match self.store.delete(&Self::path(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(s3_error(e)),
        }
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
