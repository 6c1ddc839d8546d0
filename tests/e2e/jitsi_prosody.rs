//! The Prosody-rule verifier (common/prosody.rs) against the golden token of jitsi.md §6, which
//! the real Lua verifier accepted, and against each negative case of §6: if the stand-in were
//! lenient, the bridge tests that rely on it would prove nothing.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha512;

use crate::common::prosody::{self, sign_hs256_raw, Key, ProsodyConfig};

/// S2's JWT_APP_SECRET: used as a string, never decoded.
const SECRET: &str = "NmjPGpn+NjTe7oQUV9YqfaXiBULcsxYj";
/// Accepted by jitsi-meet's luajwtjitsi for any now in [NBF, EXP).
const GOLDEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhdWQiOiJqaXRzaSIsImlzcyI6ImppdHNpIiwic3ViIjoiKiIsInJvb20iOiJteXJvb20iLCJuYmYiOjE3MDAwMDAwMDAsImV4cCI6NDEwMjQ0NDgwMCwiY29udGV4dCI6eyJ1c2VyIjp7ImlkIjoidTEiLCJuYW1lIjoiQW5uIEV4YW1wbGUiLCJlbWFpbCI6ImFubkBleGFtcGxlLm9yZyJ9fX0.jv3a1Wm36I-rL6qwIj77XUMCo8E-PTCQQq4TsY4-4Mk";
const NBF: i64 = 1_700_000_000;
const EXP: i64 = 4_102_444_800;
const NOW: i64 = 1_800_000_000;
const NODE: &str = "myroom";
const MUC: &str = "muc.meet.jitsi";
const HS256: &str = r#"{"alg":"HS256","typ":"JWT"}"#;
const B64URL_ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn docker() -> ProsodyConfig {
    ProsodyConfig::docker("jitsi", SECRET)
}

fn with_domain_verification() -> ProsodyConfig {
    ProsodyConfig {
        enable_domain_verification: true,
        ..docker()
    }
}

/// The golden token's claims, to vary one thing at a time.
fn golden_claims() -> Value {
    json!({
        "aud": "jitsi",
        "iss": "jitsi",
        "sub": "*",
        "room": "myroom",
        "nbf": NBF,
        "exp": EXP,
        "context": {"user": {"id": "u1", "name": "Ann Example", "email": "ann@example.org"}},
    })
}

fn sign(claims: &Value) -> String {
    sign_hs256_raw(HS256, &claims.to_string(), SECRET.as_bytes())
}

/// The golden claims with `key` set to `value` (or removed, for `None`).
fn varied(key: &str, value: Option<Value>) -> Value {
    let mut c = golden_claims();
    match value {
        Some(v) => c[key] = v,
        None => {
            c.as_object_mut().unwrap().remove(key);
        }
    }
    c
}

fn accepts(token: &str, cfg: &ProsodyConfig, node: &str) -> bool {
    prosody::verify(token, cfg, NOW, node, MUC).is_ok()
}

#[track_caller]
fn assert_rejected(token: &str, cfg: &ProsodyConfig, node: &str, why: &str) {
    match prosody::verify(token, cfg, NOW, node, MUC) {
        Ok(c) => panic!("accepted ({why}): {c:?}"),
        Err(e) => eprintln!("rejected as expected ({why}): {e}"),
    }
}

#[test]
fn jitsi_verifier_accepts_the_golden_token_in_its_window() {
    for now in [NBF, NBF + 1, NOW, EXP - 1] {
        let claims = prosody::verify(GOLDEN, &docker(), now, NODE, MUC)
            .unwrap_or_else(|e| panic!("golden token rejected at {now}: {e}"));
        assert_eq!(claims["room"], "myroom");
        assert_eq!(claims["context"]["user"]["name"], "Ann Example");
        prosody::verify(GOLDEN, &with_domain_verification(), now, NODE, MUC)
            .unwrap_or_else(|e| panic!("golden token rejected with domain verification: {e}"));
    }
    for now in [NBF - 1, EXP, EXP + 1] {
        assert!(
            prosody::verify(GOLDEN, &docker(), now, NODE, MUC).is_err(),
            "accepted outside its window at {now}"
        );
    }
    // Signing the golden claims the same way gives a token the verifier accepts too, so the
    // negative cases below differ from an accepted token in one thing only.
    assert!(accepts(&sign(&golden_claims()), &docker(), NODE));
}

#[test]
fn jitsi_verifier_rejects_every_single_byte_change_of_the_golden_token() {
    let original: Vec<&str> = GOLDEN.split('.').collect();
    let original_sig = URL_SAFE_NO_PAD.decode(original[2]).unwrap();
    let replacements: Vec<u8> = B64URL_ALPHABET.bytes().chain(*b".=+/ ").collect();
    let (mut tried, mut same_bytes) = (0, 0);
    for i in 0..GOLDEN.len() {
        for &c in &replacements {
            if GOLDEN.as_bytes()[i] == c {
                continue;
            }
            let mut bytes = GOLDEN.as_bytes().to_vec();
            bytes[i] = c;
            let token = String::from_utf8(bytes).unwrap();
            // A change in the unused low bits of the signature's last character decodes to
            // the same signature (Lua's basexx ignores those bits): the same token to Prosody.
            let parts: Vec<&str> = token.split('.').collect();
            if parts.len() == 3
                && parts[0] == original[0]
                && parts[1] == original[1]
                && prosody::verify(&token, &docker(), NOW, NODE, MUC).is_ok()
            {
                let sig = base64::engine::GeneralPurpose::new(
                    &base64::alphabet::URL_SAFE,
                    base64::engine::GeneralPurposeConfig::new()
                        .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone)
                        .with_decode_allow_trailing_bits(true),
                )
                .decode(parts[2])
                .unwrap();
                assert_eq!(sig, original_sig, "accepted a different signature: {token}");
                assert_eq!(
                    i,
                    GOLDEN.len() - 1,
                    "only the last character has spare bits"
                );
                same_bytes += 1;
                continue;
            }
            tried += 1;
            assert!(
                prosody::verify(&token, &docker(), NOW, NODE, MUC).is_err(),
                "accepted after changing byte {i} to {:?}: {token}",
                c as char
            );
        }
    }
    // 32 signature bytes in 43 characters: the last one carries 4 bits and 2 spare ones.
    assert_eq!(
        same_bytes, 3,
        "the spare-bit variants of the last character"
    );
    assert!(tried > GOLDEN.len() * 60, "{tried}");
}

#[test]
fn jitsi_verifier_rejects_the_wrong_key() {
    let claims = golden_claims().to_string();
    let wrong = sign_hs256_raw(HS256, &claims, b"NmjPGpn+NjTe7oQUV9YqfaXiBULcsxYk");
    assert_rejected(&wrong, &docker(), NODE, "wrong secret");
    // The secret looks like base64 (24 bytes), but Prosody uses the string's bytes as the key.
    let decoded = STANDARD.decode(SECRET).unwrap();
    assert_eq!(decoded.len(), 24);
    let decoded_key = sign_hs256_raw(HS256, &claims, &decoded);
    assert_rejected(&decoded_key, &docker(), NODE, "base64-decoded secret");
    // And the verifier keyed with the decoded secret rejects the golden token.
    let decoded_cfg = ProsodyConfig {
        key: Key::Hs256(String::from_utf8_lossy(&decoded).into_owned()),
        ..docker()
    };
    assert_rejected(
        GOLDEN,
        &decoded_cfg,
        NODE,
        "verifier keyed with the decoded secret",
    );
}

#[test]
fn jitsi_verifier_rejects_bad_headers() {
    let claims = golden_claims().to_string();
    for (header, why) in [
        (r#"{"alg":"HS256","typ":"jwt"}"#, "typ jwt"),
        (r#"{"alg":"HS256","typ":"at+jwt"}"#, "typ at+jwt"),
        (r#"{"alg":"HS256"}"#, "no typ"),
        (r#"{"alg":"HS256","typ":null}"#, "typ null"),
        (r#"{"typ":"JWT"}"#, "no alg"),
        (r#"{"alg":"hs256","typ":"JWT"}"#, "alg hs256"),
        (r#"{"alg":"none","typ":"JWT"}"#, "alg none"),
        (r#"{"alg":"RS256","typ":"JWT","kid":"k"}"#, "alg RS256"),
        (r#""HS256""#, "header not an object"),
    ] {
        let token = sign_hs256_raw(header, &claims, SECRET.as_bytes());
        assert_rejected(&token, &docker(), NODE, why);
    }
    // HS512, properly signed with the right secret, is still not the configured algorithm.
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"HS512","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(&claims)
    );
    let mut mac = <Hmac<Sha512> as Mac>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    let hs512 = format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    );
    assert_rejected(&hs512, &docker(), NODE, "HS512");
    // An unsigned token ("alg":"none", empty signature) has an empty third segment.
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(&claims)
    );
    assert_rejected(&unsigned, &docker(), NODE, "alg none, no signature");
    // The right header with padding, or base64 (not base64url) characters.
    let padded = format!("{GOLDEN}=");
    assert_rejected(&padded, &docker(), NODE, "padding");
    assert_rejected(&format!("{GOLDEN}.x"), &docker(), NODE, "four segments");
    // A header that only the RS256 configuration would accept.
    let rs = ProsodyConfig::rs256("jitsi", json!({"keys": []}));
    assert_rejected(GOLDEN, &rs, NODE, "HS256 token, RS256 configuration");
}

#[test]
fn jitsi_verifier_checks_exp_and_nbf_without_leeway() {
    let at = |key: &str, v: Value| sign(&varied(key, Some(v)));
    assert_rejected(&at("exp", json!(NOW)), &docker(), NODE, "exp == now");
    assert_rejected(&at("exp", json!(NOW - 1)), &docker(), NODE, "exp < now");
    assert!(accepts(&at("exp", json!(NOW + 1)), &docker(), NODE));
    assert_rejected(&at("nbf", json!(NOW + 1)), &docker(), NODE, "nbf > now");
    assert!(accepts(&at("nbf", json!(NOW)), &docker(), NODE));
    // Present means a JSON number: a string fails, a float passes.
    assert_rejected(
        &at("exp", json!(EXP.to_string())),
        &docker(),
        NODE,
        "string exp",
    );
    assert_rejected(
        &at("nbf", json!(NBF.to_string())),
        &docker(),
        NODE,
        "string nbf",
    );
    assert_rejected(&at("exp", Value::Null), &docker(), NODE, "null exp");
    assert!(accepts(
        &at("exp", json!(EXP as f64 + 0.5)),
        &docker(),
        NODE
    ));
    assert_rejected(
        &at("exp", json!(NOW as f64 - 0.5)),
        &docker(),
        NODE,
        "float exp in the past",
    );
    // Both optional (doorman always sets them; Prosody does not insist).
    let mut none = golden_claims();
    none.as_object_mut().unwrap().remove("exp");
    none.as_object_mut().unwrap().remove("nbf");
    assert!(accepts(&sign(&none), &docker(), NODE));
    // iat is ignored, even in the future.
    assert!(accepts(&at("iat", json!(EXP + 100)), &docker(), NODE));
}

#[test]
fn jitsi_verifier_checks_iss_and_aud_against_their_lists() {
    let at = |key: &str, v: Option<Value>| sign(&varied(key, v));
    assert_rejected(
        &at("iss", Some(json!("other"))),
        &docker(),
        NODE,
        "wrong iss",
    );
    assert_rejected(
        &at("iss", Some(json!("Jitsi"))),
        &docker(),
        NODE,
        "iss case",
    );
    assert_rejected(&at("iss", None), &docker(), NODE, "no iss");
    let any_issuer = ProsodyConfig {
        accepted_issuers: vec!["*".into()],
        ..docker()
    };
    assert!(accepts(&at("iss", Some(json!("other"))), &any_issuer, NODE));
    assert_rejected(&at("iss", None), &any_issuer, NODE, "no iss, even with *");

    // aud: default {'*'} accepts any value, even an array; a list wants an exact string.
    let listed = ProsodyConfig {
        accepted_audiences: vec!["jitsi".into()],
        ..docker()
    };
    assert!(accepts(GOLDEN, &listed, NODE));
    assert!(accepts(&at("aud", Some(json!(["jitsi"]))), &docker(), NODE));
    assert_rejected(
        &at("aud", Some(json!(["jitsi"]))),
        &listed,
        NODE,
        "array aud against a list",
    );
    assert_rejected(&at("aud", Some(json!("other"))), &listed, NODE, "wrong aud");
    assert_rejected(&at("aud", None), &docker(), NODE, "no aud, even with *");
    assert_rejected(&at("aud", None), &listed, NODE, "no aud");
}

#[test]
fn jitsi_verifier_checks_the_room() {
    let at = |v: Option<Value>| sign(&varied("room", v));
    assert_rejected(&at(None), &docker(), NODE, "no room");
    let optional = ProsodyConfig {
        require_room_claim: false,
        ..docker()
    };
    assert!(
        accepts(&at(None), &optional, NODE),
        "no room claim, not required"
    );
    assert_rejected(GOLDEN, &docker(), "otherroom", "another room");
    assert_rejected(
        &at(Some(json!("otherroom"))),
        &docker(),
        NODE,
        "another room claim",
    );
    assert_rejected(GOLDEN, &docker(), "myroom2", "a room that starts like it");
    // Claims are lowercased like Lua's string.lower: ASCII only.
    assert!(accepts(&at(Some(json!("MyRoom"))), &docker(), NODE));
    assert!(accepts(
        &at(Some(json!("%D1%82%D0%B5%D1%81%D1%82"))),
        &docker(),
        "%d1%82%d0%b5%d1%81%d1%82"
    ));
    assert_rejected(
        &at(Some(json!("ТЕСТ"))),
        &docker(),
        "тест",
        "uppercase Cyrillic (string.lower is ASCII-only)",
    );
    assert!(accepts(&at(Some(json!("тест"))), &docker(), "тест"));
    // "*" opens every room; a tenant room `[tenant]room` matches its room part.
    assert!(accepts(&at(Some(json!("*"))), &docker(), "anything"));
    assert!(accepts(GOLDEN, &docker(), "[acme]myroom"));
    assert_rejected(GOLDEN, &docker(), "[acme]otherroom", "tenant, other room");
}

#[test]
fn jitsi_verifier_with_domain_verification() {
    let on = with_domain_verification();
    let at = |room: &str, sub: &str| {
        let mut c = golden_claims();
        c["room"] = json!(room);
        c["sub"] = json!(sub);
        sign(&c)
    };
    // `<claim|node>@<prefix>.<sub>`, sub "*" meaning the MUC domain.
    assert!(accepts(&at("myroom", "*"), &on, NODE));
    assert!(accepts(&at("myroom", "meet.jitsi"), &on, NODE));
    assert!(accepts(&at("MyRoom", "meet.jitsi"), &on, NODE));
    assert_rejected(
        &at("myroom", "meet.example.com"),
        &on,
        NODE,
        "sub is the public host, not the XMPP domain",
    );
    assert_rejected(&at("myroom", "*"), &on, "otherroom", "another room");
    assert!(accepts(&at("*", "*"), &on, "otherroom"));
    assert!(accepts(&at("*", "meet.jitsi"), &on, "otherroom"));
    let mut no_sub = golden_claims();
    no_sub.as_object_mut().unwrap().remove("sub");
    assert_rejected(&sign(&no_sub), &on, NODE, "no sub");
    // The prefix is Prosody's muc_mapper_domain_prefix.
    let conference = ProsodyConfig {
        muc_domain_prefix: "conference".into(),
        ..with_domain_verification()
    };
    assert_rejected(
        &at("myroom", "meet.jitsi"),
        &conference,
        NODE,
        "prefix conference, room on muc.",
    );
    // Tenants: `[tenant]room`, sub the tenant or "*".
    assert!(accepts(&at("myroom", "*"), &on, "[acme]myroom"));
    assert!(accepts(&at("myroom", "acme"), &on, "[acme]myroom"));
    assert!(accepts(&at("*", "acme"), &on, "[acme]myroom"));
    assert_rejected(&at("myroom", "other"), &on, "[acme]myroom", "other tenant");
    assert_rejected(&at("other", "acme"), &on, "[acme]myroom", "other room");
}
