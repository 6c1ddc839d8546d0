//! COSE_Key (RFC 9052 §7, RFC 9053, RFC 8230) to an aws-lc-rs public key, for the three
//! algorithms doorman offers. Labels are integers (CTAP2 never sends text labels); a label seen
//! twice, an algorithm not offered, or parameters that do not fit the algorithm are refused.

use aws_lc_rs::signature::{
    RsaPublicKeyComponents, UnparsedPublicKey, ECDSA_P256_SHA256_ASN1, ED25519,
    RSA_PKCS1_2048_8192_SHA256,
};
use minicbor::data::Type;
use minicbor::Decoder;

use super::{WebauthnError, ALGORITHMS, EDDSA, ES256, RS256};

const LABEL_KTY: i64 = 1;
const LABEL_ALG: i64 = 3;
/// `crv` for EC2 and OKP keys, `n` for RSA keys.
const LABEL_CRV_OR_N: i64 = -1;
/// `x` for EC2 and OKP keys, `e` for RSA keys.
const LABEL_X_OR_E: i64 = -2;
const LABEL_Y: i64 = -3;

const KTY_OKP: i64 = 1;
const KTY_EC2: i64 = 2;
const KTY_RSA: i64 = 3;
const CRV_P256: i64 = 1;
const CRV_ED25519: i64 = 6;

/// More entries than any key of ours has (RSA private keys have 11): refuse the rest.
const MAX_ENTRIES: u64 = 16;

/// A public key, in the form aws-lc-rs takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Material {
    /// Uncompressed SEC1 point `0x04 || x || y`.
    P256(Vec<u8>),
    /// The raw 32-byte public key.
    Ed25519(Vec<u8>),
    /// Big-endian modulus and exponent.
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

/// A COSE public key of one of [`ALGORITHMS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Key {
    pub(super) alg: i64,
    material: Material,
}

enum Value<'b> {
    Int(i64),
    Bytes(&'b [u8]),
    Other,
}

fn malformed(what: &'static str) -> WebauthnError {
    WebauthnError::Malformed(what)
}

fn is_int(t: Type) -> bool {
    matches!(
        t,
        Type::U8
            | Type::U16
            | Type::U32
            | Type::U64
            | Type::I8
            | Type::I16
            | Type::I32
            | Type::I64
            | Type::Int
    )
}

/// Reads one COSE_Key at the decoder's position, leaving the decoder just after it.
pub(super) fn read(d: &mut Decoder<'_>) -> Result<Key, WebauthnError> {
    let n = d
        .map()
        .map_err(|_| malformed("COSE key is not a map"))?
        .ok_or_else(|| malformed("COSE key of indefinite length"))?;
    if n > MAX_ENTRIES {
        return Err(malformed("COSE key has too many entries"));
    }
    let mut entries: Vec<(i64, Value<'_>)> = Vec::new();
    for _ in 0..n {
        let label = d
            .i64()
            .map_err(|_| malformed("COSE key label is not an integer"))?;
        if entries.iter().any(|(l, _)| *l == label) {
            return Err(malformed("COSE key label appears twice"));
        }
        let t = d
            .datatype()
            .map_err(|_| malformed("COSE key value missing"))?;
        let value = if is_int(t) {
            Value::Int(d.i64().map_err(|_| malformed("COSE key integer"))?)
        } else if t == Type::Bytes {
            Value::Bytes(d.bytes().map_err(|_| malformed("COSE key bytes"))?)
        } else {
            d.skip().map_err(|_| malformed("COSE key value"))?;
            Value::Other
        };
        entries.push((label, value));
    }
    let find = |label: i64| entries.iter().find(|(l, _)| *l == label).map(|(_, v)| v);
    let int = |label: i64| match find(label) {
        Some(Value::Int(i)) => Some(*i),
        _ => None,
    };
    let bytes = |label: i64| match find(label) {
        Some(Value::Bytes(b)) => Some(*b),
        _ => None,
    };

    let alg = int(LABEL_ALG).ok_or_else(|| malformed("COSE key without alg"))?;
    if !ALGORITHMS.contains(&alg) {
        return Err(WebauthnError::UnsupportedKey(alg));
    }
    let unsupported = WebauthnError::UnsupportedKey(alg);
    let kty = int(LABEL_KTY).ok_or(unsupported.clone())?;
    let material = match (alg, kty) {
        (ES256, KTY_EC2) => {
            let x = bytes(LABEL_X_OR_E).filter(|x| x.len() == 32);
            let y = bytes(LABEL_Y).filter(|y| y.len() == 32);
            match (int(LABEL_CRV_OR_N), x, y) {
                (Some(CRV_P256), Some(x), Some(y)) => {
                    let mut point = Vec::with_capacity(65);
                    point.push(0x04);
                    point.extend_from_slice(x);
                    point.extend_from_slice(y);
                    Material::P256(point)
                }
                _ => return Err(unsupported),
            }
        }
        (EDDSA, KTY_OKP) => match (int(LABEL_CRV_OR_N), bytes(LABEL_X_OR_E)) {
            (Some(CRV_ED25519), Some(x)) if x.len() == 32 => Material::Ed25519(x.to_vec()),
            _ => return Err(unsupported),
        },
        (RS256, KTY_RSA) => match (bytes(LABEL_CRV_OR_N), bytes(LABEL_X_OR_E)) {
            (Some(n), Some(e)) => {
                let n = strip_zeros(n);
                let e = strip_zeros(e);
                // 2048 to 8192 bits, as the verification parameters demand; small exponents.
                if !(256..=1024).contains(&n.len()) || e.is_empty() || e.len() > 8 {
                    return Err(unsupported);
                }
                Material::Rsa {
                    n: n.to_vec(),
                    e: e.to_vec(),
                }
            }
            _ => return Err(unsupported),
        },
        _ => return Err(unsupported),
    };
    Ok(Key { alg, material })
}

/// Reads a stored COSE_Key that must be all of `bytes`.
pub(super) fn read_all(bytes: &[u8]) -> Result<Key, WebauthnError> {
    let mut d = Decoder::new(bytes);
    let key = read(&mut d)?;
    if d.position() != bytes.len() {
        return Err(malformed("trailing bytes after the COSE key"));
    }
    Ok(key)
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    b.get(first..).unwrap_or_default()
}

impl Key {
    /// Checks that aws-lc-rs accepts the key (a point on the curve, a consistent RSA key),
    /// so a bad key is refused at enrolment rather than at its first use.
    pub(super) fn validate(&self) -> Result<(), WebauthnError> {
        let ok = match &self.material {
            Material::P256(point) => UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point)
                .parse()
                .is_ok(),
            Material::Ed25519(x) => UnparsedPublicKey::new(&ED25519, x).parse().is_ok(),
            Material::Rsa { n, e } => RsaPublicKeyComponents { n, e }
                .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
                .is_ok(),
        };
        if ok {
            Ok(())
        } else {
            Err(WebauthnError::UnsupportedKey(self.alg))
        }
    }

    /// Verifies `signature` over `message`: ES256 as DER, EdDSA as 64 raw bytes, RS256 as
    /// PKCS#1 v1.5.
    pub(super) fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), WebauthnError> {
        let result = match &self.material {
            Material::P256(point) => {
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point).verify(message, signature)
            }
            Material::Ed25519(x) => UnparsedPublicKey::new(&ED25519, x).verify(message, signature),
            Material::Rsa { n, e } => RsaPublicKeyComponents { n, e }.verify(
                &RSA_PKCS1_2048_8192_SHA256,
                message,
                signature,
            ),
        };
        result.map_err(|_| WebauthnError::BadSignature)
    }
}
