//! The discovery document (OpenID Connect Discovery 1.0 §3), built once at start from the same
//! path constants the router uses.

use serde_json::{json, Value};

use super::claims::{SUPPORTED_CLAIMS, SUPPORTED_SCOPES};
use super::paths;

pub fn document(issuer: &str) -> Value {
    let at = |p: &str| format!("{issuer}{p}");
    let mut claims: Vec<&str> = SUPPORTED_CLAIMS.to_vec();
    claims.extend(["email_verified", "groups"]);
    json!({
        "issuer": issuer,
        "authorization_endpoint": at(paths::AUTHORIZE),
        "token_endpoint": at(paths::TOKEN),
        "userinfo_endpoint": at(paths::USERINFO),
        "jwks_uri": at(paths::JWKS),
        "revocation_endpoint": at(paths::REVOKE),
        "introspection_endpoint": at(paths::INTROSPECT),
        "end_session_endpoint": at(paths::LOGOUT),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": SUPPORTED_SCOPES,
        "claims_supported": claims,
        "code_challenge_methods_supported": ["S256"],
        // Basic first: Apache's mod_auth_openidc takes the first one listed.
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "prompt_values_supported": ["none", "login"],
        "acr_values_supported": super::authorize::ACR_VALUES,
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "authorization_response_iss_parameter_supported": true,
        "frontchannel_logout_supported": false,
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn endpoints_live_under_the_issuer_path() {
        let d = super::document("https://example.com/auth");
        assert_eq!(d["token_endpoint"], "https://example.com/auth/token");
        assert_eq!(d["response_types_supported"], serde_json::json!(["code"]));
        assert_eq!(d["id_token_signing_alg_values_supported"][0], "RS256");
        assert_eq!(
            d["token_endpoint_auth_methods_supported"][0],
            "client_secret_basic"
        );
        assert_eq!(d["backchannel_logout_supported"], true);
        assert_eq!(d["backchannel_logout_session_supported"], true);
    }
}
