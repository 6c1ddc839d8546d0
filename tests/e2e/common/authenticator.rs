//! An authenticator app, written independently of doorman's `accounts::totp`: RFC 4648
//! base32, RFC 4226 HOTP and RFC 6238 TOTP (HMAC-SHA1, 6 digits, 30 s steps), as the apps
//! users scan doorman's QR code with compute them.

use aws_lc_rs::hmac;

/// The TOTP step length, in seconds.
pub const STEP: i64 = 30;

/// Decodes the key shown on the enrolment page (spaces and padding ignored, any case).
pub fn base32_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u64, 0u32);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = ALPHABET
            .iter()
            .position(|a| *a == c.to_ascii_uppercase())
            .unwrap_or_else(|| panic!("not base32: {s:?}")) as u64;
        buf = (buf << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    out
}

/// RFC 4226: the 6-digit code for `counter`.
pub fn hotp(secret: &[u8], counter: u64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = hmac::sign(&key, &counter.to_be_bytes());
    let h = tag.as_ref();
    let offset = usize::from(h[19] & 0x0f);
    let bin = (u32::from(h[offset] & 0x7f) << 24)
        | (u32::from(h[offset + 1]) << 16)
        | (u32::from(h[offset + 2]) << 8)
        | u32::from(h[offset + 3]);
    format!("{:06}", bin % 1_000_000)
}

/// The code an authenticator shows at unix time `now`.
pub fn totp_at(secret: &[u8], now: i64) -> String {
    hotp(secret, now.div_euclid(STEP) as u64)
}
