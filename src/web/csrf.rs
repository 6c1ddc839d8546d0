//! CSRF tokens for doorman's forms: an HMAC of the purpose (e.g. the flow id) and the browser
//! cookie, under a server key shared by all replicas through the store. A form posted from
//! another site lacks the SameSite=Lax browser cookie, and a token copied from another browser
//! does not match this browser's cookie (login CSRF).
//!
//! The browser cookie itself is minted here (`random.MAC(random)`): a value doorman did not
//! mint is never adopted, so a page on a sibling subdomain cannot choose it for the victim, and
//! no CSRF token verifies against it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub struct CsrfKey([u8; 32]);

impl CsrfKey {
    pub fn new(key: [u8; 32]) -> CsrfKey {
        CsrfKey(key)
    }

    fn mac(&self, purpose: &str, browser: &str) -> Option<Hmac<Sha256>> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).ok()?;
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(browser.as_bytes());
        Some(mac)
    }

    fn browser_mac(&self, random: &str) -> Option<Vec<u8>> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).ok()?;
        mac.update(b"browser\0");
        mac.update(random.as_bytes());
        Some(mac.finalize().into_bytes().to_vec())
    }

    /// A new browser-binding cookie value.
    pub fn mint_browser(&self) -> String {
        let random = crate::secrets::random_token();
        let mac = self
            .browser_mac(&random)
            .map(|m| URL_SAFE_NO_PAD.encode(m))
            .unwrap_or_default();
        format!("{random}.{mac}")
    }

    /// Whether `value` is a browser cookie this key minted (constant-time MAC check).
    pub fn minted(&self, value: &str) -> bool {
        let Some((random, mac)) = value.split_once('.') else {
            return false;
        };
        let (Ok(mac), Ok(mut check)) = (
            URL_SAFE_NO_PAD.decode(mac),
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0),
        ) else {
            return false;
        };
        check.update(b"browser\0");
        check.update(random.as_bytes());
        random.len() >= 32 && check.verify_slice(&mac).is_ok()
    }

    pub fn token(&self, purpose: &str, browser: &str) -> String {
        self.mac(purpose, browser)
            .map(|m| URL_SAFE_NO_PAD.encode(m.finalize().into_bytes()))
            .unwrap_or_default()
    }

    /// Constant-time check; only for a browser cookie doorman minted.
    pub fn verify(&self, purpose: &str, browser: &str, token: &str) -> bool {
        if !self.minted(browser) {
            return false;
        }
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(token) else {
            return false;
        };
        self.mac(purpose, browser)
            .is_some_and(|m| m.verify_slice(&bytes).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_to_purpose_and_browser() {
        let k = CsrfKey::new([7; 32]);
        let (b1, b2) = (k.mint_browser(), k.mint_browser());
        let t = k.token("flow:abc", &b1);
        assert!(k.verify("flow:abc", &b1, &t));
        assert!(!k.verify("flow:abc", &b2, &t));
        assert!(!k.verify("flow:abd", &b1, &t));
        assert!(!k.verify("flow:abc", &b1, "garbage!"));
        assert!(!k.verify("flow:abc", &b1, ""));
    }

    #[test]
    fn only_minted_browser_values_count() {
        let k = CsrfKey::new([7; 32]);
        let minted = k.mint_browser();
        assert!(k.minted(&minted));
        let chosen = "planted-by-an-attacker-0123456789abcdef";
        assert!(!k.minted(chosen));
        let t = k.token("flow:abc", chosen);
        assert!(
            !k.verify("flow:abc", chosen, &t),
            "a token for a planted value"
        );
        let (random, _) = minted.split_once('.').unwrap();
        assert!(!k.minted(&format!("{random}.AAAA")));
        assert!(!CsrfKey::new([8; 32]).minted(&minted), "another key");
    }
}
