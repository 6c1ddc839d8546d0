"""A Python web app's sign-in with authlib's OpenID Connect client, as Flask/FastAPI/Django apps
do it: discovery, an authorization URL with state, nonce and PKCE S256, the code exchanged at the
token endpoint (client_secret_basic), then the id_token validated by authlib's CodeIDToken
rules (signature against the JWKS, iss, aud, exp, iat, nonce, at_hash) and userinfo read.

The browser's part (the login page, the password form) is done with a requests session that
keeps cookies and does not follow redirects.

Input (environment): ISSUER, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, USERNAME, PASSWORD.
Output: one JSON line {"claims": {...}, "userinfo": {...}}; any failure exits non-zero.
"""

import html
import json
import os
import re
import secrets
import sys
import warnings

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session

with warnings.catch_warnings():
    # authlib.jose is deprecated in favour of joserfc, but it is what authlib's own OIDC
    # integrations still validate id_tokens with.
    warnings.simplefilter("ignore")
    from authlib.jose import JsonWebKey, jwt
    from authlib.oidc.core import CodeIDToken

env = os.environ
issuer = env["ISSUER"]
meta = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=10).json()
if meta["issuer"] != issuer:
    sys.exit(f"discovery names issuer {meta['issuer']!r}, not {issuer!r}")

client = OAuth2Session(
    env["CLIENT_ID"],
    env["CLIENT_SECRET"],
    scope="openid profile email",
    redirect_uri=env["REDIRECT_URI"],
    code_challenge_method="S256",
    token_endpoint_auth_method="client_secret_basic",
)
nonce = generate_token(20)
code_verifier = generate_token(48)
auth_url, state = client.create_authorization_url(
    meta["authorization_endpoint"], nonce=nonce, code_verifier=code_verifier
)

# --- the browser ---
browser = requests.Session()
page = browser.get(auth_url, allow_redirects=False, timeout=10)
if page.status_code != 200:
    sys.exit(f"authorize answered {page.status_code}: {page.text}")
text = page.text
pw = text.index('name="password"')
form = text[text.rindex("<form", 0, pw) : text.index("</form>", pw)]


def attr(tag, name):
    m = re.search(f' {name}="([^"]*)"', tag)
    return html.unescape(m.group(1)) if m else None


def field(name):
    at = form.index(f'name="{name}"')
    return attr(form[form.rindex("<", 0, at) : form.index(">", at) + 1], "value")


action = requests.compat.urljoin(auth_url, attr(form[: form.index(">") + 1], "action"))
done = browser.post(
    action,
    data={
        "flow": field("flow"),
        "csrf": field("csrf"),
        "username": env["USERNAME"],
        "password": env["PASSWORD"],
    },
    allow_redirects=False,
    timeout=10,
)
if done.status_code != 303:
    sys.exit(f"sign-in answered {done.status_code}: {done.text}")
callback = done.headers["location"]

# --- the app's callback ---
token = client.fetch_token(
    meta["token_endpoint"],
    authorization_response=callback,
    state=state,
    code_verifier=code_verifier,
)
jwks = JsonWebKey.import_key_set(requests.get(meta["jwks_uri"], timeout=10).json())
claims = jwt.decode(
    token["id_token"],
    jwks,
    claims_cls=CodeIDToken,
    claims_options={"iss": {"essential": True, "values": [issuer]}},
    claims_params={
        "nonce": nonce,
        "client_id": env["CLIENT_ID"],
        "access_token": token["access_token"],
    },
)
claims.validate(leeway=5)
# A wrong nonce must fail the same validation (the check is real, not skipped).
forged = jwt.decode(
    token["id_token"],
    jwks,
    claims_cls=CodeIDToken,
    claims_options={"iss": {"essential": True, "values": [issuer]}},
    claims_params={"nonce": secrets.token_hex(8), "client_id": env["CLIENT_ID"]},
)
try:
    forged.validate(leeway=5)
    sys.exit("a wrong nonce was accepted")
except Exception:  # authlib raises InvalidClaimError
    pass
userinfo = client.get(meta["userinfo_endpoint"], timeout=10).json()
print(json.dumps({"claims": dict(claims), "userinfo": userinfo}))
