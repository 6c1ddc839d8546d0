// Signs in with Plex in a real Chromium, against doorman and the fake plex.tv that a Rust test
// (tests/e2e/plex_browser.rs) started. One JSON argument:
//   {"authorize_url": "...", "rp_prefix": "http://127.0.0.1:P/cb", "screenshot": "path.png",
//    "mode": "popup" | "same-tab" | "redirect", "timeout_ms": 30000, "expect_error": false}
// With "expect_error" (popup mode), the sign-in is expected to fail: the script waits for the
// landing page's error message instead of the RP, and reports it as "status".
// The fake's Auth App page approves as the "next user" the test chose. Prints one JSON line:
//   {"code", "url", "popupOpened", "popupClosed", "landingTitle", "steps"}
// and exits non-zero (with {"error": ...}) when anything fails.
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.DOORMAN_CHROMIUM || '/usr/bin/chromium';

const args = JSON.parse(process.argv[2] || '{}');
const { authorize_url: authorizeUrl, rp_prefix: rpPrefix, screenshot, mode = 'popup' } = args;
const timeout = args.timeout_ms || 30000;
const expectError = Boolean(args.expect_error);
if (!authorizeUrl || !rpPrefix || !['popup', 'same-tab', 'redirect'].includes(mode)) {
  console.log(JSON.stringify({ error: 'usage: plex-login.mjs \'{"authorize_url":..,"rp_prefix":..,"screenshot":..,"mode":"popup|same-tab|redirect"}\'' }));
  process.exit(2);
}

const steps = [];
const step = (s) => steps.push(s);
const onRp = (u) => u.startsWith(rpPrefix);

const profile = mkdtempSync(join(tmpdir(), 'doorman-chromium-'));
let context;
const result = { code: null, url: null, popupOpened: false, popupClosed: false, landingTitle: null, steps };
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
  // Script errors on any page (the popup included), and every failed HTTP answer.
  const scriptErrors = [];
  const httpErrors = [];
  const watch = (p) => {
    p.on('console', (m) => {
      if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) scriptErrors.push(`${p.url()}: ${m.text()}`);
    });
    p.on('pageerror', (e) => scriptErrors.push(`${p.url()}: ${e}`));
  };
  watch(page);
  context.on('page', watch);
  context.on('response', (r) => { if (r.status() >= 400) httpErrors.push({ url: r.url(), status: r.status() }); });

  await page.goto(authorizeUrl, { waitUntil: 'load' });
  step(`opened ${page.url()}`);
  if (screenshot) {
    mkdirSync(dirname(screenshot), { recursive: true });
    await page.screenshot({ path: screenshot, fullPage: true });
  }
  result.landingTitle = await page.title();

  if (mode === 'popup') {
    const popupPromise = page.waitForEvent('popup', { timeout: 10000 });
    await page.click('#plex-button');
    step('clicked #plex-button');
    const popup = await popupPromise.catch(() => null);
    if (!popup) throw new Error('no popup opened (blocked?); the page fell back to ' + page.url());
    result.popupOpened = true;
    step('popup opened');
    const closed = popup.isClosed() ? Promise.resolve() : popup.waitForEvent('close', { timeout });
    closed.then(() => { result.popupClosed = true; step('popup closed'); }, () => {});
    if (expectError) {
      await page.waitForSelector('#status.error:not([hidden])', { timeout });
      result.status = await page.textContent('#status');
      result.buttonText = await page.textContent('#plex-button');
      step('error shown');
      if (screenshot) await page.screenshot({ path: screenshot.replace(/\.png$/, '') + '-error.png', fullPage: true });
    } else {
      await page.waitForURL((u) => onRp(u.href), { timeout });
      step('main page on the RP');
    }
    // The popup closes itself on /login/plex/done; give it a moment if it has not yet.
    await Promise.race([closed, new Promise((r) => setTimeout(r, 5000))]).catch(() => {});
    result.popupClosed = popup.isClosed();
  } else if (mode === 'same-tab') {
    await Promise.all([
      page.waitForURL((u) => !u.href.startsWith(authorizeUrl.split('?')[0]), { timeout }),
      page.click('#plex-tab-form button'),
    ]);
    step(`same tab went to ${page.url()}`);
    await page.waitForURL((u) => onRp(u.href), { timeout });
    step('on the RP');
  } else {
    // redirect mode: the authorize URL already went to the Auth App.
    if (onRp(page.url())) step('already on the RP');
    await page.waitForURL((u) => onRp(u.href), { timeout });
    step('on the RP');
  }

  result.url = page.url();
  result.code = new URL(result.url).searchParams.get('code');
  result.body = (await page.textContent('body').catch(() => null)) || null;
  result.scriptErrors = scriptErrors;
  result.httpErrors = httpErrors;
  console.log(JSON.stringify(result));
  await context.close();
  rmSync(profile, { recursive: true, force: true });
  process.exit(result.code || (expectError && result.status) ? 0 : 1);
} catch (e) {
  result.error = String(e && e.stack ? e.stack : e);
  try {
    const pages = context ? context.pages() : [];
    result.openPages = pages.map((p) => p.url());
  } catch (_) { /* ignore */ }
  console.log(JSON.stringify(result));
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
  process.exit(1);
}
