//! SSH keys: list, create (the public key validated, its fingerprint computed), delete.

use serde::Deserialize;
use serde_json::{Value, json};
use wiremock::Request;

use super::answer::{Answer, Page, not_found, paged, unprocessable};
use super::state::{SshKey, State};

pub(super) fn list_keys(s: &State, at: &Page<'_>) -> Answer {
    let items: Vec<Value> = s.keys.values().map(|k| serde_json::to_value(k).unwrap()).collect();
    paged(at.path, at.query, "ssh_keys", items)
}

pub(super) fn create_key(s: &mut State, req: &Request) -> Answer {
    #[derive(Deserialize)]
    struct Body {
        name: String,
        public_key: String,
    }
    let Ok(b) = req.body_json::<Body>() else {
        return unprocessable("name and public_key are required");
    };
    if b.name.trim().is_empty() || !valid_public_key(&b.public_key) {
        return unprocessable("Key invalid, key should be of the format `type key [comment]`");
    }
    if s.keys.values().any(|k| k.public_key == b.public_key) {
        return unprocessable("SSH Key is already in use on your account");
    }
    s.next_id += 1;
    let id = s.next_id;
    let fingerprint = fingerprint_of(&b.public_key);
    let key = SshKey {
        id,
        name: b.name,
        public_key: b.public_key,
        fingerprint,
    };
    s.keys.insert(id, key.clone());
    Answer::json(201, json!({"ssh_key": key}))
}

pub(super) fn delete_key(s: &mut State, id: &str) -> Answer {
    let found = s
        .keys
        .iter()
        .find(|(k, v)| k.to_string() == *id || v.fingerprint == *id)
        .map(|(k, _)| *k);
    match found {
        Some(k) => {
            s.keys.remove(&k);
            Answer::empty(204)
        }
        None => not_found(),
    }
}

pub(super) fn fingerprint_of(public_key: &str) -> String {
    // The real API shows an MD5-style 16-byte colon-hex fingerprint; any stable digest
    // of the key works for the fake.
    use std::hash::{Hash, Hasher};
    let mut out = Vec::new();
    for salt in 0..2u8 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (salt, public_key).hash(&mut h);
        out.extend(h.finish().to_be_bytes());
    }
    out.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// Whether `key` reads as an OpenSSH public key: `TYPE BASE64 [comment]`, the blob's own
/// type string equal to TYPE (what the real API refuses with 422 otherwise).
pub(super) fn valid_public_key(key: &str) -> bool {
    let mut parts = key.split_whitespace();
    let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
        return false;
    };
    let known = [
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
    ];
    let Some(bytes) = base64_decode(blob) else {
        return false;
    };
    let Some(len) = bytes
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    else {
        return false;
    };
    known.contains(&kind) && bytes.get(4..4 + len) == Some(kind.as_bytes())
}

pub(super) fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes() {
        acc = (acc << 6) | u32::from(value(c)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}
