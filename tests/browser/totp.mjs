// Second factors in a real Chromium, against doorman started by a Rust test
// (tests/e2e/totp_browser.rs). The script is the authenticator app: it reads the secret from the
// enrolment page and computes RFC 6238 codes itself (node:crypto HMAC-SHA1), at the server's
// time, which the test passes in (the server's clock is frozen there). One JSON argument:
//   {"base": "http://127.0.0.1:P", "authorize_url": "...", "rp_prefix": "http://127.0.0.1:Q/cb",
//    "user": "alice", "password": "...", "server_time": 1700000000,
//    "mode": "enrol" | "required", "screenshots": "dir", "timeout_ms": 30000}
// mode "enrol": sign in at /account/second-factor, enrol (code of the previous step), ten
// recovery codes, sign out, then the authorize URL: password + code (this step) -> the RP; the
// same code again in another sign-in is refused, a recovery code signs in, and the same recovery
// code is refused the next time (then the next step's code signs in).
// mode "required": the authorize URL, password, the enrolment page inside the sign-in, code,
// recovery codes, Continue -> the RP.
// Prints one JSON line: {"codes": [RP codes in order], "urls", "refusals", "recoveryCount",
// "screenshots", "steps", "scriptErrors", "httpErrors"} and exits non-zero (with "error") when
// anything fails.
import { createHmac } from 'node:crypto';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.DOORMAN_CHROMIUM || '/usr/bin/chromium';

const args = JSON.parse(process.argv[2] || '{}');
const { base, authorize_url: authorizeUrl, rp_prefix: rpPrefix, user, password, mode = 'enrol' } = args;
const serverTime = Number(args.server_time);
const timeout = args.timeout_ms || 30000;
const shotsDir = args.screenshots;
if (!base || !authorizeUrl || !rpPrefix || !user || !password || !serverTime || !['enrol', 'required'].includes(mode)) {
  console.log(JSON.stringify({ error: 'usage: totp.mjs \'{"base":..,"authorize_url":..,"rp_prefix":..,"user":..,"password":..,"server_time":..,"mode":"enrol|required","screenshots":dir}\'' }));
  process.exit(2);
}

// ---- the authenticator app: RFC 4648 base32, RFC 4226 HOTP, RFC 6238 TOTP ----
function base32Decode(s) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  const out = [];
  for (const c of s.replace(/[\s=]/g, '').toUpperCase()) {
    const v = alphabet.indexOf(c);
    if (v < 0) throw new Error(`not base32: ${s}`);
    value = (value << 5) | v;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((value >>> bits) & 0xff);
    }
  }
  return Buffer.from(out);
}
function hotp(secret, counter) {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(counter));
  const h = createHmac('sha1', secret).update(msg).digest();
  const o = h[19] & 0x0f;
  const bin = ((h[o] & 0x7f) << 24) | (h[o + 1] << 16) | (h[o + 2] << 8) | h[o + 3];
  return String(bin % 1000000).padStart(6, '0');
}
// The code `delta` steps from the server's (frozen) time.
const totp = (secret, delta) => hotp(secret, Math.floor(serverTime / 30) + delta);
// RFC 6238 appendix B (SHA-1), last six digits: the app itself is right.
if (hotp(Buffer.from('12345678901234567890'), Math.floor(59 / 30)) !== '287082'
  || hotp(Buffer.from('12345678901234567890'), Math.floor(1111111109 / 30)) !== '081804') {
  console.log(JSON.stringify({ error: 'the script\'s own TOTP does not match RFC 6238' }));
  process.exit(1);
}

const steps = [];
const step = (s) => steps.push(s);
const onRp = (u) => u.startsWith(rpPrefix);

const profile = mkdtempSync(join(tmpdir(), 'doorman-chromium-'));
let context;
const result = { codes: [], urls: [], refusals: [], recoveryCount: null, screenshots: [], steps };
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 900, height: 760 },
  });
  context.setDefaultTimeout(timeout);
  const page = context.pages()[0] || (await context.newPage());
  const scriptErrors = [];
  const httpErrors = [];
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) scriptErrors.push(`${page.url()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => scriptErrors.push(`${page.url()}: ${e}`));
  context.on('response', (r) => { if (r.status() >= 400) httpErrors.push({ url: r.url(), status: r.status() }); });

  // Full-page screenshots at 390 and 1280 px, then back to the default size.
  const shoot = async (name) => {
    if (!shotsDir) return;
    mkdirSync(shotsDir, { recursive: true });
    for (const width of [390, 1280]) {
      await page.setViewportSize({ width, height: width === 390 ? 844 : 800 });
      const path = join(shotsDir, `second-factor-${name}-${width}.png`);
      await page.screenshot({ path, fullPage: true });
      result.screenshots.push(path);
    }
    await page.setViewportSize({ width: 900, height: 760 });
  };
  // Submits the form around `selector` and waits for the next document.
  const submitIn = async (formSelector) => {
    await Promise.all([
      page.waitForNavigation({ waitUntil: 'load' }),
      page.click(`${formSelector} button:not([type=button]), ${formSelector} input[type=submit]`),
    ]);
  };
  const typePassword = async () => {
    await page.fill('#username', user);
    await page.fill('#password', password);
    await submitIn(`form[action="${base}/login/password"]`);
    step(`password typed, now on ${page.url()}`);
  };
  const codeForm = `form[action="${base}/login/code"]`;
  const enrolForm = `form[action="${base}/login/enrol"]`;
  const typeCode = async (formSelector, code) => {
    await page.fill(`${formSelector} input[name=code]`, code);
    await submitIn(formSelector);
  };
  // The code page of `user` is showing.
  const expectCodePage = async () => {
    await page.waitForSelector(codeForm);
    const account = (await page.textContent('strong.account'))?.trim();
    if (account !== user) throw new Error(`the code page names ${account}, not ${user}`);
    if (await page.$('input[name=password]')) throw new Error('the code page asks for the password');
  };
  const expectRefused = async (what) => {
    const status = (await page.textContent('#status.error'))?.trim();
    if (!status || !status.includes('That code is not right.')) throw new Error(`${what}: no refusal shown (${status}) on ${page.url()}`);
    if (onRp(page.url())) throw new Error(`${what}: went on to the RP`);
    result.refusals.push(what);
    step(`${what}: refused`);
  };
  const landedOnRp = async (what) => {
    await page.waitForURL((u) => onRp(u.href), { timeout });
    const url = page.url();
    const code = new URL(url).searchParams.get('code');
    if (!code) throw new Error(`${what}: no code in ${url}`);
    result.codes.push(code);
    result.urls.push(url);
    step(`${what}: on the RP`);
  };
  // Reads the secret and recovery codes.
  const readSecret = async () => {
    await page.waitForSelector('div.qr svg');
    const uri = (await page.textContent('code.otpauth-uri'))?.trim() || '';
    const grouped = (await page.textContent('code.totp-secret'))?.trim() || '';
    if (!/^[A-Z2-7]{4}( [A-Z2-7]{1,4})*$/.test(grouped)) throw new Error(`secret not in groups of four: ${grouped}`);
    const b32 = grouped.replace(/ /g, '');
    if (!uri.startsWith('otpauth://totp/') || !uri.includes(`secret=${b32}`)) throw new Error(`otpauth URI ${uri}`);
    return base32Decode(b32);
  };
  const readRecovery = async () => {
    const codes = (await page.$$eval('div.recovery-codes code', (els) => els.map((e) => e.textContent.trim())));
    result.recoveryCount = codes.length;
    const link = await page.$('a.download[download="doorman-recovery-codes.txt"]');
    if (!link) throw new Error('no download link');
    if (codes.length !== 10) throw new Error(`${codes.length} recovery codes`);
    return codes;
  };
  const signOut = async () => {
    await page.goto(`${base}/logout`, { waitUntil: 'load' });
    await submitIn(`form[action="${base}/logout"]`);
    const body = await page.textContent('body');
    if (!/signed out/i.test(body)) throw new Error(`not signed out: ${body}`);
    step('signed out');
  };

  if (mode === 'enrol') {
    // Sign in at the account page, then enrol.
    const resp = await page.goto(`${base}/account/second-factor`, { waitUntil: 'load' });
    step(`opened ${page.url()}: ${resp && resp.status()}`);
    if (!resp || resp.status() !== 200) throw new Error(`/account/second-factor answered ${resp && resp.status()}`);
    await typePassword();
    const secret = await readSecret();
    await shoot('enrol');
    await typeCode(enrolForm, totp(secret, -1));
    const recovery = await readRecovery();
    await shoot('recovery');
    step('enrolled');
    await signOut();

    // Password + code to the RP.
    await page.goto(authorizeUrl, { waitUntil: 'load' });
    await typePassword();
    await expectCodePage();
    await shoot('code');
    await typeCode(codeForm, totp(secret, 0));
    await landedOnRp('password + code');
    await signOut();

    // The same code again: refused; a recovery code instead: in.
    await page.goto(authorizeUrl, { waitUntil: 'load' });
    await typePassword();
    await expectCodePage();
    await typeCode(codeForm, totp(secret, 0));
    await expectRefused('a replayed code');
    await typeCode(codeForm, recovery[0]);
    await landedOnRp('a recovery code');
    await signOut();

    // The same recovery code again: refused; the next step's code: in.
    await page.goto(authorizeUrl, { waitUntil: 'load' });
    await typePassword();
    await expectCodePage();
    await typeCode(codeForm, recovery[0]);
    await expectRefused('a used recovery code');
    await typeCode(codeForm, totp(secret, 1));
    await landedOnRp('the next code');
  } else {
    // A user without a factor where one is required: enrolment inside the sign-in.
    await page.goto(authorizeUrl, { waitUntil: 'load' });
    await typePassword();
    const secret = await readSecret();
    await typeCode(enrolForm, totp(secret, 0));
    await readRecovery();
    step('enrolled inside the sign-in');
    await submitIn(`form[action="${base}/login/continue"]`);
    await landedOnRp('after enrolling');
  }

  result.body = (await page.textContent('body').catch(() => null)) || null;
  result.scriptErrors = scriptErrors;
  result.httpErrors = httpErrors;
  console.log(JSON.stringify(result));
  await context.close();
  rmSync(profile, { recursive: true, force: true });
  process.exit(0);
} catch (e) {
  result.error = String(e && e.stack ? e.stack : e);
  try {
    const pages = context ? context.pages() : [];
    result.openPages = pages.map((p) => p.url());
    if (pages[0]) result.lastBody = (await pages[0].textContent('body').catch(() => null));
  } catch (_) { /* ignore */ }
  console.log(JSON.stringify(result));
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
  process.exit(1);
}
