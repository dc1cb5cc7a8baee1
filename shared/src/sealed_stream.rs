//! The encrypted artifact format: AES-256-GCM over fixed-size chunks, so a file of any size is
//! sealed and opened as a stream, with every chunk authenticated on its own.
//!
//! ```text
//! header  "MCPSEAL1" | key id length (1 byte) | key id | salt (16 bytes) | chunk size (u32 BE)
//! chunk*  ciphertext of `chunk size` bytes | tag (16 bytes)
//! last    ciphertext of fewer than `chunk size` bytes (maybe none) | tag (16 bytes)
//! ```
//!
//! The file key is derived from the ring's artifact key named in the header and the file's
//! random salt, so no two files share a key and nonces never repeat. A chunk's nonce is its
//! index and a flag marking the last chunk, and the header is every chunk's associated data:
//! reordering, dropping or appending chunks, truncating the file after a chunk, or editing the
//! header (say, naming another key) fails to open. Data that does not start with the magic is
//! taken as written before artifacts were encrypted, and passes through as it is.

use std::{io::Write, sync::Arc};

use aes_gcm::{
    Aes256Gcm, Nonce,
    aead::{Aead, AeadInOut, KeyInit, Payload},
};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::bytes::Bytes;

use crate::{
    Error, Result,
    crypto::{KeyRing, Purpose, keyed_hash},
};

/// A byte stream being read (an artifact, opened or not).
pub type Reader = std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>;

pub const MAGIC: &[u8; 8] = b"MCPSEAL1";
/// Plaintext bytes per chunk.
pub const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;
const SALT: usize = 16;

fn file_cipher(key: &[u8; 32], salt: &[u8]) -> Aes256Gcm {
    let mut data = b"artifact-file\n".to_vec();
    data.extend_from_slice(salt);
    let file_key = hex::decode(keyed_hash(key, &data)).expect("hex of a MAC");
    <Aes256Gcm as KeyInit>::new_from_slice(&file_key).expect("32-byte key")
}

fn nonce(counter: u64, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&counter.to_be_bytes());
    n[11] = u8::from(last);
    n
}

fn corrupt(what: &str) -> Error {
    Error::Crypto(format!("encrypted artifact {what}"))
}

/// Seals a stream: feed it plaintext, write out what it returns.
pub struct Sealer {
    cipher: Aes256Gcm,
    header: Vec<u8>,
    header_written: bool,
    counter: u64,
    pending: Vec<u8>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").finish_non_exhaustive()
    }
}

impl Sealer {
    /// A sealer under the ring's active key.
    pub fn new(ring: &KeyRing) -> Self {
        let (key_id, key) = ring.active_subkey(Purpose::Artifacts);
        let salt: [u8; SALT] = rand::random();
        let mut header = MAGIC.to_vec();
        header.push(key_id.len() as u8);
        header.extend_from_slice(key_id.as_bytes());
        header.extend_from_slice(&salt);
        header.extend_from_slice(&(CHUNK as u32).to_be_bytes());
        Self {
            cipher: file_cipher(&key, &salt),
            header,
            header_written: false,
            counter: 0,
            pending: Vec::with_capacity(CHUNK),
        }
    }

    fn seal_chunk(&mut self, plain: &[u8], last: bool, out: &mut Vec<u8>) -> Result<()> {
        let n = nonce(self.counter, last);
        let nonce = Nonce::try_from(&n[..]).map_err(|_| Error::Crypto("bad nonce".into()))?;
        // Encrypted where it lands in `out`: no buffer per chunk, no second copy.
        let start = out.len();
        out.extend_from_slice(plain);
        let tag = self
            .cipher
            .encrypt_inout_detached(&nonce, &self.header, (&mut out[start..]).into())
            .map_err(|_| Error::Crypto("encryption failed".into()))?;
        out.extend_from_slice(&tag);
        self.counter += 1;
        Ok(())
    }

    fn header_once(&mut self, out: &mut Vec<u8>) {
        if !self.header_written {
            out.extend_from_slice(&self.header);
            self.header_written = true;
        }
    }

    /// Seals `data`, appending to `out` the header (the first time) and every chunk completed.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<()> {
        self.header_once(out);
        while !data.is_empty() {
            if self.pending.is_empty() && data.len() > CHUNK {
                // Whole chunks straight from the input (a full chunk is never the last: the
                // last one is always shorter, empty if need be).
                let (chunk, rest) = data.split_at(CHUNK);
                self.seal_chunk(chunk, false, out)?;
                data = rest;
                continue;
            }
            let take = (CHUNK - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() == CHUNK && !data.is_empty() {
                let chunk = std::mem::take(&mut self.pending);
                self.seal_chunk(&chunk, false, out)?;
                self.pending = chunk;
                self.pending.clear();
            }
        }
        Ok(())
    }

    /// Seals what is left as the last chunk.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<()> {
        self.header_once(out);
        let pending = std::mem::take(&mut self.pending);
        if pending.len() == CHUNK {
            self.seal_chunk(&pending, false, out)?;
            self.seal_chunk(&[], true, out)
        } else {
            self.seal_chunk(&pending, true, out)
        }
    }
}

/// Seals a whole buffer.
pub fn seal_all(ring: &KeyRing, data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() + data.len() / CHUNK * TAG + 64);
    let mut sealer = Sealer::new(ring);
    sealer.push(data, &mut out)?;
    sealer.finish(&mut out)?;
    Ok(out)
}

/// Opens chunks after the header.
struct Opener {
    cipher: Aes256Gcm,
    header: Vec<u8>,
    counter: u64,
    chunk: usize,
}

impl Opener {
    fn open(&mut self, frame: &[u8], last: bool) -> Result<Vec<u8>> {
        let n = nonce(self.counter, last);
        let nonce = Nonce::try_from(&n[..]).map_err(|_| Error::Crypto("bad nonce".into()))?;
        let plain = self
            .cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: frame,
                    aad: &self.header,
                },
            )
            .map_err(|_| corrupt("does not open (wrong key, or tampered with)"))?;
        self.counter += 1;
        Ok(plain)
    }
}

/// The length of the header `prefix` starts (it holds at least [`MAGIC`] and one byte).
fn header_len(prefix: &[u8]) -> usize {
    MAGIC.len() + 1 + prefix[MAGIC.len()] as usize + SALT + 4
}

/// The key id in a sealed artifact's header; `None` for data written in clear.
pub fn key_id_of(prefix: &[u8]) -> Option<String> {
    if prefix.len() <= MAGIC.len() || !prefix.starts_with(MAGIC) {
        return None;
    }
    let id_len = prefix[MAGIC.len()] as usize;
    let id = prefix.get(MAGIC.len() + 1..MAGIC.len() + 1 + id_len)?;
    Some(String::from_utf8_lossy(id).into_owned())
}

fn opener(ring: &KeyRing, header: &[u8]) -> Result<Opener> {
    let key_id = key_id_of(header).ok_or_else(|| corrupt("has a malformed header"))?;
    let rest = &header[MAGIC.len() + 1 + key_id.len()..];
    let (salt, chunk) = rest.split_at(SALT);
    let chunk = u32::from_be_bytes(chunk.try_into().map_err(|_| corrupt("is malformed"))?);
    if chunk == 0 || chunk as usize > 16 * CHUNK {
        return Err(corrupt("has a malformed header"));
    }
    let key = ring.subkey(&key_id, Purpose::Artifacts).ok_or_else(|| {
        Error::Crypto(format!(
            "artifact sealed with key {key_id}, which is not configured"
        ))
    })?;
    Ok(Opener {
        cipher: file_cipher(&key, salt),
        header: header.to_vec(),
        counter: 0,
        chunk: chunk as usize,
    })
}

/// Opens a whole buffer; data written in clear (before encryption) is returned as it is.
pub fn open_all(ring: &KeyRing, data: &[u8]) -> Result<Vec<u8>> {
    if data.len() <= MAGIC.len() || !data.starts_with(MAGIC) {
        return Ok(data.to_vec());
    }
    let len = header_len(data);
    if data.len() < len {
        return Err(corrupt("is truncated"));
    }
    let mut o = opener(ring, &data[..len])?;
    let mut out = Vec::with_capacity(data.len());
    let mut rest = &data[len..];
    loop {
        let frame = o.chunk + TAG;
        if rest.len() > frame {
            out.extend(o.open(&rest[..frame], false)?);
            rest = &rest[frame..];
        } else if rest.len() == frame {
            // A full chunk is never the last: the last one is missing.
            return Err(corrupt("is truncated"));
        } else if rest.len() < TAG {
            return Err(corrupt("is truncated"));
        } else {
            out.extend(o.open(rest, true)?);
            return Ok(out);
        }
    }
}

/// Reads until `buf` is full or the input ends; how many bytes were read.
async fn read_full(r: &mut (impl AsyncRead + Unpin), buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let got = r.read(&mut buf[n..]).await?;
        if got == 0 {
            break;
        }
        n += got;
    }
    Ok(n)
}

/// A reader that opens `inner` as it is read; data written in clear passes through.
pub async fn open_reader(ring: Arc<KeyRing>, mut inner: Reader) -> Result<Reader> {
    let mut prefix = vec![0u8; MAGIC.len() + 1];
    let n = read_full(&mut inner, &mut prefix).await?;
    prefix.truncate(n);
    if n < MAGIC.len() + 1 || !prefix.starts_with(MAGIC) {
        let clear = std::io::Cursor::new(prefix).chain(inner);
        return Ok(Box::pin(clear));
    }
    let len = header_len(&prefix);
    prefix.resize(len, 0);
    if read_full(&mut inner, &mut prefix[MAGIC.len() + 1..]).await? < len - MAGIC.len() - 1 {
        return Err(corrupt("is truncated"));
    }
    let opener = opener(&ring, &prefix)?;
    let frame = opener.chunk + TAG;
    let io = |e: Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string());
    let stream = futures::stream::try_unfold(
        (inner, opener, vec![0u8; frame + 1], 0usize, false),
        move |(mut inner, mut opener, mut buf, mut held, done)| async move {
            if done {
                return Ok(None);
            }
            // `buf[..held]` is read ahead; fill up to one frame and one byte, which tells a
            // full chunk followed by more from the last chunk.
            held += read_full(&mut inner, &mut buf[held..]).await?;
            if held > frame {
                let plain = opener.open(&buf[..frame], false).map_err(io)?;
                buf.copy_within(frame..held, 0);
                held -= frame;
                Ok(Some((
                    Bytes::from(plain),
                    (inner, opener, buf, held, false),
                )))
            } else if held < TAG || held == frame {
                Err(io(corrupt("is truncated")))
            } else {
                let plain = opener.open(&buf[..held], true).map_err(io)?;
                Ok(Some((Bytes::from(plain), (inner, opener, buf, 0, true))))
            }
        },
    );
    Ok(Box::pin(tokio_util::io::StreamReader::new(stream)))
}

/// Seals what is written through it (or passes it through, without a sealer); call
/// [`SealWriter::finish`] to write the last chunk.
pub struct SealWriter<W: Write> {
    inner: W,
    sealer: Option<Sealer>,
    out: Vec<u8>,
}

impl<W: Write> SealWriter<W> {
    pub fn new(inner: W, sealer: Option<Sealer>) -> Self {
        Self {
            inner,
            sealer,
            out: Vec::new(),
        }
    }

    pub fn finish(mut self) -> std::io::Result<W> {
        if let Some(sealer) = self.sealer.take() {
            // `out` still holds what the last write wrote.
            self.out.clear();
            sealer
                .finish(&mut self.out)
                .map_err(std::io::Error::other)?;
            self.inner.write_all(&self.out)?;
        }
        Ok(self.inner)
    }
}

impl<W: Write> Write for SealWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &mut self.sealer {
            None => self.inner.write(buf),
            Some(sealer) => {
                self.out.clear();
                sealer
                    .push(buf, &mut self.out)
                    .map_err(std::io::Error::other)?;
                self.inner.write_all(&self.out)?;
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Whether the file at `path` is sealed already (starts with the magic).
pub async fn file_is_sealed(path: &std::path::Path) -> Result<bool> {
    let mut f = tokio::fs::File::open(path).await?;
    let mut prefix = [0u8; MAGIC.len()];
    Ok(read_full(&mut f, &mut prefix).await? == MAGIC.len() && &prefix == MAGIC)
}

/// Seals the file at `src` into `dst`, streaming.
pub async fn seal_file(ring: &KeyRing, src: &std::path::Path, dst: &std::path::Path) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut input = tokio::fs::File::open(src).await?;
    let mut output = tokio::io::BufWriter::new(tokio::fs::File::create(dst).await?);
    let mut sealer = Sealer::new(ring);
    let mut buf = vec![0u8; 4 * CHUNK];
    let mut out = Vec::with_capacity(buf.len() + 4 * TAG + 64);
    loop {
        let n = input.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        out.clear();
        sealer.push(&buf[..n], &mut out)?;
        output.write_all(&out).await?;
    }
    out.clear();
    sealer.finish(&mut out)?;
    output.write_all(&out).await?;
    output.flush().await?;
    output.get_ref().sync_all().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> KeyRing {
        KeyRing::new("root", Some(&KeyRing::generate_entry("k1"))).unwrap()
    }

    #[test]
    fn round_trips_at_every_size_around_chunk_boundaries() {
        let ring = ring();
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 7] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let sealed = seal_all(&ring, &data).unwrap();
            assert!(sealed.starts_with(MAGIC));
            assert_eq!(key_id_of(&sealed).as_deref(), Some("k1"));
            assert_eq!(open_all(&ring, &sealed).unwrap(), data, "len {len}");
            // Fed in odd pieces, the stream is the same length and opens the same.
            let mut s = Sealer::new(&ring);
            let mut out = Vec::new();
            for piece in data.chunks(7919) {
                s.push(piece, &mut out).unwrap();
            }
            s.finish(&mut out).unwrap();
            assert_eq!(out.len(), sealed.len());
            assert_eq!(open_all(&ring, &out).unwrap(), data);
        }
    }

    #[test]
    fn truncation_tampering_and_unknown_keys_fail() {
        let ring = ring();
        let data = vec![7u8; 2 * CHUNK + 10];
        let sealed = seal_all(&ring, &data).unwrap();
        let header = header_len(&sealed);
        let frame = CHUNK + TAG;
        // Cut after a whole chunk: the last chunk is missing.
        assert!(open_all(&ring, &sealed[..header + frame]).is_err());
        assert!(open_all(&ring, &sealed[..sealed.len() - 1]).is_err());
        let mut flipped = sealed.clone();
        flipped[header + 5] ^= 1;
        assert!(open_all(&ring, &flipped).is_err());
        // Two chunks swapped.
        let mut swapped = sealed[..header].to_vec();
        swapped.extend_from_slice(&sealed[header + frame..header + 2 * frame]);
        swapped.extend_from_slice(&sealed[header..header + frame]);
        swapped.extend_from_slice(&sealed[header + 2 * frame..]);
        assert!(open_all(&ring, &swapped).is_err());
        let other = KeyRing::new("root", Some(&KeyRing::generate_entry("k2"))).unwrap();
        assert!(open_all(&other, &sealed).is_err());
        // Data written in clear passes through.
        assert_eq!(open_all(&ring, b"{\"a\":1}\n").unwrap(), b"{\"a\":1}\n");
    }

    #[test]
    fn the_writer_seals_one_write_or_many_alike() {
        let ring = ring();
        for pieces in [1, 3, 1000] {
            let data: Vec<u8> = (0..CHUNK + 100).map(|i| (i % 7) as u8).collect();
            let mut w = SealWriter::new(Vec::new(), Some(Sealer::new(&ring)));
            for piece in data.chunks(data.len().div_ceil(pieces)) {
                w.write_all(piece).unwrap();
            }
            let sealed = w.finish().unwrap();
            assert_eq!(open_all(&ring, &sealed).unwrap(), data, "{pieces} writes");
        }
        let mut w = SealWriter::new(Vec::new(), Some(Sealer::new(&ring)));
        w.write_all(b"id,source\n").unwrap();
        let sealed = w.finish().unwrap();
        assert_eq!(open_all(&ring, &sealed).unwrap(), b"id,source\n");
    }

    #[tokio::test]
    async fn the_reader_opens_what_was_sealed_and_refuses_a_truncated_stream() {
        let ring = Arc::new(ring());
        for len in [0, 5, CHUNK, CHUNK + 1, 3 * CHUNK] {
            let data: Vec<u8> = (0..len).map(|i| (i % 13) as u8).collect();
            let sealed = seal_all(&ring, &data).unwrap();
            let mut r = open_reader(ring.clone(), Box::pin(std::io::Cursor::new(sealed.clone())))
                .await
                .unwrap();
            let mut got = Vec::new();
            r.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, data, "len {len}");
            if len >= CHUNK {
                let cut = sealed[..header_len(&sealed) + CHUNK + TAG].to_vec();
                let mut r = open_reader(ring.clone(), Box::pin(std::io::Cursor::new(cut)))
                    .await
                    .unwrap();
                assert!(r.read_to_end(&mut Vec::new()).await.is_err());
            }
        }
        let mut r = open_reader(ring, Box::pin(std::io::Cursor::new(b"id,text\n".to_vec())))
            .await
            .unwrap();
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"id,text\n");
    }
}
