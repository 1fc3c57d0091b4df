//! Cosign-compatible signatures, key-based: an ECDSA P-256 signature over
//! cosign's "simple signing" payload, which names the signed manifest's
//! digest. cosign stores them in the registry as the layers of a manifest
//! tagged `sha256-<digest>.sig`, each layer the payload with the base64
//! signature in an annotation; `shipgate sign` writes the same, so either
//! tool verifies what the other signed.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub(crate) const SIMPLE_SIGNING_MEDIA_TYPE: &str =
    "application/vnd.dev.cosign.simplesigning.v1+json";
pub(crate) const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
const PAYLOAD_TYPE: &str = "cosign container image signature";
/// The largest payload read: a few hundred bytes in practice.
pub(crate) const MAX_PAYLOAD_BYTES: u64 = 64 << 10;

/// SubjectPublicKeyInfo of an EC P-256 key, up to the 65-byte point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The tag cosign keeps a manifest's signatures under.
pub(crate) fn signature_tag(manifest_hex: &str) -> String {
    format!("sha256-{manifest_hex}.sig")
}

/// cosign's payload for `repository` (`registry/repository`) at a manifest
/// digest, byte for byte as cosign writes it.
pub(crate) fn payload(docker_reference: &str, manifest_hex: &str) -> Vec<u8> {
    #[derive(Serialize)]
    struct Payload<'a> {
        critical: Critical<'a>,
        optional: Option<()>,
    }
    #[derive(Serialize)]
    struct Critical<'a> {
        identity: Identity<'a>,
        image: Image,
        #[serde(rename = "type")]
        kind: &'a str,
    }
    #[derive(Serialize)]
    struct Identity<'a> {
        #[serde(rename = "docker-reference")]
        docker_reference: &'a str,
    }
    #[derive(Serialize)]
    struct Image {
        #[serde(rename = "docker-manifest-digest")]
        digest: String,
    }
    serde_json::to_vec(&Payload {
        critical: Critical {
            identity: Identity { docker_reference },
            image: Image {
                digest: format!("sha256:{manifest_hex}"),
            },
            kind: PAYLOAD_TYPE,
        },
        optional: None,
    })
    .expect("JSON")
}

/// A signature as pulled or made: the payload and the DER signature, base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Signed {
    pub(crate) payload: String,
    pub(crate) signature: String,
}

/// A verification key: an ECDSA P-256 public key in PEM, as
/// `cosign generate-key-pair` writes `cosign.pub`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PublicKey {
    point: Vec<u8>,
    /// sha256 of the key's DER, to name the signer in messages.
    pub(crate) fingerprint: String,
}

impl PublicKey {
    pub(crate) fn from_pem(text: &str) -> Result<PublicKey, String> {
        let der = pem_body(text, "PUBLIC KEY")?;
        let point = der
            .strip_prefix(&P256_SPKI_PREFIX[..])
            .filter(|point| point.len() == 65 && point[0] == 4)
            .ok_or("not an ECDSA P-256 public key (the kind cosign generates)")?;
        Ok(PublicKey {
            point: point.to_vec(),
            fingerprint: hex::encode(Sha256::digest(&der))[..16].to_string(),
        })
    }

    fn verifies(&self, payload: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, &self.point)
            .verify(payload, signature)
            .is_ok()
    }
}

/// A signing key: an unencrypted PKCS#8 PEM ECDSA P-256 private key.
pub(crate) struct SigningKey(EcdsaKeyPair);

impl SigningKey {
    pub(crate) fn from_pem(text: &str) -> Result<SigningKey, String> {
        if text.contains("ENCRYPTED SIGSTORE PRIVATE KEY") {
            return Err(
                "cosign's encrypted key format is not read here; give a PKCS#8 PEM key \
                        (`openssl pkcs8 -topk8 -nocrypt` converts an EC key)"
                    .into(),
            );
        }
        let der = pem_body(text, "PRIVATE KEY")?;
        EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &der,
            &SystemRandom::new(),
        )
        .map(SigningKey)
        .map_err(|e| format!("not an ECDSA P-256 PKCS#8 private key: {e}"))
    }

    pub(crate) fn sign(&self, payload: &[u8]) -> Result<Signed, String> {
        let signature = self
            .0
            .sign(&SystemRandom::new(), payload)
            .map_err(|e| format!("signing: {e}"))?;
        Ok(Signed {
            payload: STANDARD.encode(payload),
            signature: STANDARD.encode(signature.as_ref()),
        })
    }

    /// The public half, as the PEM a verifier is given.
    /// The fingerprint of its public key, as `PublicKey` gives it.
    pub(crate) fn fingerprint(&self) -> String {
        PublicKey::from_pem(&self.public_key_pem())
            .map(|public| public.fingerprint)
            .unwrap_or_default()
    }

    pub(crate) fn public_key_pem(&self) -> String {
        let der = [&P256_SPKI_PREFIX[..], self.0.public_key().as_ref()].concat();
        let body = STANDARD.encode(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).expect("base64"))
            .collect();
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            lines.join("\n")
        )
    }
}

/// Checks that one of `signatures` is `key`'s over a payload that names
/// this manifest. Returns the key's fingerprint.
pub(crate) fn verify(
    signatures: &[Signed],
    key: &PublicKey,
    manifest_hex: &str,
) -> Result<String, String> {
    if signatures.is_empty() {
        return Err("the module is not signed (no cosign signature in the registry)".into());
    }
    let wanted = format!("sha256:{manifest_hex}");
    let mut signed_elsewhere = false;
    for signed in signatures {
        let (Ok(payload), Ok(signature)) = (
            STANDARD.decode(&signed.payload),
            STANDARD.decode(signed.signature.trim()),
        ) else {
            continue;
        };
        if !key.verifies(&payload, &signature) {
            continue;
        }
        let claims: serde_json::Value = serde_json::from_slice(&payload).unwrap_or_default();
        let critical = &claims["critical"];
        if critical["type"] == PAYLOAD_TYPE
            && critical["image"]["docker-manifest-digest"] == wanted.as_str()
        {
            return Ok(key.fingerprint.clone());
        }
        signed_elsewhere = true;
    }
    Err(if signed_elsewhere {
        format!(
            "the signature by key {} is for another module, not {wanted}",
            key.fingerprint
        )
    } else {
        format!(
            "no signature verifies with key {} ({} signature(s) found)",
            key.fingerprint,
            signatures.len()
        )
    })
}

/// The DER inside a PEM block labelled `label`.
fn pem_body(text: &str, label: &str) -> Result<Vec<u8>, String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text
        .find(&begin)
        .ok_or_else(|| format!("no '{begin}' block"))?
        + begin.len();
    let stop = text[start..]
        .find(&end)
        .ok_or_else(|| format!("no '{end}' line"))?
        + start;
    let body: String = text[start..stop].split_whitespace().collect();
    STANDARD
        .decode(body)
        .map_err(|e| format!("the {label} block is not base64: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A signature made by cosign, from sigstore-rs's test data
    /// (src/cosign/signature_layers.rs): the key, the payload it signed and
    /// the signature.
    const COSIGN_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAENptdY/l3nB0yqkXLBWkZWQwo6+cu
OSWS1X9vPavpiQOoTTGC0xX57OojUadxF1cdQmrsiReWg2Wn4FneJfa8xw==
-----END PUBLIC KEY-----";
    const COSIGN_SIGNATURE: &str = "MEUCIQD6q/COgzOyW0YH1Dk+CCYSt4uAhm3FDHUwvPI55zwnlwIgE0ZK58ZOWpZw8YVmBapJhBqCfdPekIknimuO0xH8Jh8=";
    const COSIGN_DIGEST: &str = "f3cfc9d0dbf931d3db4685ec659b7ac68e2a578219da4aae65427886e649b06b";

    #[test]
    fn a_signature_cosign_made_verifies_over_the_payload_we_build() {
        let payload = payload("registry-testing.svc.lan/busybox", COSIGN_DIGEST);
        let signed = Signed {
            payload: STANDARD.encode(&payload),
            signature: COSIGN_SIGNATURE.into(),
        };
        let key = PublicKey::from_pem(COSIGN_PUBLIC_KEY).unwrap();
        assert_eq!(
            verify(std::slice::from_ref(&signed), &key, COSIGN_DIGEST),
            Ok(key.fingerprint.clone())
        );
        // The same signature does not vouch for another module.
        let other = "0".repeat(64);
        assert!(
            verify(std::slice::from_ref(&signed), &key, &other)
                .unwrap_err()
                .contains("for another module")
        );
        // One changed byte of the payload and nothing verifies.
        let mut tampered = payload.clone();
        tampered[10] ^= 1;
        let tampered = Signed {
            payload: STANDARD.encode(tampered),
            ..signed
        };
        assert!(
            verify(&[tampered], &key, COSIGN_DIGEST)
                .unwrap_err()
                .contains("no signature verifies")
        );
    }

    #[test]
    fn our_signatures_verify_and_another_key_does_not() {
        let rng = SystemRandom::new();
        let pem = |der: &[u8]| {
            format!(
                "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                STANDARD.encode(der)
            )
        };
        let ours = SigningKey::from_pem(&pem(EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &rng,
        )
        .unwrap()
        .as_ref()))
        .unwrap();
        let theirs = SigningKey::from_pem(&pem(EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &rng,
        )
        .unwrap()
        .as_ref()))
        .unwrap();
        let digest = "ab".repeat(32);
        let signed = ours
            .sign(&payload("127.0.0.1:5000/rules", &digest))
            .unwrap();
        let our_key = PublicKey::from_pem(&ours.public_key_pem()).unwrap();
        let their_key = PublicKey::from_pem(&theirs.public_key_pem()).unwrap();
        assert!(verify(std::slice::from_ref(&signed), &our_key, &digest).is_ok());
        assert!(verify(&[signed], &their_key, &digest).is_err());
        assert!(
            verify(&[], &our_key, &digest)
                .unwrap_err()
                .contains("not signed")
        );
    }

    #[test]
    fn keys_of_other_kinds_are_refused_with_a_reason() {
        assert!(
            PublicKey::from_pem("nonsense")
                .unwrap_err()
                .contains("BEGIN PUBLIC KEY")
        );
        let rsa_like = "-----BEGIN PUBLIC KEY-----\nMAwwCgYIKoZIzj0EAwI=\n-----END PUBLIC KEY-----";
        assert!(PublicKey::from_pem(rsa_like).unwrap_err().contains("P-256"));
        let cosign = "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nabc\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----";
        assert!(
            SigningKey::from_pem(cosign)
                .err()
                .unwrap()
                .contains("PKCS#8")
        );
    }
}
