use super::*;

fn sealed(payload: &[u8], passphrase: Option<&[u8]>) -> Vec<u8> {
    let mut w = writer(Vec::new(), passphrase).unwrap();
    // In odd pieces, as a copy loop would write them.
    for piece in payload.chunks(7_777) {
        w.write_all(piece).unwrap();
    }
    w.finish().unwrap()
}

fn opened(file: &[u8], passphrase: Option<&[u8]>) -> Result<Vec<u8>, FormatError> {
    let mut r = reader(file, passphrase)?;
    let mut out = Vec::new();
    r.read_to_end(&mut out)?;
    Ok(out)
}

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn a_plain_payload_reads_back_as_written() {
    let data = payload(100_000);
    let file = sealed(&data, None);
    assert!(file.starts_with(MAGIC));
    assert_eq!(opened(&file, None).unwrap(), data);
    // A passphrase given for a plain backup is not needed.
    assert_eq!(opened(&file, Some(b"x")).unwrap(), data);
}

#[test]
fn an_encrypted_payload_of_any_length_reads_back_only_with_its_passphrase() {
    for n in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 5] {
        let data = payload(n);
        let file = sealed(&data, Some(b"correct horse"));
        assert_eq!(opened(&file, Some(b"correct horse")).unwrap(), data, "{n}");
        assert!(
            matches!(
                opened(&file, Some(b"wrong horse")),
                Err(FormatError::WrongPassphraseOrDamaged)
            ),
            "{n}"
        );
        assert!(matches!(
            opened(&file, None),
            Err(FormatError::NeedsPassphrase)
        ));
        // The plaintext is nowhere in the file.
        if n >= 64 {
            assert!(!file.windows(64).any(|w| w == &data[..64]), "{n}");
        }
    }
}

#[test]
fn a_cut_or_altered_encrypted_backup_is_refused() {
    let data = payload(3 * CHUNK + 100);
    let file = sealed(&data, Some(b"pw"));
    let head = file.len() - (3 * (CHUNK + TAG) + 100 + TAG);
    // Cut at a chunk boundary: the last chunk is missing, and the one before is not the last.
    let cut = &file[..head + 2 * (CHUNK + TAG)];
    assert!(matches!(
        opened(cut, Some(b"pw")),
        Err(FormatError::WrongPassphraseOrDamaged)
    ));
    // Cut inside a chunk, and one byte changed.
    assert!(opened(&file[..file.len() - 1], Some(b"pw")).is_err());
    let mut altered = file.clone();
    altered[head + CHUNK] ^= 1;
    assert!(matches!(
        opened(&altered, Some(b"pw")),
        Err(FormatError::WrongPassphraseOrDamaged)
    ));
}

#[test]
fn anything_else_is_not_a_backup() {
    assert!(matches!(
        opened(b"PK\x03\x04", None),
        Err(FormatError::NotABackup)
    ));
    let mut bad = MAGIC.to_vec();
    bad.extend_from_slice(b"{\"encryption\": 7}\n");
    assert!(matches!(opened(&bad, None), Err(FormatError::BadHeader(_))));
}
