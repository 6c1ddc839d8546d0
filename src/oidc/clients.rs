//! The client registry and client authentication (RFC 6749 §2.3, OIDC Core §9): Basic and post
//! with secrets compared as SHA-256 digests in constant time, and `none` for public clients.

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::error::OAuthError;
use crate::config::{AuthMethod, ClientConfig};
use crate::secrets::{digest, digest_eq};

pub struct Clients {
    by_id: HashMap<String, ClientConfig>,
}

/// What the request offered to authenticate the client, parsed by the web layer.
#[derive(Debug, Default, Clone)]
pub struct ClientCredentials {
    /// The raw `Authorization: Basic` value (after "Basic ").
    pub basic: Option<String>,
    pub form_client_id: Option<String>,
    pub form_client_secret: Option<String>,
}

impl ClientCredentials {
    /// The client id the request presented (Basic first, else the form), for the log: a client
    /// id is not a secret. Control characters are replaced and the length is bounded, so a
    /// hostile value cannot forge or flood log lines.
    pub fn presented_client_id(&self) -> Option<String> {
        let id = match &self.basic {
            Some(b) => decode_basic(b).and_then(|(ids, _)| ids.into_iter().last()),
            None => self.form_client_id.clone(),
        }?;
        Some(
            id.chars()
                .take(100)
                .map(|c| if c.is_control() { '?' } else { c })
                .collect(),
        )
    }
}

impl Clients {
    pub fn new(clients: &[ClientConfig]) -> Clients {
        Clients {
            by_id: clients.iter().map(|c| (c.id.clone(), c.clone())).collect(),
        }
    }

    pub fn get(&self, id: &str) -> Option<&ClientConfig> {
        self.by_id.get(id)
    }

    pub fn all(&self) -> impl Iterator<Item = &ClientConfig> {
        self.by_id.values()
    }

    /// Authenticates the client. Every failure is `invalid_client` (401 upstream) and says no
    /// more than needed.
    pub fn authenticate(&self, creds: &ClientCredentials) -> Result<&ClientConfig, OAuthError> {
        if let Some(basic) = &creds.basic {
            let (id_variants, secret_variants) = decode_basic(basic)
                .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials"))?;
            if creds.form_client_secret.is_some() {
                return Err(OAuthError::invalid_request(
                    "use one client authentication method, not two",
                ));
            }
            let client = id_variants
                .iter()
                .find_map(|id| self.get(id))
                .ok_or_else(|| OAuthError::invalid_client("client authentication failed"))?;
            if creds
                .form_client_id
                .as_deref()
                .is_some_and(|f| f != client.id)
            {
                return Err(OAuthError::invalid_client(
                    "client_id does not match the credentials",
                ));
            }
            if client
                .token_endpoint_auth_method
                .is_some_and(|m| m != AuthMethod::ClientSecretBasic)
            {
                return Err(OAuthError::invalid_client(
                    "this client is not registered for client_secret_basic",
                ));
            }
            return check_secret(client, &secret_variants);
        }
        let id = creds
            .form_client_id
            .as_deref()
            .ok_or_else(|| OAuthError::invalid_client("client authentication is required"))?;
        let client = self
            .get(id)
            .ok_or_else(|| OAuthError::invalid_client("client authentication failed"))?;
        match (&creds.form_client_secret, client.public) {
            (None, true) => Ok(client),
            (Some(_), true) => Err(OAuthError::invalid_client("a public client has no secret")),
            (None, false) => Err(OAuthError::invalid_client(
                "client authentication is required",
            )),
            (Some(secret), false) => {
                if client
                    .token_endpoint_auth_method
                    .is_some_and(|m| m != AuthMethod::ClientSecretPost)
                {
                    return Err(OAuthError::invalid_client(
                        "this client is not registered for client_secret_post",
                    ));
                }
                check_secret(client, std::slice::from_ref(secret))
            }
        }
    }
}

fn check_secret<'a>(
    client: &'a ClientConfig,
    candidates: &[String],
) -> Result<&'a ClientConfig, OAuthError> {
    let Some(expected) = &client.secret_hash else {
        return Err(OAuthError::invalid_client("client authentication failed"));
    };
    // Every candidate is compared, so timing does not tell which form matched.
    let mut ok = false;
    for c in candidates {
        ok |= digest_eq(&digest(c), expected);
    }
    if ok {
        Ok(client)
    } else {
        Err(OAuthError::invalid_client("client authentication failed"))
    }
}

/// Decodes `Basic base64(id:secret)`. RFC 6749 §2.3.1 form-encodes id and secret before base64;
/// Cloudflare Access does not, so both the decoded and the raw values are candidates.
fn decode_basic(value: &str) -> Option<(Vec<String>, Vec<String>)> {
    let raw = STANDARD.decode(value.trim()).ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (id, secret) = raw.split_once(':')?;
    let variants = |s: &str| {
        let mut v = vec![s.to_string()];
        let decoded: String = url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .map(|(_, v)| v.into_owned())
            .next()
            .unwrap_or_default();
        if decoded != s {
            v.push(decoded);
        }
        v
    };
    Some((variants(id), variants(secret)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{IdTokenClaims, Lifetimes};
    use std::time::Duration;

    fn client(id: &str, secret: Option<&str>, method: Option<AuthMethod>) -> ClientConfig {
        let d = Duration::from_secs(60);
        ClientConfig {
            id: id.into(),
            name: None,
            secret_hash: secret.map(digest),
            public: secret.is_none(),
            redirect_uris: vec!["https://rp.example/cb".into()],
            post_logout_redirect_uris: vec![],
            require_pkce: secret.is_none(),
            scopes: None,
            allowed_groups: None,
            refresh_tokens: false,
            id_token_claims: IdTokenClaims::Scoped,
            allowed_origins: vec![],
            token_endpoint_auth_method: method,
            lifetimes: Lifetimes {
                access_token: d,
                id_token: d,
                refresh_token_idle: d,
                refresh_token_max: d,
            },
            plex_token_claim: None,
            access_token_format: crate::config::AccessTokenFormat::Opaque,
            introspect_any: false,
            require_second_factor: false,
            roles_claim: None,
            claims: vec![],
            redirect_uri_match: crate::config::RedirectUriMatch::Exact,
            backchannel_logout_uri: None,
            backchannel_logout_session_required: false,
            allow_http_redirect_uris: false,
        }
    }

    fn basic(id: &str, secret: &str) -> Option<String> {
        Some(STANDARD.encode(format!("{id}:{secret}")))
    }

    #[test]
    fn basic_accepts_encoded_and_raw_secrets() {
        let secret = "a+b/c%d=e:f-0123456789";
        let clients = Clients::new(&[client("rp", Some(secret), None)]);
        let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        for offered in [encoded.as_str(), secret] {
            let creds = ClientCredentials {
                basic: basic("rp", offered),
                ..Default::default()
            };
            assert!(clients.authenticate(&creds).is_ok(), "{offered}");
        }
        let bad = ClientCredentials {
            basic: basic("rp", "wrong-secret-0123456789"),
            ..Default::default()
        };
        assert_eq!(
            clients.authenticate(&bad).unwrap_err().code,
            "invalid_client"
        );
    }

    #[test]
    fn the_presented_client_id_is_readable_for_the_log() {
        let creds = ClientCredentials {
            basic: basic("my%20app", "secret"),
            ..Default::default()
        };
        assert_eq!(creds.presented_client_id().as_deref(), Some("my app"));
        let creds = ClientCredentials {
            form_client_id: Some("evil\naudit outcome=success".into()),
            ..Default::default()
        };
        assert_eq!(
            creds.presented_client_id().as_deref(),
            Some("evil?audit outcome=success")
        );
        assert_eq!(ClientCredentials::default().presented_client_id(), None);
    }

    #[test]
    fn post_and_method_restrictions() {
        let clients = Clients::new(&[
            client("any", Some("secret-secret-123"), None),
            client(
                "basic-only",
                Some("secret-secret-123"),
                Some(AuthMethod::ClientSecretBasic),
            ),
            client("spa", None, Some(AuthMethod::None)),
        ]);
        let post = |id: &str, s: Option<&str>| ClientCredentials {
            basic: None,
            form_client_id: Some(id.into()),
            form_client_secret: s.map(Into::into),
        };
        assert!(clients
            .authenticate(&post("any", Some("secret-secret-123")))
            .is_ok());
        assert!(clients
            .authenticate(&post("basic-only", Some("secret-secret-123")))
            .is_err());
        assert!(
            clients.authenticate(&post("any", None)).is_err(),
            "confidential client without a secret"
        );
        assert!(clients.authenticate(&post("spa", None)).is_ok());
        assert!(clients.authenticate(&post("spa", Some("x"))).is_err());
        assert!(clients
            .authenticate(&post("nobody", Some("secret-secret-123")))
            .is_err());
        let mismatch = ClientCredentials {
            basic: basic("any", "secret-secret-123"),
            form_client_id: Some("spa".into()),
            form_client_secret: None,
        };
        assert!(clients.authenticate(&mismatch).is_err());
    }
}
