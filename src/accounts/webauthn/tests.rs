//! The verifier against a tiny in-test authenticator built on aws-lc-rs: it writes attestation
//! objects (minicbor) and signs assertions, and each case forges one field. Every rule of
//! `verify_registration` / `verify_assertion` has a case that passes only with its check.

use std::sync::OnceLock;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING, RSA_PKCS1_SHA256,
};
use minicbor::Encoder;

use super::*;

const CHALLENGE: [u8; 32] = [7; 32];

fn rp() -> Rp {
    Rp {
        id: "localhost".into(),
        origin: "http://localhost:8080".into(),
        name: "localhost".into(),
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, bytes).as_ref().to_vec()
}

// ---------------------------------------------------------------------------------------------
// The authenticator.

enum Signer {
    Es256(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rs256(&'static RsaKeyPair),
}

/// RSA key generation is slow unoptimised: one key for the whole test binary.
fn rsa_key() -> &'static RsaKeyPair {
    static KEY: OnceLock<RsaKeyPair> = OnceLock::new();
    KEY.get_or_init(|| RsaKeyPair::generate(KeySize::Rsa2048).unwrap())
}

struct Authenticator {
    signer: Signer,
    id: Vec<u8>,
}

/// Reads `SEQUENCE { INTEGER n, INTEGER e }` (PKCS#1 RSAPublicKey DER).
fn rsa_components(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
    fn len(b: &[u8], i: &mut usize) -> usize {
        let first = b[*i];
        *i += 1;
        if first < 0x80 {
            return first as usize;
        }
        let mut n = 0;
        for _ in 0..(first & 0x7f) {
            n = (n << 8) | b[*i] as usize;
            *i += 1;
        }
        n
    }
    let mut i = 0;
    assert_eq!(der[i], 0x30);
    i += 1;
    len(der, &mut i);
    let mut ints = Vec::new();
    for _ in 0..2 {
        assert_eq!(der[i], 0x02);
        i += 1;
        let l = len(der, &mut i);
        ints.push(der[i..i + l].to_vec());
        i += l;
    }
    (ints[0].clone(), ints[1].clone())
}

impl Authenticator {
    fn es256() -> Self {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        Authenticator {
            signer: Signer::Es256(key),
            id: rand::random::<[u8; 16]>().to_vec(),
        }
    }
    fn ed25519() -> Self {
        Authenticator {
            signer: Signer::Ed25519(Ed25519KeyPair::generate().unwrap()),
            id: rand::random::<[u8; 16]>().to_vec(),
        }
    }
    fn rs256() -> Self {
        Authenticator {
            signer: Signer::Rs256(rsa_key()),
            id: rand::random::<[u8; 16]>().to_vec(),
        }
    }

    fn alg(&self) -> i64 {
        match self.signer {
            Signer::Es256(_) => ES256,
            Signer::Ed25519(_) => EDDSA,
            Signer::Rs256(_) => RS256,
        }
    }

    /// The COSE_Key, as CTAP2 writes it (canonical order).
    fn cose(&self) -> Vec<u8> {
        let mut e = Encoder::new(Vec::new());
        match &self.signer {
            Signer::Es256(k) => {
                let point = k.public_key().as_ref();
                e.map(5).unwrap();
                e.i64(1).unwrap().i64(2).unwrap();
                e.i64(3).unwrap().i64(ES256).unwrap();
                e.i64(-1).unwrap().i64(1).unwrap();
                e.i64(-2).unwrap().bytes(&point[1..33]).unwrap();
                e.i64(-3).unwrap().bytes(&point[33..65]).unwrap();
            }
            Signer::Ed25519(k) => {
                e.map(4).unwrap();
                e.i64(1).unwrap().i64(1).unwrap();
                e.i64(3).unwrap().i64(EDDSA).unwrap();
                e.i64(-1).unwrap().i64(6).unwrap();
                e.i64(-2).unwrap().bytes(k.public_key().as_ref()).unwrap();
            }
            Signer::Rs256(k) => {
                let (n, ex) = rsa_components(k.public_key().as_ref());
                e.map(4).unwrap();
                e.i64(1).unwrap().i64(3).unwrap();
                e.i64(3).unwrap().i64(RS256).unwrap();
                e.i64(-1).unwrap().bytes(&n).unwrap();
                e.i64(-2).unwrap().bytes(&ex).unwrap();
            }
        }
        e.into_writer()
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.signer {
            Signer::Es256(k) => k.sign(&rng, message).unwrap().as_ref().to_vec(),
            Signer::Ed25519(k) => k.sign(message).as_ref().to_vec(),
            Signer::Rs256(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &rng, message, &mut sig).unwrap();
                sig
            }
        }
    }
}

/// A COSE key from (label, value) pairs, for forged keys.
enum V<'a> {
    I(i64),
    B(&'a [u8]),
}
fn cose_map(entries: &[(i64, V<'_>)]) -> Vec<u8> {
    let mut e = Encoder::new(Vec::new());
    e.map(entries.len() as u64).unwrap();
    for (label, value) in entries {
        e.i64(*label).unwrap();
        match value {
            V::I(i) => e.i64(*i).unwrap(),
            V::B(b) => e.bytes(b).unwrap(),
        };
    }
    e.into_writer()
}

fn client_data(kind: &str, challenge: &[u8], origin: &str, extra: &str) -> Vec<u8> {
    format!(
        r#"{{"type":"{kind}","challenge":"{}","origin":"{origin}"{extra}}}"#,
        b64(challenge)
    )
    .into_bytes()
}

/// authData: rpIdHash || flags || signCount || [aaguid || len || credId || COSE key] || tail.
fn auth_data(
    rp_id: &str,
    flags: u8,
    count: u32,
    attested: Option<(&[u8], &[u8])>,
    tail: &[u8],
) -> Vec<u8> {
    let mut out = sha256(rp_id.as_bytes());
    out.push(flags);
    out.extend_from_slice(&count.to_be_bytes());
    if let Some((id, cose)) = attested {
        out.extend_from_slice(&[0xAA; 16]);
        out.extend_from_slice(&(id.len() as u16).to_be_bytes());
        out.extend_from_slice(id);
        out.extend_from_slice(cose);
    }
    out.extend_from_slice(tail);
    out
}

/// A registration, every field of which a case may forge.
struct Reg {
    kind: &'static str,
    challenge: Vec<u8>,
    origin: String,
    extra: String,
    rp_id: String,
    flags: u8,
    id: Vec<u8>,
    raw_id: Vec<u8>,
    cose: Vec<u8>,
    tail: Vec<u8>,
    fmt: &'static str,
    /// attStmt with one entry instead of `{}`.
    statement: bool,
    after: Vec<u8>,
}

impl Reg {
    fn new(a: &Authenticator) -> Self {
        Reg {
            kind: "webauthn.create",
            challenge: CHALLENGE.to_vec(),
            origin: rp().origin,
            extra: String::new(),
            rp_id: rp().id,
            flags: FLAG_UP | FLAG_UV | FLAG_AT,
            id: a.id.clone(),
            raw_id: a.id.clone(),
            cose: a.cose(),
            tail: Vec::new(),
            fmt: "none",
            statement: false,
            after: Vec::new(),
        }
    }

    fn build(&self) -> Registration {
        let attested = (self.flags & FLAG_AT != 0).then_some((&self.id[..], &self.cose[..]));
        let data = auth_data(&self.rp_id, self.flags, 0, attested, &self.tail);
        let mut e = Encoder::new(Vec::new());
        e.map(3).unwrap();
        e.str("fmt").unwrap().str(self.fmt).unwrap();
        e.str("attStmt").unwrap();
        if self.statement {
            e.map(2).unwrap();
            e.str("alg").unwrap().i64(-7).unwrap();
            e.str("sig").unwrap().bytes(&[1, 2, 3]).unwrap();
        } else {
            e.map(0).unwrap();
        }
        e.str("authData").unwrap().bytes(&data).unwrap();
        let mut object = e.into_writer();
        object.extend_from_slice(&self.after);
        Registration {
            raw_id: self.raw_id.clone(),
            client_data_json: client_data(self.kind, &self.challenge, &self.origin, &self.extra),
            attestation_object: object,
            transports: vec!["internal".into()],
        }
    }

    fn verify(&self, uv: Uv) -> Result<NewCredential, WebauthnError> {
        verify_registration(&rp(), &CHALLENGE, uv, &self.build())
    }
}

/// An assertion, every field of which a case may forge.
struct Get {
    kind: &'static str,
    challenge: Vec<u8>,
    origin: String,
    extra: String,
    rp_id: String,
    flags: u8,
    count: u32,
    tail: Vec<u8>,
}

impl Get {
    fn new() -> Self {
        Get {
            kind: "webauthn.get",
            challenge: CHALLENGE.to_vec(),
            origin: rp().origin,
            extra: String::new(),
            rp_id: rp().id,
            flags: FLAG_UP | FLAG_UV,
            count: 1,
            tail: Vec::new(),
        }
    }

    fn build_with(&self, a: &Authenticator, attested: Option<(&[u8], &[u8])>) -> Assertion {
        let data = auth_data(&self.rp_id, self.flags, self.count, attested, &self.tail);
        let cdj = client_data(self.kind, &self.challenge, &self.origin, &self.extra);
        let mut signed = data.clone();
        signed.extend_from_slice(&sha256(&cdj));
        Assertion {
            raw_id: a.id.clone(),
            signature: a.sign(&signed),
            client_data_json: cdj,
            authenticator_data: data,
            user_handle: Some(b"u123".to_vec()),
        }
    }

    fn build(&self, a: &Authenticator) -> Assertion {
        self.build_with(a, None)
    }

    fn verify(&self, a: &Authenticator, uv: Uv) -> Result<Verified, WebauthnError> {
        verify_assertion(&rp(), &CHALLENGE, uv, &a.cose(), a.alg(), &self.build(a))
    }
}

fn malformed(result: Result<impl std::fmt::Debug, WebauthnError>, what: &str) {
    match result {
        Err(WebauthnError::Malformed(m)) => assert_eq!(m, what),
        other => panic!("expected Malformed({what:?}), got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Round trips.

fn round_trip(a: Authenticator) {
    let cred = Reg::new(&a).verify(Uv::Required).unwrap();
    assert_eq!(cred.id, a.id);
    assert_eq!(cred.alg, a.alg());
    assert_eq!(cred.public_key, a.cose());
    assert_eq!(cred.aaguid, [0xAA; 16]);
    assert!(cred.uv && !cred.backup_eligible && !cred.backed_up);
    let mut get = Get::new();
    get.count = 5;
    let assertion = get.build(&a);
    let verified = verify_assertion(
        &rp(),
        &CHALLENGE,
        Uv::Required,
        &cred.public_key,
        cred.alg,
        &assertion,
    )
    .unwrap();
    assert_eq!(
        verified,
        Verified {
            sign_count: 5,
            uv: true,
            backup_eligible: false,
            backed_up: false
        }
    );
}

#[test]
fn es256_round_trips() {
    round_trip(Authenticator::es256());
}

#[test]
fn eddsa_round_trips() {
    round_trip(Authenticator::ed25519());
}

#[test]
fn rs256_round_trips() {
    round_trip(Authenticator::rs256());
}

#[test]
fn backup_flags_are_reported() {
    let a = Authenticator::es256();
    let mut reg = Reg::new(&a);
    reg.flags |= FLAG_BE | FLAG_BS;
    let cred = reg.verify(Uv::Preferred).unwrap();
    assert!(cred.backup_eligible && cred.backed_up);
    let mut get = Get::new();
    get.flags |= FLAG_BE;
    let v = get.verify(&a, Uv::Preferred).unwrap();
    assert!(v.backup_eligible && !v.backed_up);
}

// ---------------------------------------------------------------------------------------------
// Client data.

#[test]
fn wrong_type_is_refused() {
    let a = Authenticator::es256();
    let mut reg = Reg::new(&a);
    reg.kind = "webauthn.get";
    assert_eq!(
        reg.verify(Uv::Preferred),
        Err(WebauthnError::WrongType("webauthn.create"))
    );
    let mut get = Get::new();
    get.kind = "webauthn.create";
    assert_eq!(
        get.verify(&a, Uv::Preferred),
        Err(WebauthnError::WrongType("webauthn.get"))
    );
}

#[test]
fn wrong_challenge_is_refused() {
    let a = Authenticator::es256();
    for challenge in [vec![8; 32], CHALLENGE[..31].to_vec(), Vec::new()] {
        let mut reg = Reg::new(&a);
        reg.challenge = challenge.clone();
        assert_eq!(
            reg.verify(Uv::Preferred),
            Err(WebauthnError::WrongChallenge)
        );
        let mut get = Get::new();
        get.challenge = challenge;
        assert_eq!(
            get.verify(&a, Uv::Preferred),
            Err(WebauthnError::WrongChallenge)
        );
    }
    // An empty challenge never matches, even an empty one (a caller's bug, not a pass).
    let mut reg = Reg::new(&a);
    reg.challenge = Vec::new();
    assert_eq!(
        verify_registration(&rp(), &[], Uv::Preferred, &reg.build()),
        Err(WebauthnError::WrongChallenge)
    );
    // Not base64url: refused, not decoded leniently.
    let mut reg = Reg::new(&a).build();
    reg.client_data_json = format!(
        r#"{{"type":"webauthn.create","challenge":"{}=","origin":"http://localhost:8080"}}"#,
        b64(&CHALLENGE)
    )
    .into_bytes();
    assert_eq!(
        verify_registration(&rp(), &CHALLENGE, Uv::Preferred, &reg),
        Err(WebauthnError::WrongChallenge)
    );
}

#[test]
fn wrong_origin_is_refused() {
    let a = Authenticator::es256();
    for origin in [
        "http://localhost:80801",
        "http://localhost:8081",
        "https://localhost:8080",
        "http://localhost",
        "http://localhost:8080/",
        "http://evil.localhost:8080",
    ] {
        let mut reg = Reg::new(&a);
        reg.origin = origin.into();
        assert_eq!(
            reg.verify(Uv::Preferred),
            Err(WebauthnError::WrongOrigin(origin.into())),
            "{origin}"
        );
        let mut get = Get::new();
        get.origin = origin.into();
        assert_eq!(
            get.verify(&a, Uv::Preferred),
            Err(WebauthnError::WrongOrigin(origin.into())),
            "{origin}"
        );
    }
}

#[test]
fn cross_origin_is_refused() {
    let a = Authenticator::es256();
    let mut reg = Reg::new(&a);
    reg.extra = r#","crossOrigin":true"#.into();
    assert_eq!(reg.verify(Uv::Preferred), Err(WebauthnError::CrossOrigin));
    let mut get = Get::new();
    get.extra = r#","crossOrigin":true,"topOrigin":"https://framer.example""#.into();
    assert_eq!(
        get.verify(&a, Uv::Preferred),
        Err(WebauthnError::CrossOrigin)
    );
    // false (what browsers send) and unknown keys are fine.
    reg.extra = r#","crossOrigin":false,"other_keys_can_be_added_here":"x""#.into();
    reg.verify(Uv::Preferred).unwrap();
}

#[test]
fn client_data_with_a_bom_or_garbage() {
    let a = Authenticator::es256();
    let mut reg = Reg::new(&a).build();
    let mut with_bom = b"\xEF\xBB\xBF".to_vec();
    with_bom.extend_from_slice(&reg.client_data_json);
    reg.client_data_json = with_bom;
    verify_registration(&rp(), &CHALLENGE, Uv::Preferred, &reg).unwrap();
    reg.client_data_json = b"not json".to_vec();
    malformed(
        verify_registration(&rp(), &CHALLENGE, Uv::Preferred, &reg),
        "clientDataJSON is not the expected JSON",
    );
}

// ---------------------------------------------------------------------------------------------
// Authenticator data.

#[test]
fn wrong_rp_id_is_refused() {
    let a = Authenticator::es256();
    let mut reg = Reg::new(&a);
    reg.rp_id = "evil.example".into();
    assert_eq!(reg.verify(Uv::Preferred), Err(WebauthnError::WrongRpId));
    let mut get = Get::new();
    get.rp_id = "localhost.".into();
    assert_eq!(get.verify(&a, Uv::Preferred), Err(WebauthnError::WrongRpId));
}

#[test]
fn user_presence_is_required() {
    let a = Authenticator::es256();
    let mut reg = Reg::new(&a);
    reg.flags &= !FLAG_UP;
    assert_eq!(
        reg.verify(Uv::Preferred),
        Err(WebauthnError::NoUserPresence)
    );
    let mut get = Get::new();
    get.flags &= !FLAG_UP;
    assert_eq!(
        get.verify(&a, Uv::Preferred),
        Err(WebauthnError::NoUserPresence)
    );
}

#[test]
fn user_verification_when_required() {
    let a = Authenticator::es256();
    let mut reg = Reg::new(&a);
    reg.flags &= !FLAG_UV;
    assert_eq!(
        reg.verify(Uv::Required),
        Err(WebauthnError::NoUserVerification)
    );
    assert!(!reg.verify(Uv::Preferred).unwrap().uv);
    let mut get = Get::new();
    get.flags &= !FLAG_UV;
    assert_eq!(
        get.verify(&a, Uv::Required),
        Err(WebauthnError::NoUserVerification)
    );
    assert!(!get.verify(&a, Uv::Preferred).unwrap().uv);
}

#[test]
fn backed_up_without_backup_eligible_is_refused() {
    let a = Authenticator::es256();
    let mut reg = Reg::new(&a);
    reg.flags |= FLAG_BS;
    malformed(
        reg.verify(Uv::Preferred),
        "backed up but not backup eligible",
    );
    let mut get = Get::new();
    get.flags |= FLAG_BS;
    malformed(
        get.verify(&a, Uv::Preferred),
        "backed up but not backup eligible",
    );
}

#[test]
fn trailing_bytes_are_refused() {
    let a = Authenticator::es256();
    let mut reg = Reg::new(&a);
    reg.tail = vec![0xA0];
    malformed(
        reg.verify(Uv::Preferred),
        "trailing bytes in authenticator data",
    );
    let mut get = Get::new();
    get.tail = vec![0];
    malformed(
        get.verify(&a, Uv::Preferred),
        "trailing bytes in authenticator data",
    );
    // After the attestation object itself.
    let mut reg = Reg::new(&a);
    reg.after = vec![0];
    malformed(
        reg.verify(Uv::Preferred),
        "trailing bytes after the attestation object",
    );
}

#[test]
fn extensions_are_skipped_when_flagged() {
    let a = Authenticator::es256();
    // {"credProtect": 2}
    let mut extensions = Encoder::new(Vec::new());
    extensions.map(1).unwrap();
    extensions.str("credProtect").unwrap().u8(2).unwrap();
    let extensions = extensions.into_writer();
    let mut reg = Reg::new(&a);
    reg.flags |= FLAG_ED;
    reg.tail = extensions.clone();
    reg.verify(Uv::Preferred).unwrap();
    let mut get = Get::new();
    get.flags |= FLAG_ED;
    get.tail = extensions.clone();
    get.verify(&a, Uv::Preferred).unwrap();
    // Still nothing after the extensions, and ED without a map is refused.
    get.tail.push(0);
    malformed(
        get.verify(&a, Uv::Preferred),
        "trailing bytes in authenticator data",
    );
    get.tail = vec![0x01];
    malformed(get.verify(&a, Uv::Preferred), "extensions are not a map");
}

#[test]
fn attested_data_is_required_at_registration() {
    let a = Authenticator::es256();
    let mut reg = Reg::new(&a);
    reg.flags &= !FLAG_AT;
    malformed(reg.verify(Uv::Preferred), "no attested credential data");
}

#[test]
fn attested_data_in_an_assertion_is_refused() {
    let a = Authenticator::es256();
    let mut get = Get::new();
    get.flags |= FLAG_AT;
    let cose = a.cose();
    let assertion = get.build_with(&a, Some((&a.id, &cose)));
    malformed(
        verify_assertion(&rp(), &CHALLENGE, Uv::Preferred, &cose, ES256, &assertion),
        "attested credential data in an assertion",
    );
}

#[test]
fn raw_id_must_be_the_credential_id() {
    let a = Authenticator::es256();
    let mut reg = Reg::new(&a);
    reg.raw_id = vec![1, 2, 3];
    assert_eq!(reg.verify(Uv::Preferred), Err(WebauthnError::IdMismatch));
}

#[test]
fn credential_id_longer_than_1023_is_refused() {
    let a = Authenticator::es256();
    let mut reg = Reg::new(&a);
    reg.id = vec![9; MAX_CREDENTIAL_ID];
    reg.raw_id = reg.id.clone();
    assert_eq!(reg.verify(Uv::Preferred).unwrap().id.len(), 1023);
    reg.id = vec![9; MAX_CREDENTIAL_ID + 1];
    reg.raw_id = vec![9; MAX_CREDENTIAL_ID];
    malformed(reg.verify(Uv::Preferred), "credential id too long");
}

#[test]
fn attestation_statements() {
    let a = Authenticator::es256();
    // fmt none must come with {}.
    let mut reg = Reg::new(&a);
    reg.statement = true;
    malformed(
        reg.verify(Uv::Preferred),
        "fmt none with an attestation statement",
    );
    // Any other format: the statement is ignored (unattested), the credential kept.
    reg.fmt = "packed";
    assert_eq!(reg.verify(Uv::Preferred).unwrap().id, a.id);
    // Not a map, a missing or a repeated entry.
    let built = Reg::new(&a).build();
    let mut e = Encoder::new(Vec::new());
    e.map(2).unwrap();
    e.str("fmt").unwrap().str("none").unwrap();
    e.str("fmt").unwrap().str("none").unwrap();
    let mut forged = built.clone();
    forged.attestation_object = e.into_writer();
    malformed(
        verify_registration(&rp(), &CHALLENGE, Uv::Preferred, &forged),
        "attestation object key appears twice",
    );
    forged.attestation_object = vec![0x80];
    malformed(
        verify_registration(&rp(), &CHALLENGE, Uv::Preferred, &forged),
        "attestation object is not a map",
    );
}

// ---------------------------------------------------------------------------------------------
// COSE keys.

fn with_cose(a: &Authenticator, cose: Vec<u8>) -> Result<NewCredential, WebauthnError> {
    let mut reg = Reg::new(a);
    reg.cose = cose;
    reg.verify(Uv::Preferred)
}

fn p256_xy(a: &Authenticator) -> (Vec<u8>, Vec<u8>) {
    let Signer::Es256(k) = &a.signer else {
        unreachable!()
    };
    let p = k.public_key().as_ref();
    (p[1..33].to_vec(), p[33..65].to_vec())
}

#[test]
fn algorithm_not_offered_is_refused() {
    let a = Authenticator::es256();
    let (x, y) = p256_xy(&a);
    // ES384 (-35) on an EC2 key: a fine key, but not an algorithm doorman offers.
    let es384 = cose_map(&[
        (1, V::I(2)),
        (3, V::I(-35)),
        (-1, V::I(2)),
        (-2, V::B(&x)),
        (-3, V::B(&y)),
    ]);
    assert_eq!(
        with_cose(&a, es384),
        Err(WebauthnError::UnsupportedKey(-35))
    );
}

#[test]
fn key_inconsistent_with_alg_is_refused() {
    let a = Authenticator::es256();
    let (x, y) = p256_xy(&a);
    let cases = [
        // ES256 with kty OKP, with kty RSA, with curve P-384, with a short x, without y.
        cose_map(&[
            (1, V::I(1)),
            (3, V::I(ES256)),
            (-1, V::I(1)),
            (-2, V::B(&x)),
            (-3, V::B(&y)),
        ]),
        cose_map(&[
            (1, V::I(3)),
            (3, V::I(ES256)),
            (-1, V::B(&x)),
            (-2, V::B(&y)),
        ]),
        cose_map(&[
            (1, V::I(2)),
            (3, V::I(ES256)),
            (-1, V::I(2)),
            (-2, V::B(&x)),
            (-3, V::B(&y)),
        ]),
        cose_map(&[
            (1, V::I(2)),
            (3, V::I(ES256)),
            (-1, V::I(1)),
            (-2, V::B(&x[1..])),
            (-3, V::B(&y)),
        ]),
        cose_map(&[
            (1, V::I(2)),
            (3, V::I(ES256)),
            (-1, V::I(1)),
            (-2, V::B(&x)),
        ]),
    ];
    for cose in cases {
        assert_eq!(
            with_cose(&a, cose),
            Err(WebauthnError::UnsupportedKey(ES256))
        );
    }
    // EdDSA on Ed448 (crv 7); RS256 with a 1024-bit modulus.
    let e = Authenticator::ed25519();
    let Signer::Ed25519(k) = &e.signer else {
        unreachable!()
    };
    let ed448 = cose_map(&[
        (1, V::I(1)),
        (3, V::I(EDDSA)),
        (-1, V::I(7)),
        (-2, V::B(k.public_key().as_ref())),
    ]);
    assert_eq!(
        with_cose(&e, ed448),
        Err(WebauthnError::UnsupportedKey(EDDSA))
    );
    let short_rsa = cose_map(&[
        (1, V::I(3)),
        (3, V::I(RS256)),
        (-1, V::B(&[0xC5; 128])),
        (-2, V::B(&[1, 0, 1])),
    ]);
    assert_eq!(
        with_cose(&a, short_rsa),
        Err(WebauthnError::UnsupportedKey(RS256))
    );
}

#[test]
fn point_off_the_curve_is_refused_at_enrolment() {
    let a = Authenticator::es256();
    let (x, mut y) = p256_xy(&a);
    y[31] ^= 1;
    let bad = cose_map(&[
        (1, V::I(2)),
        (3, V::I(ES256)),
        (-1, V::I(1)),
        (-2, V::B(&x)),
        (-3, V::B(&y)),
    ]);
    assert_eq!(
        with_cose(&a, bad),
        Err(WebauthnError::UnsupportedKey(ES256))
    );
}

#[test]
fn duplicate_cose_label_is_refused() {
    let a = Authenticator::es256();
    let (x, y) = p256_xy(&a);
    let dup = cose_map(&[
        (1, V::I(2)),
        (3, V::I(ES256)),
        (3, V::I(ES256)),
        (-1, V::I(1)),
        (-2, V::B(&x)),
        (-3, V::B(&y)),
    ]);
    malformed(with_cose(&a, dup), "COSE key label appears twice");
}

#[test]
fn stored_key_must_match_stored_alg() {
    let a = Authenticator::es256();
    assert_eq!(
        verify_assertion(
            &rp(),
            &CHALLENGE,
            Uv::Preferred,
            &a.cose(),
            EDDSA,
            &Get::new().build(&a)
        ),
        Err(WebauthnError::UnsupportedKey(EDDSA))
    );
}

// ---------------------------------------------------------------------------------------------
// Signatures.

#[test]
fn bad_signature_is_refused() {
    for a in [
        Authenticator::es256(),
        Authenticator::ed25519(),
        Authenticator::rs256(),
    ] {
        let mut assertion = Get::new().build(&a);
        let last = assertion.signature.len() - 1;
        assertion.signature[last] ^= 1;
        assert_eq!(
            verify_assertion(
                &rp(),
                &CHALLENGE,
                Uv::Preferred,
                &a.cose(),
                a.alg(),
                &assertion
            ),
            Err(WebauthnError::BadSignature)
        );
        // A signed field changed after signing: the counter.
        let mut assertion = Get::new().build(&a);
        assertion.authenticator_data[36] ^= 1;
        assert_eq!(
            verify_assertion(
                &rp(),
                &CHALLENGE,
                Uv::Preferred,
                &a.cose(),
                a.alg(),
                &assertion
            ),
            Err(WebauthnError::BadSignature)
        );
    }
}

#[test]
fn signature_by_another_key_is_refused() {
    for (a, other) in [
        (Authenticator::es256(), Authenticator::es256()),
        (Authenticator::ed25519(), Authenticator::ed25519()),
    ] {
        let assertion = Get::new().build(&other);
        assert_eq!(
            verify_assertion(
                &rp(),
                &CHALLENGE,
                Uv::Preferred,
                &a.cose(),
                a.alg(),
                &assertion
            ),
            Err(WebauthnError::BadSignature)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing what the page posts.

#[test]
fn parse_registration_decodes_base64url() {
    let reg = Reg::new(&Authenticator::es256()).build();
    let json = serde_json::json!({
        "id": b64(&reg.raw_id),
        "rawId": b64(&reg.raw_id),
        "clientDataJSON": b64(&reg.client_data_json),
        // Padding is tolerated.
        "attestationObject": base64::engine::general_purpose::URL_SAFE.encode(&reg.attestation_object),
        "transports": ["internal", "hybrid"],
    })
    .to_string();
    let parsed = parse_registration(&json).unwrap();
    assert_eq!(parsed.raw_id, reg.raw_id);
    assert_eq!(parsed.client_data_json, reg.client_data_json);
    assert_eq!(parsed.attestation_object, reg.attestation_object);
    assert_eq!(parsed.transports, vec!["internal", "hybrid"]);
    // The standard alphabet is refused.
    let json = format!(
        r#"{{"rawId":"a+/A","clientDataJSON":"{}","attestationObject":"AA"}}"#,
        b64(b"{}")
    );
    malformed(parse_registration(&json), "rawId");
    malformed(
        parse_registration("{}"),
        "registration is not the expected JSON",
    );
}

#[test]
fn transports_are_a_bounded_hint() {
    let parse = |transports: serde_json::Value| {
        let json = serde_json::json!({
            "rawId": "AQ", "clientDataJSON": "AQ", "attestationObject": "AQ",
            "transports": transports,
        });
        parse_registration(&json.to_string()).unwrap().transports
    };
    assert_eq!(parse(serde_json::json!(["usb", "nfc"])), vec!["usb", "nfc"]);
    assert!(parse(serde_json::json!(vec!["usb"; 9])).is_empty());
    assert_eq!(parse(serde_json::json!(vec!["usb"; 8])).len(), 8);
    assert!(parse(serde_json::json!(["x".repeat(33)])).is_empty());
    assert_eq!(parse(serde_json::json!(["x".repeat(32)])).len(), 1);
    assert!(parse(serde_json::json!(["usb", 3])).is_empty());
    assert!(parse(serde_json::json!("usb")).is_empty());
    assert!(parse(serde_json::Value::Null).is_empty());
}

#[test]
fn oversize_fields_are_refused_before_decoding() {
    // Not base64 at all, but too long: refused for the length, so never decoded.
    let long = "!".repeat(MAX_CLIENT_DATA * 4 / 3 + 5);
    let json = format!(r#"{{"rawId":"AQ","clientDataJSON":"{long}","attestationObject":"AQ"}}"#);
    malformed(parse_registration(&json), "clientDataJSON too large");
    // One character shorter is decoded (and is not base64).
    let json = format!(
        r#"{{"rawId":"AQ","clientDataJSON":"{}","attestationObject":"AQ"}}"#,
        &long[1..]
    );
    malformed(parse_registration(&json), "clientDataJSON");
    // Valid base64 of one byte too many is refused after decoding.
    let json = format!(
        r#"{{"rawId":"AQ","clientDataJSON":"{}","attestationObject":"AQ"}}"#,
        b64(&vec![b' '; MAX_CLIENT_DATA + 1])
    );
    malformed(parse_registration(&json), "clientDataJSON too large");
    let json = format!(
        r#"{{"rawId":"{}","clientDataJSON":"AQ","attestationObject":"AQ"}}"#,
        "!".repeat(MAX_CREDENTIAL_ID * 4 / 3 + 5)
    );
    malformed(parse_registration(&json), "rawId too large");
    let json = format!(
        r#"{{"rawId":"AQ","clientDataJSON":"AQ","attestationObject":"{}"}}"#,
        "!".repeat(MAX_ATTESTATION_OBJECT * 4 / 3 + 5)
    );
    malformed(parse_registration(&json), "attestationObject too large");
    let assertion = |ad: &str, sig: &str, uh: &str| {
        format!(
            r#"{{"rawId":"AQ","clientDataJSON":"AQ","authenticatorData":"{ad}","signature":"{sig}","userHandle":"{uh}"}}"#
        )
    };
    malformed(
        parse_assertion(&assertion(
            &"!".repeat(MAX_AUTHENTICATOR_DATA * 4 / 3 + 5),
            "AQ",
            "AQ",
        )),
        "authenticatorData too large",
    );
    malformed(
        parse_assertion(&assertion(
            "AQ",
            &"!".repeat(MAX_SIGNATURE * 4 / 3 + 5),
            "AQ",
        )),
        "signature too large",
    );
    malformed(
        parse_assertion(&assertion("AQ", "AQ", &b64(&[1; MAX_USER_HANDLE + 1]))),
        "userHandle too large",
    );
    // The whole body is bounded too.
    let huge = format!(r#"{{"pad":"{}"}}"#, " ".repeat(MAX_POSTED_JSON));
    malformed(parse_registration(&huge), "registration too large");
    malformed(parse_assertion(&huge), "assertion too large");
    // verify_* bound what a caller builds by hand.
    let mut reg = Reg::new(&Authenticator::es256()).build();
    reg.attestation_object = vec![0; MAX_ATTESTATION_OBJECT + 1];
    malformed(
        verify_registration(&rp(), &CHALLENGE, Uv::Preferred, &reg),
        "registration too large",
    );
}

#[test]
fn parse_assertion_reads_the_user_handle() {
    let a = Authenticator::es256();
    let built = Get::new().build(&a);
    let mut json = serde_json::json!({
        "rawId": b64(&built.raw_id),
        "clientDataJSON": b64(&built.client_data_json),
        "authenticatorData": b64(&built.authenticator_data),
        "signature": b64(&built.signature),
        "userHandle": b64(b"u123"),
    });
    assert_eq!(parse_assertion(&json.to_string()).unwrap(), built);
    json["userHandle"] = serde_json::Value::Null;
    assert_eq!(
        parse_assertion(&json.to_string()).unwrap().user_handle,
        None
    );
    json.as_object_mut().unwrap().remove("userHandle");
    assert_eq!(
        parse_assertion(&json.to_string()).unwrap().user_handle,
        None
    );
}

// ---------------------------------------------------------------------------------------------
// Options, relying party, counters.

#[test]
fn creation_options_are_webauthn_l2() {
    let user = UserEntity {
        handle: b"u1",
        name: "alice",
        display_name: "Alice A.",
    };
    let exclude = [Allowed {
        id: vec![0xFB, 0xFF],
        transports: vec!["usb".into()],
    }];
    let o = creation_options(&rp(), &user, &CHALLENGE, &exclude, Uv::Required, true);
    assert_eq!(
        o,
        serde_json::json!({
            "rp": {"id": "localhost", "name": "localhost"},
            "user": {"id": "dTE", "name": "alice", "displayName": "Alice A."},
            "challenge": b64(&CHALLENGE),
            "pubKeyCredParams": [
                {"type": "public-key", "alg": -7},
                {"type": "public-key", "alg": -8},
                {"type": "public-key", "alg": -257},
            ],
            "timeout": 300000,
            "attestation": "none",
            "authenticatorSelection": {
                "residentKey": "required",
                "requireResidentKey": true,
                "userVerification": "required",
            },
            "excludeCredentials": [{"type": "public-key", "id": "-_8", "transports": ["usb"]}],
        })
    );
    let o = creation_options(&rp(), &user, &CHALLENGE, &[], Uv::Preferred, false);
    assert_eq!(
        o["authenticatorSelection"],
        serde_json::json!({
            "residentKey": "discouraged",
            "requireResidentKey": false,
            "userVerification": "preferred",
        })
    );
    assert_eq!(o["excludeCredentials"], serde_json::json!([]));
}

#[test]
fn request_options_are_webauthn_l2() {
    let allow = [Allowed {
        id: vec![1, 2, 3],
        transports: vec![],
    }];
    assert_eq!(
        request_options(&rp(), &CHALLENGE, &allow, Uv::Preferred),
        serde_json::json!({
            "challenge": b64(&CHALLENGE),
            "timeout": 300000,
            "rpId": "localhost",
            "allowCredentials": [{"type": "public-key", "id": "AQID", "transports": []}],
            "userVerification": "preferred",
        })
    );
    assert_eq!(
        request_options(&rp(), &CHALLENGE, &[], Uv::Required)["allowCredentials"],
        serde_json::json!([])
    );
}

#[test]
fn counter_ok_table() {
    for (stored, new, ok) in [
        (0, 0, true),
        (0, 1, true),
        (1, 2, true),
        (5, 100, true),
        (1, 1, false),
        (2, 1, false),
        (1, 0, false),
        (u32::MAX, 0, false),
        (u32::MAX, u32::MAX, false),
    ] {
        assert_eq!(counter_ok(stored, new), ok, "{stored} -> {new}");
    }
}

#[test]
fn rp_from_issuer() {
    let rp = |s: &str| Rp::from_issuer(&Url::parse(s).unwrap());
    assert_eq!(
        rp("http://localhost:8080/"),
        Some(Rp {
            id: "localhost".into(),
            origin: "http://localhost:8080".into(),
            name: "localhost".into(),
        })
    );
    let r = rp("https://Auth.Example.COM:8443/doorman/").unwrap();
    assert_eq!(r.id, "auth.example.com");
    assert_eq!(r.origin, "https://auth.example.com:8443");
    // The default port is not written.
    assert_eq!(
        rp("https://auth.example.com:443").unwrap().origin,
        "https://auth.example.com"
    );
    // Internationalised names are A-labels.
    assert_eq!(
        rp("https://bücher.example/").unwrap().id,
        "xn--bcher-kva.example"
    );
    for ip in [
        "http://127.0.0.1:8080/",
        "https://192.168.1.2/",
        "http://[::1]:8080/",
        "https://[2001:db8::1]/",
    ] {
        assert_eq!(rp(ip), None, "{ip}");
    }
    assert_eq!(rp("file:///etc/passwd"), None);
    assert_eq!(rp("mailto:a@example.com"), None);
}

#[test]
fn amr_method_follows_backup_eligibility() {
    assert_eq!(amr_method(true), "swk");
    assert_eq!(amr_method(false), "hwk");
}
