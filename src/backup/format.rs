//! The bytes of a backup file (`schema/backup.md`): a magic line, a line saying how the rest is
//! sealed, then the payload (a JSON header line listing the files, then their bytes in order),
//! either plain or encrypted with a key derived from a passphrase.
//!
//! Encryption is ChaCha20-Poly1305 (ring) over chunks of [`CHUNK`] bytes, each with its own
//! nonce (a counter, and a flag on the last one), so a backup of any size streams through a
//! fixed buffer, a chunk cut off, reordered or altered fails its tag, and a file truncated at a
//! chunk boundary fails because its last chunk is missing. The key is Argon2id of the
//! passphrase with a random salt.

use ring::aead::{CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};

pub const MAGIC: &[u8] = b"PICKET-BACKUP 1\n";
/// Plaintext bytes per sealed chunk.
pub const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;
/// Argon2id's cost: 64 MiB and 3 passes, a second or so, once per backup or restore.
const KDF_MEMORY_KIB: u32 = 64 * 1024;
const KDF_PASSES: u32 = 3;

/// How the payload is sealed: `None` for plain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealing {
    pub encryption: Option<Encryption>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encryption {
    /// `argon2id`
    pub kdf: String,
    pub memory_kib: u32,
    pub passes: u32,
    /// Hex.
    pub salt: String,
    /// `chacha20-poly1305`
    pub cipher: String,
    pub chunk: usize,
}

/// The payload's first line: what the backup holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub created_ms: u64,
    /// The store's schema (`schema/store.md`).
    pub schema: u32,
    /// The Picket that wrote it.
    pub picket: String,
    pub files: Vec<FileEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the data dir, `/`-separated: `picket.redb`, `pki/ca.key`.
    pub path: String,
    pub size: u64,
    /// Hex.
    pub sha256: String,
}

#[derive(Debug)]
pub enum FormatError {
    NotABackup,
    /// The sealing line or the header is not what this binary reads.
    BadHeader(String),
    /// Encrypted, and no passphrase was given.
    NeedsPassphrase,
    /// A chunk failed its tag: a wrong passphrase, or the file was altered or cut short.
    WrongPassphraseOrDamaged,
    Kdf(String),
    Io(io::Error),
}

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FormatError::NotABackup => f.write_str("not a Picket backup file"),
            FormatError::BadHeader(why) => write!(f, "the backup's header cannot be read: {why}"),
            FormatError::NeedsPassphrase => {
                f.write_str("the backup is encrypted: give its passphrase (--passphrase-file)")
            }
            FormatError::WrongPassphraseOrDamaged => f.write_str(
                "the backup cannot be decrypted: the passphrase is wrong, or the file was \
                 altered or cut short",
            ),
            FormatError::Kdf(why) => write!(f, "cannot derive the key: {why}"),
            FormatError::Io(_) => f.write_str("cannot read or write the backup"),
        }
    }
}

impl std::error::Error for FormatError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FormatError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for FormatError {
    fn from(e: io::Error) -> Self {
        // The decrypting reader reports a failed tag as InvalidData with this error inside.
        if e.kind() == io::ErrorKind::InvalidData
            && e.get_ref()
                .is_some_and(|inner| inner.to_string() == TAG_FAILED)
        {
            return FormatError::WrongPassphraseOrDamaged;
        }
        FormatError::Io(e)
    }
}

const TAG_FAILED: &str = "a chunk failed its tag";

fn derive(passphrase: &[u8], e: &Encryption) -> Result<LessSafeKey, FormatError> {
    let salt = crate::secret::from_hex(&e.salt)
        .ok_or_else(|| FormatError::BadHeader("the salt is not hex".into()))?;
    if e.kdf != "argon2id" || e.cipher != "chacha20-poly1305" || e.chunk != CHUNK {
        return Err(FormatError::BadHeader(format!(
            "{} / {} / chunks of {} bytes are not what this Picket reads",
            e.kdf, e.cipher, e.chunk
        )));
    }
    let params = argon2::Params::new(e.memory_kib, e.passes, 1, Some(32))
        .map_err(|err| FormatError::Kdf(err.to_string()))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = [0u8; 32];
    argon
        .hash_password_into(passphrase, &salt, &mut key)
        .map_err(|err| FormatError::Kdf(err.to_string()))?;
    let key = UnboundKey::new(&CHACHA20_POLY1305, &key)
        .map_err(|_| FormatError::Kdf("the key was refused".into()))?;
    Ok(LessSafeKey::new(key))
}

fn nonce(counter: u64, last: bool) -> Nonce {
    let mut bytes = [0u8; NONCE_LEN];
    bytes[3] = u8::from(last);
    bytes[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::assume_unique_for_key(bytes)
}

/// Writes the magic and sealing lines to `out` and returns the writer of the payload.
pub fn writer<W: Write>(mut out: W, passphrase: Option<&[u8]>) -> Result<Sealed<W>, FormatError> {
    let (sealing, key) = match passphrase {
        None => (Sealing { encryption: None }, None),
        Some(passphrase) => {
            let mut salt = [0u8; 16];
            SystemRandom::new()
                .fill(&mut salt)
                .map_err(|_| FormatError::Kdf("no randomness for the salt".into()))?;
            let e = Encryption {
                kdf: "argon2id".into(),
                memory_kib: KDF_MEMORY_KIB,
                passes: KDF_PASSES,
                salt: crate::secret::hex(&salt),
                cipher: "chacha20-poly1305".into(),
                chunk: CHUNK,
            };
            let key = derive(passphrase, &e)?;
            (
                Sealing {
                    encryption: Some(e),
                },
                Some(key),
            )
        }
    };
    out.write_all(MAGIC)?;
    let line =
        serde_json::to_string(&sealing).map_err(|e| FormatError::BadHeader(e.to_string()))?;
    out.write_all(line.as_bytes())?;
    out.write_all(b"\n")?;
    Ok(Sealed {
        out,
        key,
        buf: Vec::with_capacity(CHUNK + TAG),
        counter: 0,
    })
}

/// The payload's writer: plain, or sealing chunk by chunk. [`Sealed::finish`] must be called:
/// it seals the last chunk, without which a reader refuses the file.
pub struct Sealed<W: Write> {
    out: W,
    key: Option<LessSafeKey>,
    buf: Vec<u8>,
    counter: u64,
}

impl<W: Write> Sealed<W> {
    fn seal(&mut self, last: bool) -> io::Result<()> {
        let Some(key) = &self.key else {
            return Ok(());
        };
        key.seal_in_place_append_tag(
            nonce(self.counter, last),
            ring::aead::Aad::empty(),
            &mut self.buf,
        )
        .map_err(|_| io::Error::other("sealing failed"))?;
        self.counter += 1;
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }

    /// Seals what is left as the last chunk and returns the underlying writer, flushed.
    pub fn finish(mut self) -> io::Result<W> {
        if self.key.is_some() {
            self.seal(true)?;
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for Sealed<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.key.is_none() {
            return self.out.write(data);
        }
        // A full chunk is sealed only once more data follows: until then it may be the last.
        if self.buf.len() == CHUNK {
            self.seal(false)?;
        }
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Reads the magic and sealing lines from `input` and returns the reader of the payload.
pub fn reader<R: Read>(mut input: R, passphrase: Option<&[u8]>) -> Result<Opened<R>, FormatError> {
    let mut magic = vec![0u8; MAGIC.len()];
    input
        .read_exact(&mut magic)
        .map_err(|_| FormatError::NotABackup)?;
    if magic != MAGIC {
        return Err(FormatError::NotABackup);
    }
    let line = read_line(&mut input, 4096)?;
    let sealing: Sealing =
        serde_json::from_slice(&line).map_err(|e| FormatError::BadHeader(e.to_string()))?;
    let key = match (&sealing.encryption, passphrase) {
        (None, _) => None,
        (Some(_), None) => return Err(FormatError::NeedsPassphrase),
        (Some(e), Some(p)) => Some(derive(p, e)?),
    };
    Ok(Opened {
        input,
        key,
        plain: Vec::new(),
        at: 0,
        counter: 0,
        done: false,
        peeked: None,
    })
}

/// A line of at most `limit` bytes, without its `\n`, read a byte at a time (the reader is not
/// buffered: what follows the line belongs to the caller).
pub fn read_line(input: &mut impl Read, limit: usize) -> Result<Vec<u8>, FormatError> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        input.read_exact(&mut byte)?;
        if byte[0] == b'\n' {
            return Ok(line);
        }
        if line.len() == limit {
            return Err(FormatError::BadHeader(format!(
                "a header line is longer than {limit} bytes"
            )));
        }
        line.push(byte[0]);
    }
}

/// The payload's reader: plain, or opening chunk by chunk.
pub struct Opened<R: Read> {
    input: R,
    key: Option<LessSafeKey>,
    plain: Vec<u8>,
    at: usize,
    counter: u64,
    done: bool,
    /// A byte read to learn whether the chunk before it was the last.
    peeked: Option<u8>,
}

impl<R: Read> Opened<R> {
    fn next_chunk(&mut self) -> io::Result<()> {
        let mut sealed = Vec::with_capacity(CHUNK + TAG);
        if let Some(byte) = self.peeked.take() {
            sealed.push(byte);
        }
        let mut part = [0u8; 8192];
        while sealed.len() < CHUNK + TAG {
            let want = (CHUNK + TAG - sealed.len()).min(part.len());
            let n = self.input.read(&mut part[..want])?;
            if n == 0 {
                break;
            }
            sealed.extend_from_slice(&part[..n]);
        }
        let last = if sealed.len() < CHUNK + TAG {
            true
        } else {
            let mut one = [0u8; 1];
            match self.input.read(&mut one)? {
                0 => true,
                _ => {
                    self.peeked = Some(one[0]);
                    false
                }
            }
        };
        let Some(key) = &self.key else {
            return Ok(());
        };
        let failed = || io::Error::new(io::ErrorKind::InvalidData, TAG_FAILED);
        let plain = key
            .open_in_place(
                nonce(self.counter, last),
                ring::aead::Aad::empty(),
                &mut sealed,
            )
            .map_err(|_| failed())?
            .len();
        sealed.truncate(plain);
        self.counter += 1;
        self.plain = sealed;
        self.at = 0;
        self.done = last;
        Ok(())
    }
}

impl<R: Read> Read for Opened<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.key.is_none() {
            return self.input.read(out);
        }
        while self.at == self.plain.len() {
            if self.done {
                return Ok(0);
            }
            self.next_chunk()?;
        }
        let n = out.len().min(self.plain.len() - self.at);
        out[..n].copy_from_slice(&self.plain[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
