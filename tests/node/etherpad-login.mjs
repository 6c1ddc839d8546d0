// Etherpad's ep_openid_connect sign-in, done the way the plugin does it with openid-client v5:
// discovery from `issuer`, a Client with client_id / client_secret (client_secret_basic, the
// library's default) and redirect_uris [base_url + "ep_openid_connect/callback"], an
// authorization URL with scope, state, nonce and PKCE S256, the callback (code exchange and
// id_token checks: signature against the JWKS, iss, aud, nonce, exp), then userinfo, which is
// where the plugin reads `sub` (the Etherpad username) and `name` (the display name).
//
// The browser's part (the login page, the password form) is done with fetch, keeping cookies.
//
// Input (environment): SETTINGS = the ep_openid_connect JSON object exactly as printed by
// `doorman integrate etherpad`, USERNAME, PASSWORD. Output: one JSON line
// {"userinfo": {...}, "id_token_claims": {...}} on stdout; any failure exits non-zero.
import { Issuer, generators } from "openid-client";

const settings = JSON.parse(process.env.SETTINGS);
const scope = (settings.scope ?? ["openid"]).join(" ");
let base = settings.base_url;
if (!base.endsWith("/")) base += "/";
const callbackUrl = new URL("ep_openid_connect/callback", base).toString();

const issuer = await Issuer.discover(settings.issuer);
const client = new issuer.Client({
  client_id: settings.client_id,
  client_secret: settings.client_secret,
  response_types: ["code"],
  redirect_uris: [callbackUrl],
});
const checks = {
  nonce: generators.nonce(),
  scope,
  state: generators.state(),
  code_verifier: generators.codeVerifier(),
};
const authUrl = client.authorizationUrl({
  nonce: checks.nonce,
  scope,
  state: checks.state,
  code_challenge: generators.codeChallenge(checks.code_verifier),
  code_challenge_method: "S256",
});

// --- the browser: a cookie jar and the login form ---
const jar = new Map();
const keep = (res) => {
  for (const c of res.headers.getSetCookie()) {
    const [pair] = c.split(";");
    const i = pair.indexOf("=");
    jar.set(pair.slice(0, i).trim(), pair.slice(i + 1).trim());
  }
};
const cookieHeader = () => [...jar].map(([k, v]) => `${k}=${v}`).join("; ");
const unescape = (s) =>
  s.replaceAll("&quot;", '"').replaceAll("&#x2f;", "/").replaceAll("&#x2F;", "/")
    .replaceAll("&lt;", "<").replaceAll("&gt;", ">").replaceAll("&#39;", "'").replaceAll("&amp;", "&");
const attr = (tag, name) => {
  const m = tag.match(new RegExp(` ${name}="([^"]*)"`));
  return m ? unescape(m[1]) : undefined;
};

let res = await fetch(authUrl, { redirect: "manual", headers: { cookie: cookieHeader() } });
keep(res);
const html = await res.text();
if (res.status !== 200) throw new Error(`authorize answered ${res.status}: ${html}`);
const pw = html.indexOf('name="password"');
const formAt = html.lastIndexOf("<form", pw);
const form = html.slice(formAt, html.indexOf("</form>", pw));
const action = attr(form.slice(0, form.indexOf(">") + 1), "action");
const field = (name) => {
  const at = form.indexOf(`name="${name}"`);
  const tag = form.slice(form.lastIndexOf("<", at), form.indexOf(">", at) + 1);
  return attr(tag, "value");
};
const body = new URLSearchParams({
  flow: field("flow"),
  csrf: field("csrf"),
  username: process.env.USERNAME,
  password: process.env.PASSWORD,
});
res = await fetch(new URL(action, authUrl), {
  method: "POST",
  redirect: "manual",
  headers: { cookie: cookieHeader(), "content-type": "application/x-www-form-urlencoded" },
  body,
});
keep(res);
if (res.status !== 303) throw new Error(`sign-in answered ${res.status}: ${await res.text()}`);
const back = res.headers.get("location");
if (!back.startsWith(callbackUrl)) throw new Error(`sent to ${back}, not the callback`);

// --- the plugin's callback handler ---
const params = client.callbackParams(back);
const tokenset = await client.callback(callbackUrl, params, checks);
const userinfo = await client.userinfo(tokenset);
process.stdout.write(
  JSON.stringify({ userinfo, id_token_claims: tokenset.claims() }) + "\n",
);
