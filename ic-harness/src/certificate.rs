//! Data certificates, as the IC gives a non-replicated query: a certificate (IC interface
//! specification, "Certification") whose hash tree holds `/canister/<id>/certified_data` and
//! `/time`, signed with BLS12-381 by the harness's own root key. An HTTP gateway's checks
//! (`ic-response-verification`) pass against [`RootKey::public_key_der`] exactly as they pass on
//! the IC against the IC's root key; there is no subnet delegation (as on a local replica).

use ic_certification::hash_tree::{HashTree, fork, label, leaf};
use ic_verify_bls_signature::PrivateKey;

/// The harness's root secret key (any scalar below the group order: this is 42).
const ROOT_SECRET: [u8; 32] = {
    let mut k = [0; 32];
    k[31] = 42;
    k
};

/// The DER prefix of an IC BLS12-381 public key (the 96 bytes follow), as agents read the root
/// key (`/api/v2/status`'s `root_key`).
const DER_PREFIX: [u8; 37] = [
    0x30, 0x81, 0x82, 0x30, 0x1d, 0x06, 0x0d, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0xdc, 0x7c, 0x05,
    0x03, 0x01, 0x02, 0x01, 0x06, 0x0c, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0xdc, 0x7c, 0x05, 0x03,
    0x02, 0x01, 0x03, 0x61, 0x00,
];

/// The domain separator of a state root's signature: its length byte and `ic-state-root`.
const STATE_ROOT_DOMAIN: &[u8] = b"\x0Dic-state-root";

/// CBOR's self-describing tag (55799), which the IC puts before every certificate.
const CBOR_SELF_DESCRIBING: [u8; 3] = [0xd9, 0xd9, 0xf7];

pub struct RootKey {
    secret: PrivateKey,
}

impl std::fmt::Debug for RootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RootKey(harness)")
    }
}

impl Default for RootKey {
    fn default() -> Self {
        RootKey {
            secret: PrivateKey::deserialize(&ROOT_SECRET)
                .unwrap_or_else(|_| unreachable!("42 is a valid BLS12-381 scalar")),
        }
    }
}

impl RootKey {
    /// The 96-byte public key (compressed G2 point).
    pub fn public_key(&self) -> [u8; 96] {
        self.secret.public_key().serialize()
    }

    /// The public key in DER, as agents and gateways take the root key.
    pub fn public_key_der(&self) -> Vec<u8> {
        let mut der = DER_PREFIX.to_vec();
        der.extend_from_slice(&self.public_key());
        der
    }

    /// The CBOR certificate of `certified_data` for canister `canister_id` at `time_ns`.
    pub fn data_certificate(
        &self,
        canister_id: &[u8],
        certified_data: &[u8],
        time_ns: u64,
    ) -> Vec<u8> {
        let tree: HashTree<Vec<u8>> = fork(
            label(
                b"canister".to_vec(),
                label(
                    canister_id.to_vec(),
                    label(b"certified_data".to_vec(), leaf(certified_data.to_vec())),
                ),
            ),
            label(b"time".to_vec(), leaf(leb128(time_ns))),
        );
        let mut message = STATE_ROOT_DOMAIN.to_vec();
        message.extend_from_slice(&tree.digest());
        let signature = self.secret.sign(&message).serialize().to_vec();
        let certificate = ic_certification::Certificate {
            tree,
            signature,
            delegation: None,
        };
        let mut out = CBOR_SELF_DESCRIBING.to_vec();
        ciborium::into_writer(&certificate, &mut out)
            .unwrap_or_else(|e| unreachable!("CBOR into a Vec cannot fail: {e}"));
        out
    }
}

fn leb128(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ic_verify_bls_signature::{PublicKey, Signature};

    #[test]
    fn leb128_matches_the_spec_examples() {
        assert_eq!(leb128(0), [0]);
        assert_eq!(leb128(127), [0x7f]);
        assert_eq!(leb128(624_485), [0xe5, 0x8e, 0x26]);
    }

    /// The certificate decodes as the IC's, its tree holds the data at the spec's path, and its
    /// signature verifies under the root key over the domain-separated root hash.
    #[test]
    fn certificate_verifies_under_the_root_key() {
        let key = RootKey::default();
        let cbor = key.data_certificate(&[1, 2, 3], &[7; 32], 1_000);
        assert_eq!(&cbor[..3], &CBOR_SELF_DESCRIBING);
        let value: ciborium::Value = ciborium::from_reader(&cbor[3..]).expect("CBOR");
        let map = value.as_map().expect("a map");
        let get = |k: &str| {
            map.iter()
                .find(|(key, _)| key.as_text() == Some(k))
                .map(|(_, v)| v.clone())
                .expect(k)
        };
        let signature = get("signature").into_bytes().expect("bytes");
        let tree: HashTree<Vec<u8>> = fork(
            label(
                b"canister".to_vec(),
                label(
                    vec![1, 2, 3],
                    label(b"certified_data".to_vec(), leaf(vec![7; 32])),
                ),
            ),
            label(b"time".to_vec(), leaf(leb128(1_000))),
        );
        let mut message = STATE_ROOT_DOMAIN.to_vec();
        message.extend_from_slice(&tree.digest());
        let pk = PublicKey::deserialize(&key.public_key()).expect("public key");
        let sig = Signature::deserialize(&signature).expect("signature");
        assert!(pk.verify(&message, &sig).is_ok());
        let mut other = message.clone();
        other[20] ^= 1;
        assert!(pk.verify(&other, &sig).is_err());
        assert_eq!(key.public_key_der().len(), 133);
    }
}
