//! A real relying party: the `openidconnect` crate discovers doorman, builds the authorization
//! request (PKCE S256 + nonce), exchanges the code with client_secret_basic, verifies the
//! id_token against the JWKS (signature, issuer, audience, nonce, at_hash) and calls userinfo.

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreProviderMetadata,
    CoreResponseType, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AccessTokenHash, AdditionalClaims, AuthenticationFlow, AuthorizationCode, Client, ClientId,
    ClientSecret, CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet,
    IdTokenFields, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope,
    StandardErrorResponse, StandardTokenResponse, TokenResponse, UserInfoClaims,
};
use serde::{Deserialize, Serialize};

use crate::common::*;

/// The `groups` claim, which the core types do not know.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Groups {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    groups: Option<Vec<String>>,
}
impl AdditionalClaims for Groups {}

type TokenFields = IdTokenFields<
    Groups,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type Tokens = StandardTokenResponse<TokenFields, CoreTokenType>;

/// `CoreClient` with the `groups` claim, as built from discovery.
type RpClient = Client<
    Groups,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    Tokens,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

fn http_client() -> reqwest::Client {
    // Following redirects would make the RP an SSRF vector; the library's docs insist.
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn discover(server: &TestServer, http: &reqwest::Client) -> RpClient {
    let metadata =
        CoreProviderMetadata::discover_async(IssuerUrl::new(server.base.clone()).unwrap(), http)
            .await
            .expect("discovery with the openidconnect crate");
    assert_eq!(metadata.issuer().as_str(), server.base);
    RpClient::from_provider_metadata(
        metadata,
        ClientId::new(RP.into()),
        Some(ClientSecret::new(RP_SECRET.into())),
    )
    .set_redirect_uri(RedirectUrl::new(RP_REDIRECT.into()).unwrap())
}

/// One sign-in as the library would run it; returns the verified claims and userinfo.
async fn library_flow(
    server: &TestServer,
    client: &RpClient,
    http: &reqwest::Client,
    browser: &Browser,
    scopes: &[&str],
) -> (
    openidconnect::IdTokenClaims<Groups, CoreGenderClaim>,
    UserInfoClaims<Groups, CoreGenderClaim>,
) {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut auth = client.authorize_url(
        AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
        CsrfToken::new_random,
        Nonce::new_random,
    );
    for s in scopes {
        auth = auth.add_scope(Scope::new(s.to_string()));
    }
    let (url, csrf, nonce) = auth.set_pkce_challenge(challenge).url();

    // The browser: the login page the first time, SSO afterwards.
    let first = browser.get(url.as_str()).await;
    let back = match first.status {
        200 => {
            let done = browser.submit_login(&first, ALICE, ALICE_PASSWORD).await;
            assert_eq!(done.status, 303, "{}", done.text);
            done.redirect()
        }
        302 => first.redirect(),
        s => panic!("authorize answered {s}: {}", first.text),
    };
    assert!(back.as_str().starts_with(RP_REDIRECT), "{back}");
    let q = query(&back);
    assert_eq!(q.get("state"), Some(csrf.secret()), "state round-trips");
    assert_eq!(q.get("iss"), Some(&server.base), "RFC 9207 iss");
    let code = q.get("code").expect("a code").clone();

    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(http)
        .await
        .expect("code exchange with the library (client_secret_basic)");
    let id_token = tokens.id_token().expect("an id_token");
    let verifier = client.id_token_verifier();
    let claims = id_token
        .claims(&verifier, &nonce)
        .expect("the id_token verifies: signature (JWKS), issuer, audience, nonce, expiry")
        .clone();
    let at_hash = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(claims.access_token_hash(), Some(&at_hash), "at_hash");
    assert_eq!(claims.issuer().as_str(), server.base);
    assert_eq!(claims.audiences().len(), 1);
    assert_eq!(claims.audiences()[0].as_str(), RP);

    let userinfo: UserInfoClaims<Groups, CoreGenderClaim> = client
        .user_info(
            tokens.access_token().clone(),
            Some(claims.subject().clone()),
        )
        .unwrap()
        .request_async(http)
        .await
        .expect("userinfo through the library, for the same subject");
    (claims, userinfo)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openidconnect_crate_signs_in_verifies_and_reads_userinfo() {
    let server = TestServer::start("").await;
    let http = http_client();
    let client = discover(&server, &http).await;
    let browser = Browser::new();

    let (claims, userinfo) =
        library_flow(&server, &client, &http, &browser, &["email", "profile"]).await;
    assert_eq!(
        claims.email().map(|e| e.as_str()),
        Some(ALICE_EMAIL),
        "email in the id_token with scope email"
    );
    assert_eq!(
        claims.preferred_username().map(|u| u.as_str()),
        Some(ALICE),
        "preferred_username with scope profile"
    );
    assert!(
        claims.additional_claims().groups.is_none(),
        "no groups without the groups scope"
    );
    assert_eq!(userinfo.email().map(|e| e.as_str()), Some(ALICE_EMAIL));
    assert_eq!(
        userinfo.preferred_username().map(|u| u.as_str()),
        Some(ALICE)
    );
    assert_eq!(userinfo.email_verified(), Some(true));

    // Second sign-in (SSO) with the groups scope.
    let (claims2, userinfo2) = library_flow(&server, &client, &http, &browser, &["groups"]).await;
    assert_eq!(claims2.subject(), claims.subject(), "same user, same sub");
    assert_eq!(
        claims2.additional_claims().groups,
        Some(vec!["admins".to_string()])
    );
    assert_eq!(
        userinfo2.additional_claims().groups,
        Some(vec!["admins".to_string()])
    );
    assert!(
        claims2.email().is_none(),
        "no email without the email scope"
    );
    assert!(userinfo2.email().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openidconnect_crate_refreshes_and_works_as_a_public_client() {
    let server = TestServer::start("").await;
    let http = http_client();
    let browser = Browser::new();

    // A public client: no secret, PKCE, the client_id in the body.
    let metadata =
        CoreProviderMetadata::discover_async(IssuerUrl::new(server.base.clone()).unwrap(), &http)
            .await
            .unwrap();
    let spa = RpClient::from_provider_metadata(metadata, ClientId::new(SPA.into()), None)
        .set_redirect_uri(RedirectUrl::new(SPA_REDIRECT.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, nonce) = spa
        .authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("offline_access".into()))
        .set_pkce_challenge(challenge)
        .url();
    let back = browser.login(url.as_str(), ALICE, ALICE_PASSWORD).await;
    let q = query(&back);
    assert_eq!(q.get("state"), Some(csrf.secret()));
    let tokens = spa
        .exchange_code(AuthorizationCode::new(q["code"].clone()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("a public client redeems with PKCE and no secret");
    let verifier = spa.id_token_verifier();
    let claims = tokens
        .id_token()
        .unwrap()
        .claims(&verifier, &nonce)
        .unwrap()
        .clone();
    let refresh = tokens.refresh_token().expect("offline_access").clone();

    // Refresh through the library; the new id_token verifies and keeps sub and auth_time.
    let refreshed = spa
        .exchange_refresh_token(&refresh)
        .unwrap()
        .request_async(&http)
        .await
        .expect("refresh with the library");
    let new_claims = refreshed
        .id_token()
        .expect("an id_token on refresh")
        .claims(&verifier, |_: Option<&Nonce>| Ok(()))
        .expect("the refreshed id_token verifies")
        .clone();
    assert_eq!(new_claims.subject(), claims.subject());
    assert_eq!(new_claims.auth_time(), claims.auth_time());
    assert_ne!(
        refreshed.refresh_token().unwrap().secret(),
        refresh.secret(),
        "rotated"
    );
    // The spent refresh token is refused through the library too.
    let err = spa
        .exchange_refresh_token(&refresh)
        .unwrap()
        .request_async(&http)
        .await;
    assert!(err.is_err());
}
