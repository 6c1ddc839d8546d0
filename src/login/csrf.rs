//! CSRF tokens for doorman's forms: an HMAC of the purpose (e.g. the flow id) and the browser
//! cookie, under a server key shared by all replicas through the store. A form posted from
//! another site lacks the SameSite=Lax browser cookie, and a token copied from another browser
//! does not match this browser's cookie (login CSRF).

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

    pub fn token(&self, purpose: &str, browser: &str) -> String {
        self.mac(purpose, browser)
            .map(|m| URL_SAFE_NO_PAD.encode(m.finalize().into_bytes()))
            .unwrap_or_default()
    }

    /// Constant-time check.
    pub fn verify(&self, purpose: &str, browser: &str, token: &str) -> bool {
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
        let t = k.token("flow:abc", "browser-1");
        assert!(k.verify("flow:abc", "browser-1", &t));
        assert!(!k.verify("flow:abc", "browser-2", &t));
        assert!(!k.verify("flow:abd", "browser-1", &t));
        assert!(!k.verify("flow:abc", "browser-1", "garbage!"));
        assert!(!k.verify("flow:abc", "browser-1", ""));
    }
}
