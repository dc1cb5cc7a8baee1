//! Request bodies that become artifacts (dataset uploads, shard outputs an agent sends): streamed
//! to a staging file, held to a size limit, shown chunk by chunk to the caller's check, then moved
//! into the store whole. The file is written — sealed when the store seals, so never on disk in
//! clear — by a task of its own, so checking and sealing run side by side.

use futures::StreamExt;
use mcp_shared::sealed_stream::Sealer;
use tokio::io::AsyncWriteExt;
use tokio_util::bytes::Bytes;
use uuid::Uuid;

use crate::{
    error::{ApiError, ErrorCode},
    state::AppState,
};

/// What a caller checks or works out from a body as it streams past.
pub trait Inspect {
    /// The next chunk; an error refuses the whole body, and nothing is stored.
    fn feed(&mut self, chunk: &[u8]) -> Result<(), ApiError>;
    /// After the last chunk: bytes to store after the body (say, a final newline).
    fn end(&mut self) -> Result<Option<&'static [u8]>, ApiError> {
        Ok(None)
    }
}

/// Streams `body` into the store under `key` (`what` names it in errors); returns the bytes
/// stored. Refused or failed, it leaves nothing behind.
pub async fn store(
    state: &AppState,
    key: &str,
    body: poem::Body,
    what: &str,
    inspect: &mut impl Inspect,
) -> Result<u64, ApiError> {
    let staging = state.artifacts.staging_dir();
    tokio::fs::create_dir_all(&staging)
        .await
        .map_err(ApiError::internal)?;
    let path = staging.join(format!("{}.staged", Uuid::now_v7()));
    let limit = state.settings.max_dataset_bytes;
    let stored = match receive(&path, body, limit, state.artifacts.sealer(), what, inspect).await {
        Ok(bytes) => state
            .artifacts
            .put_file(key, &path)
            .await
            .map(|()| bytes)
            .map_err(ApiError::from),
        Err(e) => Err(e),
    };
    if stored.is_err() {
        tokio::fs::remove_file(&path).await.ok();
    }
    stored
}

async fn receive(
    path: &std::path::Path,
    body: poem::Body,
    limit: u64,
    sealer: Option<Sealer>,
    what: &str,
    inspect: &mut impl Inspect,
) -> Result<u64, ApiError> {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let writer = tokio::spawn(write(path.to_owned(), rx, sealer));
    let mut total = 0u64;
    let read = async {
        let mut stream = std::pin::pin!(body.into_bytes_stream());
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::new(
                    ErrorCode::InvalidBody,
                    format!("reading the {what} failed: {e}"),
                )
            })?;
            total += chunk.len() as u64;
            if total > limit {
                return Err(ApiError::payload_too_large(limit as usize));
            }
            inspect.feed(&chunk)?;
            if tx.send(chunk).await.is_err() {
                // The writer stopped: its error says why.
                return Ok(());
            }
        }
        if let Some(tail) = inspect.end()? {
            total += tail.len() as u64;
            let _ = tx.send(Bytes::from_static(tail)).await;
        }
        Ok(())
    }
    .await;
    drop(tx);
    let written = writer.await.map_err(ApiError::internal)?;
    read?;
    written?;
    Ok(total)
}

/// Writes what arrives on `chunks` to `path`, sealed as it is written when there is a sealer.
async fn write(
    path: std::path::PathBuf,
    mut chunks: tokio::sync::mpsc::Receiver<Bytes>,
    mut sealer: Option<Sealer>,
) -> Result<(), ApiError> {
    let mut file = tokio::io::BufWriter::new(
        tokio::fs::File::create(&path)
            .await
            .map_err(ApiError::internal)?,
    );
    let mut sealed = Vec::new();
    while let Some(chunk) = chunks.recv().await {
        match &mut sealer {
            Some(s) => {
                sealed.clear();
                s.push(&chunk, &mut sealed).map_err(ApiError::internal)?;
                file.write_all(&sealed).await.map_err(ApiError::internal)?;
            }
            None => file.write_all(&chunk).await.map_err(ApiError::internal)?,
        }
    }
    if let Some(s) = sealer {
        sealed.clear();
        s.finish(&mut sealed).map_err(ApiError::internal)?;
        file.write_all(&sealed).await.map_err(ApiError::internal)?;
    }
    file.flush().await.map_err(ApiError::internal)
}
