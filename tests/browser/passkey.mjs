// Passkeys in a real Chromium, against doorman started by a Rust test
// (tests/e2e/passkey_browser.rs). The authenticators are CDP virtual ones (the WebAuthn
// domain): CTAP2, platform ("internal"), resident keys, user verification that succeeds, no
// browser dialogs. One JSON argument:
//   {"base": "http://localhost:P", "authorize_url": "...", "rp_prefix": "http://127.0.0.1:Q/cb",
//    "user": "alice", "password": "...", "other_user": "bob", "other_password": "...",
//    "mode": "account" | "required", "screenshots": "dir", "timeout_ms": 30000}
// mode "account": `user` signs in with the password at /account, adds a passkey by name
// with the password again (recovery codes, then /account lists it), signs out; the authorize URL: password, then
// "Use your passkey" -> the RP; signs out; the authorize URL: "Sign in with a passkey" -> the RP
// with no password typed; signs out. `other_user` enrols on a second authenticator after the
// first is removed; the authorize URL as `user`: password, then "Use your passkey" with the
// options' allowCredentials rewritten to [] so the browser offers other_user's resident key ->
// refused, still on doorman; a recovery code signs in instead (-> the RP); /account: the
// passkey is removed (password); signs out; the first authenticator comes back with `user`'s
// credential, and "Sign in with a passkey" is refused; the other user's credential (an
// Ed25519 one) then signs them in from that page.
// mode "required": the authorize URL as `user` where a second factor is required: password,
// the enrolment page, "Add a passkey" by name (an authenticator whose keys may be synced) ->
// recovery codes -> Continue -> the RP (an RS256 key); then password + "Use your passkey".
// Every navigator.credentials call and its outcome is recorded ("passkeyCalls"; the passwordless
// step's pending autofill request is "abortedCall").
// The user's touch: the authenticators run without automatic presence, which is switched on
// only while a passkey button's request runs; otherwise a virtual authenticator answers the
// landing page's autofill (conditional) request at once, and the button would never be used.
// Prints one JSON line: {"codes": [RP codes in order], "urls", "refusals", "recoveryCount",
// "passkeyNames", "passkeyCalls", "conditionalAvailable", "screenshots", "steps",
// "scriptErrors", "httpErrors"} and exits non-zero (with "error") when anything fails.
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.DOORMAN_CHROMIUM || '/usr/bin/chromium';

const args = JSON.parse(process.argv[2] || '{}');
const {
  base, authorize_url: authorizeUrl, rp_prefix: rpPrefix, user, password,
  other_user: otherUser, other_password: otherPassword, mode = 'account',
} = args;
const timeout = args.timeout_ms || 30000;
const shotsDir = args.screenshots;
if (!base || !authorizeUrl || !rpPrefix || !user || !password || !['account', 'required'].includes(mode)
  || (mode === 'account' && (!otherUser || !otherPassword))) {
  console.log(JSON.stringify({ error: 'usage: passkey.mjs \'{"base":..,"authorize_url":..,"rp_prefix":..,"user":..,"password":..,"other_user":..,"other_password":..,"mode":"account|required","screenshots":dir}\'' }));
  process.exit(2);
}

const steps = [];
const step = (s) => steps.push(s);
const onRp = (u) => u.startsWith(rpPrefix);
const PASSKEY_NAME = `${user}'s laptop`;
const NOT_ACCEPTED = 'That passkey was not accepted.';

const profile = mkdtempSync(join(tmpdir(), 'doorman-chromium-'));
let context;
const result = {
  codes: [], urls: [], refusals: [], recoveryCount: null, passkeyNames: [], passkeyCalls: [],
  conditionalAvailable: null, screenshots: [], steps,
};
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
      // doorman listens on 127.0.0.1 only: no refused attempt on ::1 first.
      '--host-resolver-rules=MAP localhost 127.0.0.1',
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

  // Every navigator.credentials call of doorman's pages, with how it ended: the conditional
  // request must end (aborted) before the button's modal one, which must not meet
  // "A request is already pending".
  let touchOff = async () => {};
  await context.exposeBinding('__doormanPasskeyCall', async (source, entry) => {
    result.passkeyCalls.push({ page: new URL(source.page.url()).pathname, ...entry });
    // The finger leaves the authenticator once the button's request is answered, and is off
    // it whenever an autofill request starts (the wrapper waits for this answer).
    if (entry.phase === 'end' && entry.mediation === 'modal') await touchOff();
    if (entry.phase === 'start' && entry.mediation === 'conditional') await touchOff();
  });
  await context.addInitScript(() => {
    if (!navigator.credentials || !window.PublicKeyCredential) return;
    const log = (e) => Promise.resolve().then(() => window.__doormanPasskeyCall(e)).catch(() => { /* page going away */ });
    for (const kind of ['get', 'create']) {
      const original = navigator.credentials[kind].bind(navigator.credentials);
      navigator.credentials[kind] = (options) => {
        const mediation = (options && options.mediation) || 'modal';
        const allow = options && options.publicKey && options.publicKey.allowCredentials;
        const call = Math.random().toString(36).slice(2);
        const logged = log({ call, kind, mediation, phase: 'start', allowCredentials: allow ? allow.length : null });
        // An autofill request starts once the test knows of it (and has lifted the finger).
        const ready = mediation === 'conditional' ? logged : Promise.resolve();
        return ready.then(() => {
          const pending = original(options);
          if (mediation === 'conditional') window.__doormanConditionalSince = Date.now();
          return pending;
        }).then(
          (c) => { log({ call, kind, mediation, phase: 'end', outcome: 'ok' }); return c; },
          (e) => { log({ call, kind, mediation, phase: 'end', outcome: (e && e.name) || 'Error', message: String(e && e.message) }); throw e; },
        );
      };
    }
  });

  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable', { enableUI: false });
  // The user touches the authenticator only when they click a passkey button: otherwise a
  // virtual authenticator answers the landing page's autofill (conditional) request at once.
  let current = null;
  const addAuthenticator = async (synced) => {
    current = (await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: {
        protocol: 'ctap2', ctap2Version: 'ctap2_1', transport: 'internal', hasResidentKey: true,
        hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: false,
        defaultBackupEligibility: synced, defaultBackupState: synced,
      },
    })).authenticatorId;
    return current;
  };
  const touch = async (enabled) => {
    if (current) await cdp.send('WebAuthn.setAutomaticPresenceSimulation', { authenticatorId: current, enabled });
  };
  touchOff = () => touch(false);
  const credentialsOf = async (authenticatorId) => (await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials;

  const shoot = async (name, selector) => {
    if (!shotsDir) return;
    mkdirSync(shotsDir, { recursive: true });
    for (const width of [390, 1280]) {
      await page.setViewportSize({ width, height: width === 390 ? 844 : 800 });
      const path = join(shotsDir, `passkey-${name}-${width}.png`);
      if (selector) await page.locator(selector).screenshot({ path });
      else await page.screenshot({ path, fullPage: true });
      result.screenshots.push(path);
    }
    await page.setViewportSize({ width: 900, height: 760 });
  };
  const submitIn = async (formSelector) => {
    await Promise.all([
      page.waitForNavigation({ waitUntil: 'load' }),
      page.click(`${formSelector} button:not([type=button]), ${formSelector} input[type=submit]`),
    ]);
  };
  const typePassword = async (who, secret) => {
    await page.fill('#username', who);
    await page.fill('#password', secret);
    await submitIn(`form[action="${base}/login/password"]`);
    step(`${who}: password typed, now on ${page.url()}`);
  };
  // The passkey forms are hidden until passkey.js has run: WebAuthn is there.
  const passkeyButton = async (selector) => {
    await page.waitForSelector(selector, { state: 'visible' });
    return selector;
  };
  const conditionalAvailable = () => page.evaluate(() => (typeof PublicKeyCredential.isConditionalMediationAvailable === 'function'
    ? PublicKeyCredential.isConditionalMediationAvailable() : false));
  // Clicks a passkey button and waits for the page after it (the script submits the form).
  const clickPasskey = async (selector, formSelector) => {
    await passkeyButton(selector);
    // On a page with an autofill request, the finger comes down only once that request is
    // surely waiting in the browser (else the authenticator would answer it instead).
    if (await page.$('input[data-passkey-form]') && await conditionalAvailable()) {
      await page.waitForFunction(() => window.__doormanConditionalSince && Date.now() - window.__doormanConditionalSince > 300);
    }
    await touch(true);
    await Promise.all([
      page.waitForNavigation({ waitUntil: 'load' }),
      page.click(selector),
    ]).catch(async (e) => {
      const status = await page.textContent(`${formSelector} ~ #status, #status, #passkey-status`).catch(() => null);
      throw new Error(`${selector}: no page came after it (${status || 'no message'}): ${e}`);
    });
    await touch(false);
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
  const expectRefused = async (what) => {
    const url = page.url();
    if (onRp(url) || !url.startsWith(base)) throw new Error(`${what}: left doorman for ${url}`);
    const status = (await page.textContent('#status.error'))?.trim();
    if (!status || !status.includes(NOT_ACCEPTED)) throw new Error(`${what}: no refusal shown (${status}) on ${url}`);
    result.refusals.push(what);
    step(`${what}: refused on ${url}`);
  };
  const readRecovery = async () => {
    await page.waitForSelector('div.recovery-codes');
    const codes = await page.$$eval('div.recovery-codes code', (els) => els.map((e) => e.textContent.trim()));
    result.recoveryCount = codes.length;
    const setUp = (await page.textContent('main'))?.includes('Your passkey is set up.');
    if (!setUp) throw new Error('the recovery codes page does not say the passkey is set up');
    if (codes.length !== 10) throw new Error(`${codes.length} recovery codes`);
    return codes;
  };
  // The next options from `optionsUrl` offer only COSE algorithm `alg` (the server's list must
  // have it), so each of -7, -8 and -257 runs through a real browser.
  const onlyAlgorithm = async (optionsUrl, alg) => {
    await page.route(optionsUrl, async (route) => {
      const response = await route.fetch();
      const json = await response.json();
      const params = json.publicKey.pubKeyCredParams || [];
      if (!params.some((p) => p.alg === alg)) result.algorithmMissing = alg;
      json.publicKey.pubKeyCredParams = params.filter((p) => p.alg === alg);
      await route.fulfill({ response, json });
    }, { times: 1 });
  };
  const passkeyNames = async () => page.$$eval('section#passkeys li.passkey .passkey-name', (els) => els.map((e) => e.textContent.trim()));
  const signOut = async () => {
    await page.goto(`${base}/logout`, { waitUntil: 'load' });
    await submitIn(`form[action="${base}/logout"]`);
    const body = await page.textContent('body');
    if (!/signed out/i.test(body)) throw new Error(`not signed out: ${body}`);
    step('signed out');
  };
  // Adds a passkey on /account (signed in already): recovery codes (the first factor).
  const addOnAccount = async (name, pass) => {
    await page.waitForSelector('section#passkeys');
    await passkeyButton('#add-passkey-button');
    await page.fill('#add-passkey #passkey-name', name);
    // The options ask for the password again.
    await page.fill('#add-passkey #passkey-password', pass);
    await clickPasskey('#add-passkey-button', '#add-passkey');
    const codes = await readRecovery();
    await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click('a.continue')]);
    const names = await passkeyNames();
    if (!names.includes(name)) throw new Error(`/account lists ${JSON.stringify(names)}, not ${name}`);
    step(`added passkey "${name}" on /account`);
    return codes;
  };
  const signInAtAccount = async (who, secret) => {
    const resp = await page.goto(`${base}/account`, { waitUntil: 'load' });
    if (!resp || resp.status() !== 200) throw new Error(`/account answered ${resp && resp.status()}`);
    await typePassword(who, secret);
    if (!page.url().startsWith(`${base}/account`)) throw new Error(`${who}: not back on /account but ${page.url()}`);
  };
  const codePageOf = async (who) => {
    await page.waitForSelector(`form[action="${base}/login/code"]`);
    const account = (await page.textContent('strong.account'))?.trim();
    if (account !== who) throw new Error(`the code page names ${account}, not ${who}`);
    const label = (await page.textContent('#passkey-button'))?.trim();
    if (label !== 'Use your passkey') throw new Error(`the code page's passkey button says ${label}`);
  };


  if (mode === 'account') {
    const first = await addAuthenticator(false);
    // 1. The password at /account, then a passkey by name.
    await signInAtAccount(user, password);
    await shoot('account-empty', 'section#passkeys');
    await onlyAlgorithm(`${base}/account/passkeys/options`, -7);
    const recovery = await addOnAccount(PASSKEY_NAME, password);
    result.passkeyNames = await passkeyNames();
    await shoot('account', 'section#passkeys');
    await signOut();

    // ... then password + "Use your passkey" -> the RP.
    await page.goto(authorizeUrl, { waitUntil: 'load' });
    await passkeyButton('#passkey-button');
    await shoot('landing');
    await typePassword(user, password);
    await codePageOf(user);
    await shoot('code');
    await clickPasskey('#passkey-button', '#passkey-form');
    await landedOnRp('password + passkey');
    await signOut();

    // 2. Passwordless: the landing page's button, nothing typed. The conditional request
    // (autofill on the username field) is pending first: let it start.
    const conditionalStarts = () => result.passkeyCalls.filter((c) => c.mediation === 'conditional' && c.phase === 'start').length;
    const before = conditionalStarts();
    await page.goto(authorizeUrl, { waitUntil: 'load' });
    result.conditionalAvailable = await conditionalAvailable();
    if (result.conditionalAvailable) {
      const deadline = Date.now() + timeout;
      while (conditionalStarts() === before) {
        if (Date.now() > deadline) throw new Error('no conditional request on the landing page');
        await page.waitForTimeout(50);
      }
      const pending = result.passkeyCalls.filter((c) => c.mediation === 'conditional' && c.phase === 'start').pop();
      await page.waitForTimeout(300);
      if (result.passkeyCalls.some((c) => c.call === pending.call && c.phase === 'end')) {
        throw new Error(`the conditional request ended by itself: ${JSON.stringify(result.passkeyCalls)}`);
      }
      result.abortedCall = pending.call;
      step('the conditional request is pending');
    }
    await clickPasskey('#passkey-button', '#passkey-form');
    await landedOnRp('passwordless');
    await signOut();

    // 4. The other user enrols on a second authenticator; the first one goes away.
    const saved = await credentialsOf(first);
    if (saved.length !== 1 || !saved[0].isResidentCredential || saved[0].rpId !== 'localhost') {
      throw new Error(`the first authenticator holds ${JSON.stringify(saved.map((c) => ({ rp: c.rpId, resident: c.isResidentCredential })))}`);
    }
    await cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId: first });
    current = null;
    const second = await addAuthenticator(false);
    await signInAtAccount(otherUser, otherPassword);
    await onlyAlgorithm(`${base}/account/passkeys/options`, -8);
    await addOnAccount(`${otherUser}'s phone`, otherPassword);
    await signOut();
    const others = await credentialsOf(second);
    if (others.length !== 1) throw new Error('the second authenticator has no credential');

    // ... and is offered where the first user's second factor is asked: refused.
    await page.goto(authorizeUrl, { waitUntil: 'load' });
    await typePassword(user, password);
    await codePageOf(user);
    let rewritten = null;
    await page.route(`${base}/login/passkey/options`, async (route) => {
      const response = await route.fetch();
      const json = await response.json();
      rewritten = (json.publicKey.allowCredentials || []).length;
      json.publicKey.allowCredentials = [];
      await route.fulfill({ response, json });
    });
    await clickPasskey('#passkey-button', '#passkey-form');
    await page.unroute(`${base}/login/passkey/options`);
    if (!rewritten) throw new Error('the second-factor options had no allowCredentials to rewrite');
    await codePageOf(user);
    await expectRefused("another user's passkey");

    // A recovery code instead, then the passkey is removed on /account with the password.
    await page.fill(`form[action="${base}/login/code"] input[name=code]`, recovery[0]);
    await submitIn(`form[action="${base}/login/code"]`);
    await landedOnRp('a recovery code');
    await page.goto(`${base}/account#passkeys`, { waitUntil: 'load' });
    const remove = `section#passkeys li.passkey details.remove-passkey`;
    await page.click(`${remove} summary`);
    await page.fill(`${remove} input[name=password]`, password);
    await submitIn(`${remove} form`);
    if (!page.url().includes('done=passkey-removed')) throw new Error(`not removed: on ${page.url()}`);
    const left = await passkeyNames();
    if (left.length) throw new Error(`still listed after removing: ${JSON.stringify(left)}`);
    step('removed the passkey on /account');
    await signOut();

    // 3. The removed passkey is back in a browser: passwordless no longer signs in.
    await cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId: second });
    const again = await addAuthenticator(false);
    await cdp.send('WebAuthn.addCredential', { authenticatorId: again, credential: saved[0] });
    await page.goto(authorizeUrl, { waitUntil: 'load' });
    await clickPasskey('#passkey-button', '#passkey-form');
    await expectRefused('a removed passkey');
    await shoot('refused');
    if (!(await page.$('#passkey-button'))) throw new Error('no passkey button after the refusal');

    // The other user's passkey (Ed25519) signs them in from the same page.
    await cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId: again });
    const third = await addAuthenticator(false);
    await cdp.send('WebAuthn.addCredential', { authenticatorId: third, credential: others[0] });
    await clickPasskey('#passkey-button', '#passkey-form');
    await landedOnRp(`${otherUser}, passwordless`);
  } else {
    // Enrolment inside the sign-in, with a passkey (this one's keys may be synced).
    await addAuthenticator(true);
    await page.goto(authorizeUrl, { waitUntil: 'load' });
    await typePassword(user, password);
    await page.waitForSelector(`form[action="${base}/login/enrol"]`);
    await passkeyButton('#passkey-button');
    const intro = (await page.textContent('main p.muted'))?.replace(/\s+/g, ' ').trim();
    if (!intro || !intro.includes('a code from an authenticator app, or a passkey')) throw new Error(`the enrolment page says: ${intro}`);
    await shoot('enrol');
    await page.fill('#passkey-form #passkey-name', PASSKEY_NAME);
    await onlyAlgorithm(`${base}/login/passkey/options`, -257);
    await clickPasskey('#passkey-button', '#passkey-form');
    await readRecovery();
    await shoot('recovery');
    step('enrolled a passkey (RS256) inside the sign-in');
    await submitIn(`form[action="${base}/login/continue"]`);
    await landedOnRp('after enrolling');
    await signOut();

    // ... and it is the second factor of the next sign-in.
    await page.goto(authorizeUrl, { waitUntil: 'load' });
    await typePassword(user, password);
    await codePageOf(user);
    await clickPasskey('#passkey-button', '#passkey-form');
    await landedOnRp('password + the RS256 passkey');
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
