//! Security Event Tokens (RFC 8417): building and signing them, and the JWKS
//! that lets receivers verify them.
//!
//! A token says one thing about one person to one receiver: the OpenID
//! Shared Signals CAEP `session-revoked` event or the RISC `account-disabled`
//! event, with `iss`, `aud`, `iat`, `jti`, `toe` (RFC 8417's time of the
//! event), `txn` (the notice's id, shared by every token about the same
//! event) and `sub_id`, a subject identifier in
//! the receiver's chosen format (RFC 9493: `email`, `opaque` or `iss_sub`).
//! The JOSE header has `typ: secevent+jwt` and the key's `kid`.
//!
//! Tokens are signed with `jsonwebtoken` using its RustCrypto backend
//! (`rust_crypto` feature), chosen over `aws_lc_rs` because it is pure Rust:
//! no C toolchain or CMake in the build, which matters on a two-core build
//! machine and keeps the build the same everywhere. ES256 (P-256) is the
//! default and recommended algorithm; RS256 is available for receivers that
//! accept nothing else.
//!
//! A token is signed when the notice is enqueued, and the same token is sent
//! on every retry, so `jti` deduplicates at the receiver.

use crate::NotifyError;
use crate::notice::Notice;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tenure_core::config::{SetAlgorithm, SetEvent, SetReceiverConfig, SubjectFormat};

/// The JOSE `typ` of a security event token (RFC 8417 §2.3).
pub const SET_TYP: &str = "secevent+jwt";

/// Signs security event tokens with one key.
pub struct SetSigner {
    issuer: String,
    key_id: String,
    algorithm: Algorithm,
    key: EncodingKey,
    jwk: Jwk,
}

impl std::fmt::Debug for SetSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetSigner")
            .field("issuer", &self.issuer)
            .field("key_id", &self.key_id)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl SetSigner {
    /// A signer for `issuer` with the PEM private key `pem` (PKCS#8 for
    /// ES256; PKCS#1 or PKCS#8 for RS256), published under `key_id`.
    pub fn new(
        issuer: &str,
        key_id: &str,
        algorithm: SetAlgorithm,
        pem: &[u8],
    ) -> Result<Self, NotifyError> {
        let bad = |e: jsonwebtoken::errors::Error| {
            NotifyError::Config(format!(
                "[security_events] signing_key: not a {} private key in PEM: {e}",
                match algorithm {
                    SetAlgorithm::ES256 => "P-256 (ES256, PKCS#8)",
                    SetAlgorithm::RS256 => "RSA (RS256)",
                }
            ))
        };
        let (alg, key) = match algorithm {
            SetAlgorithm::ES256 => (
                Algorithm::ES256,
                EncodingKey::from_ec_pem(pem).map_err(bad)?,
            ),
            SetAlgorithm::RS256 => (
                Algorithm::RS256,
                EncodingKey::from_rsa_pem(pem).map_err(bad)?,
            ),
        };
        let mut jwk = Jwk::from_encoding_key(&key, alg).map_err(bad)?;
        jwk.common.key_id = Some(key_id.to_owned());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(match algorithm {
            SetAlgorithm::ES256 => KeyAlgorithm::ES256,
            SetAlgorithm::RS256 => KeyAlgorithm::RS256,
        });
        // Sign once now: a key that parses but cannot sign fails here, not
        // when a leaver's token is due.
        let signer = SetSigner {
            issuer: issuer.to_owned(),
            key_id: key_id.to_owned(),
            algorithm: alg,
            key,
            jwk,
        };
        signer.sign("startup check", &json!({ "iss": issuer }))?;
        Ok(signer)
    }

    /// The issuer (`iss`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The public signing key(s) as a JWKS (RFC 7517), to publish at
    /// `/.well-known/jwks.json`.
    pub fn jwks(&self) -> Value {
        let set = JwkSet {
            keys: vec![self.jwk.clone()],
        };
        serde_json::to_value(&set).unwrap_or_else(|_| json!({ "keys": [] }))
    }

    /// The claims of the token telling `receiver` about `event` for `notice`,
    /// or `None` when the notice's identity has no value for the receiver's
    /// subject attribute (the reason is returned instead).
    pub fn claims(
        &self,
        receiver: &SetReceiverConfig,
        event: SetEvent,
        notice: &Notice,
        jti: &str,
        iat: i64,
    ) -> Result<Value, String> {
        let identity = notice
            .identity
            .as_ref()
            .ok_or_else(|| format!("notice {} is about no identity", notice.id))?;
        let attr = receiver.subject.attribute();
        let value = if attr == "id" {
            identity.id.clone()
        } else {
            identity
                .attributes
                .get(attr)
                .filter(|v| !v.trim().is_empty())
                .cloned()
                .ok_or_else(|| {
                    format!(
                        "identity {} has no {attr} for receiver {}'s subject",
                        identity.id, receiver.id
                    )
                })?
        };
        let sub_id = match receiver.subject.format {
            SubjectFormat::Email => json!({ "format": "email", "email": value }),
            SubjectFormat::Opaque => json!({ "format": "opaque", "id": value }),
            SubjectFormat::IssSub => json!({
                "format": "iss_sub",
                "iss": receiver.subject.issuer.clone().unwrap_or_default(),
                "sub": value,
            }),
        };
        let mut body = json!({
            "event_timestamp": notice.at.timestamp(),
            "initiating_entity": if notice.kind == tenure_core::config::NoticeKind::Suspended {
                "admin"
            } else {
                "policy"
            },
        });
        if !notice.detail.trim().is_empty() {
            body["reason_admin"] = json!({ "en": notice.detail });
        }
        Ok(json!({
            "iss": self.issuer,
            "aud": receiver.audience,
            "iat": iat,
            "jti": jti,
            "toe": notice.at.timestamp(),
            "txn": notice.id,
            "sub_id": sub_id,
            "events": { event.uri(): body },
        }))
    }

    /// Signs `claims` as a compact JWS with `typ: secevent+jwt`.
    pub fn sign(&self, receiver: &str, claims: &Value) -> Result<String, NotifyError> {
        let mut header = Header::new(self.algorithm);
        header.typ = Some(SET_TYP.to_owned());
        header.kid = Some(self.key_id.clone());
        jsonwebtoken::encode(&header, claims, &self.key).map_err(|e| NotifyError::Sign {
            receiver: receiver.to_owned(),
            message: e.to_string(),
        })
    }
}
