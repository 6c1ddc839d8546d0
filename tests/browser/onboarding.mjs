// Onboarding in a real Chromium (issue 11), against doorman started by a Rust test
// (tests/e2e/onboarding_browser.rs): invite links, /account and /admin. Each browser context
// is one person's browser (its own cookies). One JSON argument:
//   {"base": "http://127.0.0.1:P", "scenario": "...", "authorize_url": "...",
//    "rp_prefix": "http://127.0.0.1:Q/cb", "server_time": 1700000000, "screenshots": "dir",
//    "state_file": "path.json", "timeout_ms": 30000, ...the scenario's own keys}
// Scenarios:
//   "invite" {link, user, password}: open the invite link, create the account, enrol TOTP
//     (the script computes the codes from the secret on the page, at the server's frozen
//     time), recovery codes, Continue -> /account; /admin (the invite made an admin); the
//     used-up link again; sign out; the authorize URL: password + code -> the RP.
//   "password" {user, password, new_password}: contexts A and B signed in as `user`; A changes
//     the password on /account; B's next /account is the sign-in page; A stays signed in; B
//     signs in with the new password (the old one is refused).
//   "end-session" {user, password}: contexts A and B; A ends the other session from its list;
//     B is signed out, A is not.
//   "disable-1" {user, password}: the user's context signs in at the authorize URL -> the RP;
//     its cookies are saved to state_file (the test redeems the code meanwhile).
//   "disable-2" {user, admin, admin_password}: the user's context (from state_file) is signed
//     in; the admin disables the user on /admin; the user's next /account is the sign-in page.
//   "forbidden" {user, password, admin, admin_password}: a non-admin gets the 403 page on
//     /admin; an admin gets the Users page.
//   "screenshots-1" {link, user, password}: the invite form; the invite redeemed with TOTP in
//     context A (its cookies saved to state_file); context B signs in to the RP with password +
//     code (the test redeems the code meanwhile, so the RP keeps a refresh token).
//   "screenshots-2" {link, admin_pages: [{name, path}]}: A (from state_file): /account (factor,
//     two sessions, one application), /admin, the other admin pages named, the used-up link.
// Screenshots (full page, 390 and 1280 px) go to `screenshots`/NAME-{390,1280}.png.
// Prints one JSON line: {"scenario", "steps", "seen": {...what the pages showed}, "codes",
// "screenshots", "scriptErrors", "httpErrors"} and exits non-zero (with "error") on failure.
import { createHmac } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.DOORMAN_CHROMIUM || '/usr/bin/chromium';
const SCENARIOS = ['invite', 'password', 'end-session', 'disable-1', 'disable-2', 'forbidden', 'screenshots-1', 'screenshots-2'];

const args = JSON.parse(process.argv[2] || '{}');
const { base, scenario, authorize_url: authorizeUrl, rp_prefix: rpPrefix } = args;
const serverTime = Number(args.server_time);
const timeout = args.timeout_ms || 30000;
const shotsDir = args.screenshots;
if (!base || !SCENARIOS.includes(scenario)) {
  console.log(JSON.stringify({ error: `usage: onboarding.mjs '{"base":..,"scenario":"${SCENARIOS.join('|')}",..}'` }));
  process.exit(2);
}

// ---- the authenticator app (as in totp.mjs): RFC 4648 base32, RFC 4226 HOTP, RFC 6238 ----
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
const totp = (secret, delta) => {
  if (!serverTime) throw new Error('no server_time');
  return hotp(secret, Math.floor(serverTime / 30) + delta);
};

const steps = [];
const step = (s) => steps.push(s);
const seen = {};
const result = { scenario, steps, seen, codes: [], screenshots: [] };
const scriptErrors = [];
const httpErrors = [];
const onRp = (u) => rpPrefix && u.startsWith(rpPrefix);
const url = (path) => `${base}${path}`;

let browser;
try {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });

  // One person's browser: its own cookies, watched for script errors and failed answers.
  const open = async (name, options = {}) => {
    const context = await browser.newContext({ viewport: { width: 900, height: 760 }, ...options });
    context.setDefaultTimeout(timeout);
    const page = await context.newPage();
    page.on('console', (m) => {
      if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) scriptErrors.push(`${name} ${page.url()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => scriptErrors.push(`${name} ${page.url()}: ${e}`));
    context.on('response', (r) => {
      if (r.status() >= 400 && !r.url().endsWith('/favicon.ico')) httpErrors.push({ who: name, url: r.url(), status: r.status() });
    });
    return { name, context, page };
  };

  const text = async (page, selector) => ((await page.textContent(selector)) || '').replace(/\s+/g, ' ').trim();
  const heading = (page) => text(page, 'h1');
  const expectHeading = async (who, want) => {
    const h = await heading(who.page);
    if (h !== want) throw new Error(`${who.name}: the page says "${h}", not "${want}", on ${who.page.url()}: ${await text(who.page, 'main')}`);
  };
  // Clicks the submit button of the form around `formSelector`; waits for the next document.
  const submitIn = async (page, formSelector) => {
    await Promise.all([
      page.waitForNavigation({ waitUntil: 'load' }),
      page.click(`${formSelector} button[type=submit]`),
    ]);
  };
  const goto = async (who, path) => {
    const resp = await who.page.goto(path.startsWith('http') ? path : url(path), { waitUntil: 'load' });
    return resp ? resp.status() : 0;
  };
  const shoot = async (who, name) => {
    if (!shotsDir) return;
    mkdirSync(shotsDir, { recursive: true });
    for (const width of [390, 1280]) {
      await who.page.setViewportSize({ width, height: width === 390 ? 844 : 800 });
      const path = join(shotsDir, `${name}-${width}.png`);
      await who.page.screenshot({ path, fullPage: true });
      result.screenshots.push(path);
    }
    await who.page.setViewportSize({ width: 900, height: 760 });
  };
  // Fills the sign-in page that is showing.
  const typePassword = async (who, user, password) => {
    await expectHeading(who, 'Sign in');
    await who.page.fill('#username', user);
    await who.page.fill('#password', password);
    await submitIn(who.page, `form[action="${url('/login/password')}"]`);
    step(`${who.name}: password typed, now on ${who.page.url()}`);
  };
  // Opens `path` signed out: the sign-in page, then back to `path`.
  const signInAt = async (who, path, user, password) => {
    await goto(who, path);
    await typePassword(who, user, password);
    if (who.page.url() !== url(path)) throw new Error(`${who.name}: signed in but on ${who.page.url()}, not ${url(path)}`);
  };
  // What /account shows now (or that it shows the sign-in page instead).
  const account = async (who) => {
    await goto(who, '/account');
    const h = await heading(who.page);
    if (h !== 'Your account') return { heading: h, signInForm: Boolean(await who.page.$(`form[action="${url('/login/password')}"]`)) };
    return {
      heading: h,
      username: await text(who.page, 'dd.username'),
      factor: await text(who.page, 'strong.factor-status'),
      recoveryLeft: (await who.page.$('.recovery-left')) ? await text(who.page, '.recovery-left') : null,
      sessions: await who.page.$$eval('li.session', (els) => els.length),
      otherSessions: await who.page.$$eval('li.session:not(.current)', (els) => els.length),
      applications: await who.page.$$eval('li.application strong', (els) => els.map((e) => e.textContent.trim())),
    };
  };
  const notice = async (who) => text(who.page, 'p.notice');
  const signOut = async (who) => {
    await goto(who, '/logout');
    await submitIn(who.page, `form[action="${url('/logout')}"]`);
    const body = await text(who.page, 'body');
    if (!/signed out/i.test(body)) throw new Error(`${who.name}: not signed out: ${body}`);
    step(`${who.name}: signed out`);
  };
  const landedOnRp = async (who, what) => {
    await who.page.waitForURL((u) => onRp(u.href), { timeout });
    const landed = who.page.url();
    const code = new URL(landed).searchParams.get('code');
    if (!code) throw new Error(`${what}: no code in ${landed}`);
    result.codes.push({ what, code, url: landed });
    step(`${who.name}: ${what}: on the RP`);
  };
  const codeForm = `form[action="${url('/login/code')}"]`;
  const enrolForm = `form[action="${url('/login/enrol')}"]`;
  const typeCode = async (who, formSelector, code) => {
    await who.page.fill(`${formSelector} input[name=code]`, code);
    await submitIn(who.page, formSelector);
  };
  const readSecret = async (who) => {
    await who.page.waitForSelector('div.qr svg');
    const grouped = await text(who.page, 'code.totp-secret');
    if (!/^[A-Z2-7]{4}( [A-Z2-7]{1,4})*$/.test(grouped)) throw new Error(`secret not in groups of four: ${grouped}`);
    return base32Decode(grouped.replace(/ /g, ''));
  };

  // The invite form: username, password twice, then TOTP on the way and the recovery codes;
  // Continue lands on /account. Returns the TOTP secret.
  const redeemWithTotp = async (who, link, user, password, shotName) => {
    const status = await goto(who, link);
    seen.inviteStatus = status;
    await expectHeading(who, 'Create your account');
    if (shotName) await shoot(who, shotName);
    await who.page.fill('#username', user);
    await who.page.fill('#password', password);
    await who.page.fill('#password_confirm', password);
    await submitIn(who.page, 'form[action*="/invite/"]');
    step(`${who.name}: account created, now on ${who.page.url()}`);
    await expectHeading(who, 'Set up a second factor');
    seen.enrolFor = await text(who.page, 'strong.account');
    seen.skipLink = await who.page.getAttribute('a.skip', 'href');
    const secret = await readSecret(who);
    await typeCode(who, enrolForm, totp(secret, -1));
    await expectHeading(who, 'Your recovery codes');
    seen.recoveryCodes = await who.page.$$eval('div.recovery-codes code', (els) => els.length);
    await submitIn(who.page, `form[action="${url('/login/continue')}"]`);
    seen.afterEnrolment = who.page.url();
    step(`${who.name}: enrolled, now on ${who.page.url()}`);
    return secret;
  };
  // Signs in at the authorize URL with password + code, to the RP.
  const signInToRp = async (who, user, password, secret, delta, what) => {
    await goto(who, authorizeUrl);
    await typePassword(who, user, password);
    await who.page.waitForSelector(codeForm);
    const named = await text(who.page, 'strong.account');
    if (named !== user) throw new Error(`the code page names ${named}, not ${user}`);
    await typeCode(who, codeForm, totp(secret, delta));
    await landedOnRp(who, what);
  };
  // The <li> of `user` on /admin.
  const adminRow = async (who, user) => {
    const li = `li.user[data-user="${user}"]`;
    if (!(await who.page.$(li))) return null;
    return {
      groups: await text(who.page, `${li} dd.groups`),
      secondFactor: await text(who.page, `${li} dd.second-factor`),
      disabled: await text(who.page, `${li} dd.disabled-status`),
      badges: await who.page.$$eval(`${li} .badge`, (els) => els.map((e) => e.textContent.trim())),
    };
  };

  if (scenario === 'invite') {
    const { link, user, password } = args;
    const a = await open('invitee');
    const secret = await redeemWithTotp(a, link, user, password, null);
    seen.account = await account(a);
    // The invite made an admin: the Users page lists the new account with the invite's groups.
    await goto(a, '/admin');
    await expectHeading(a, 'Users');
    seen.adminRow = await adminRow(a, user);
    // The link is used up now.
    seen.goneStatus = await goto(a, link);
    seen.goneHeading = await heading(a.page);
    seen.goneText = await text(a.page, 'main');
    await signOut(a);
    seen.afterSignOut = await account(a);
    await signInToRp(a, user, password, secret, 0, 'password + code');
  } else if (scenario === 'password') {
    const { user, password, new_password: newPassword } = args;
    const a = await open('A');
    const b = await open('B');
    await signInAt(a, '/account', user, password);
    await signInAt(b, '/account', user, password);
    seen.aBefore = await account(a);
    await a.page.fill('#current_password', password);
    await a.page.fill('#new_password', newPassword);
    await a.page.fill('#new_password_confirm', newPassword);
    await submitIn(a.page, `form[action="${url('/account/password')}"]`);
    seen.aNotice = await notice(a);
    seen.aUrl = a.page.url();
    seen.b = await account(b);
    seen.a = await account(a);
    // B signs in again: the old password is refused, the new one works.
    await typePassword(b, user, password);
    seen.oldPasswordHeading = await heading(b.page);
    seen.oldPasswordError = (await b.page.$('#status.error')) ? await text(b.page, '#status.error') : null;
    await typePassword(b, user, newPassword);
    seen.bAgain = await account(b);
  } else if (scenario === 'end-session') {
    const { user, password } = args;
    const a = await open('A');
    const b = await open('B');
    await signInAt(a, '/account', user, password);
    await signInAt(b, '/account', user, password);
    seen.aBefore = await account(a);
    seen.bBefore = await account(b);
    await submitIn(a.page, `li.session:not(.current) form[action="${url('/account/sessions/end')}"]`);
    seen.aNotice = await notice(a);
    seen.aNoOthers = await text(a.page, '#sessions');
    seen.b = await account(b);
    seen.a = await account(a);
  } else if (scenario === 'disable-1') {
    const { user, password } = args;
    const u = await open('user');
    await goto(u, authorizeUrl);
    await typePassword(u, user, password);
    await landedOnRp(u, 'the user signs in to the RP');
    await u.context.storageState({ path: args.state_file });
  } else if (scenario === 'disable-2') {
    const { user, admin, admin_password: adminPassword } = args;
    const u = await open('user', { storageState: args.state_file });
    seen.userBefore = await account(u);
    const ad = await open('admin');
    await signInAt(ad, '/admin', admin, adminPassword);
    await expectHeading(ad, 'Users');
    seen.rowBefore = await adminRow(ad, user);
    await submitIn(ad.page, `li.user[data-user="${user}"] form[action$="/disable"]`);
    seen.adminUrl = ad.page.url();
    seen.adminNotice = await notice(ad);
    seen.rowAfter = await adminRow(ad, user);
    seen.userAfter = await account(u);
  } else if (scenario === 'forbidden') {
    const { user, password, admin, admin_password: adminPassword } = args;
    const u = await open('user');
    await signInAt(u, '/admin', user, password);
    seen.userHeading = await heading(u.page);
    seen.userText = await text(u.page, 'main');
    seen.userStatus = await goto(u, '/admin');
    seen.userHeadingAgain = await heading(u.page);
    const ad = await open('admin');
    await signInAt(ad, '/admin', admin, adminPassword);
    seen.adminHeading = await heading(ad.page);
  } else if (scenario === 'screenshots-1') {
    const { link, user, password } = args;
    const a = await open('A');
    const secret = await redeemWithTotp(a, link, user, password, 'invite');
    const b = await open('B', { userAgent: 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1' });
    await signInToRp(b, user, password, secret, 0, 'the second browser signs in to the RP');
    await a.context.storageState({ path: args.state_file });
  } else if (scenario === 'screenshots-2') {
    const { link } = args;
    const a = await open('A', { storageState: args.state_file });
    seen.account = await account(a);
    await shoot(a, 'account');
    await goto(a, '/admin');
    await expectHeading(a, 'Users');
    seen.adminUsers = await a.page.$$eval('li.user', (els) => els.length);
    await shoot(a, 'admin');
    // The other admin pages the test names: [{name, path}] -> NAME-{390,1280}.png.
    seen.adminPages = {};
    for (const { name, path } of args.admin_pages || []) {
      const status = await goto(a, path);
      seen.adminPages[name] = { status, heading: await heading(a.page) };
      await shoot(a, name);
    }
    seen.goneStatus = await goto(a, link);
    seen.goneHeading = await heading(a.page);
    await shoot(a, 'invite-gone');
  }

  result.scriptErrors = scriptErrors;
  result.httpErrors = httpErrors;
  console.log(JSON.stringify(result));
  await browser.close();
  process.exit(0);
} catch (e) {
  result.error = String(e && e.stack ? e.stack : e);
  result.scriptErrors = scriptErrors;
  result.httpErrors = httpErrors;
  console.log(JSON.stringify(result));
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
}
