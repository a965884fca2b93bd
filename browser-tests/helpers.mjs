// What every browser test file shares: the API client, the test receiver playing the external CRM, and the browser
// helpers (pages at both sizes, sign-in, screenshots, the checks on the view's one scroll container). run.sh sets
// CONSOLE_URL, CRM_ADMIN_TOKEN and CHROMIUM.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const BASE = process.env.CONSOLE_URL ?? 'http://127.0.0.1:8080';
export const ADMIN_TOKEN = process.env.CRM_ADMIN_TOKEN;
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
export const ARTIFACTS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'artifacts');
export const SIZES = {
  desktop: { viewport: { width: 1280, height: 800 } },
  phone: { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 },
};

/** The workspace and admin-role token a test file works in, and the browser; each file's `before` sets them. */
export const S = { ws: null, token: null, browser: null };

// ---------------------------------------------------------------------------------------------------------------
// API helpers

// node:http with an agent of our own (not fetch), so teardown can close its kept-alive connections at once.
export const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });

export function request(method, url, { headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(`${BASE}${url}`, { method, headers, agent }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

export async function call(method, url, { bearer = S.token, body } = {}) {
  const headers = { authorization: `Bearer ${bearer}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const r = await request(method, url, { headers, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: r.status, headers: r.headers, body: r.text ? JSON.parse(r.text) : null };
}

export const v1 = (method, p, opts) => call(method, `/v1/workspaces/${S.ws}${p}`, opts);

export async function expectStatus(promise, status) {
  const r = await promise;
  assert.equal(r.status, status, JSON.stringify(r.body));
  return r.body;
}

export async function inParallel(n, limit, fn) {
  let next = 0;
  await Promise.all(Array.from({ length: limit }, async () => {
    while (next < n) {
      const i = next;
      next += 1;
      await fn(i);
    }
  }));
}

export async function allRowIds() {
  const ids = [];
  let cursor = null;
  do {
    const q = new URLSearchParams({ limit: '200' });
    if (cursor) q.set('cursor', cursor);
    const page = await expectStatus(v1('GET', `/crm/rows?${q}`), 200);
    ids.push(...page.rows.map((r) => r.id));
    cursor = page.next_cursor;
  } while (cursor);
  return ids;
}

export async function until(what, fn, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}


/** A workspace and an admin-role token for it (made the file's own in `S`). */
export async function createWorkspace(name) {
  assert.ok(ADMIN_TOKEN, 'CRM_ADMIN_TOKEN must be set (run ./run.sh)');
  const workspace = await expectStatus(call('POST', '/admin/workspaces', { bearer: ADMIN_TOKEN, body: { name } }), 201);
  const created = await expectStatus(call('POST', `/admin/workspaces/${workspace.id}/tokens`, {
    bearer: ADMIN_TOKEN, body: { role: 'admin', name: 'browser tests' },
  }), 201);
  S.ws = workspace.id;
  S.token = created.token;
  return S;
}

export function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

// ---------------------------------------------------------------------------------------------------------------
// The test receiver: the external CRM. Verifies x-crm-webhook-signature against the secrets it knows.

export function hmacKey(secret) {
  return secret.startsWith('whsec_') ? Buffer.from(secret.slice(6), 'base64') : Buffer.from(secret, 'utf8');
}

export function startReceiver() {
  const deliveries = [];
  const secrets = new Set();
  // What it answers every request with; `answer(status, body)` changes it.
  const answer = { status: 200, body: '{"ok":true}' };
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const ts = req.headers['x-crm-webhook-timestamp'] ?? '';
      const sigs = String(req.headers['x-crm-webhook-signature'] ?? '').split(' ');
      const verified = [...secrets].some((secret) => sigs.some((sig) => sig === `sha256=${
        crypto.createHmac('sha256', hmacKey(secret)).update(`${ts}.${raw}`).digest('hex')}`));
      let body = null;
      try {
        body = JSON.parse(raw);
      } catch {
        /* recorded as null */
      }
      deliveries.push({ headers: req.headers, body, raw, verified, method: req.method, url: req.url });
      res.writeHead(answer.status, { 'content-type': 'application/json' });
      res.end(answer.body);
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      resolve({
        url: `http://127.0.0.1:${server.address().port}/hook`,
        deliveries,
        secrets,
        find: (pred) => deliveries.filter(pred),
        waitFor: (what, pred, timeoutMs = 20000) => until(what, () => deliveries.find(pred), timeoutMs),
        answer: (status, body = JSON.stringify({ ok: status < 300 })) => Object.assign(answer, { status, body }),
        close: () => new Promise((r) => {
          server.close(r);
          server.closeAllConnections(); // the worker keeps connections alive; do not wait for them
        }),
      });
    });
  });
}


// ---------------------------------------------------------------------------------------------------------------
// Browser helpers

export const pageErrors = [];

export async function newPage(size) {
  const context = await S.browser.newContext({ ...SIZES[size], reducedMotion: 'reduce' });
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(`${size}: ${e.message}`));
  page.on('console', (msg) => {
    // Chromium logs every 4xx answer to fetch as "Failed to load resource"; the tests provoke 412 and 422.
    if (msg.type() === 'error' && !msg.text().startsWith('Failed to load resource')) {
      pageErrors.push(`${size} console: ${msg.text()}`);
    }
  });
  return page;
}

export async function closePage(page) {
  await page.context().close();
  assert.deepEqual(pageErrors.splice(0), [], 'no script errors in the page');
}

export async function signIn(page) {
  await page.goto(`${BASE}/`);
  await page.fill('#signin-workspace', S.ws);
  await page.fill('#signin-token', S.token);
  await page.click('#signin-submit');
  await page.waitForSelector('main.view h1');
}

export async function go(page, hash) {
  await page.evaluate((h) => { location.hash = h; }, hash);
  await page.waitForFunction((h) => document.querySelector('main.view')?.dataset.route === h
    && document.querySelector('main.view h1'), hash);
}

export async function shot(page, name) {
  await fs.mkdir(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`) });
}

/** Geometry of the view's one scroll container. */
export function scrollerState(page) {
  return page.evaluate(() => {
    const s = document.querySelector('[data-scroller]');
    const r = s.getBoundingClientRect();
    return {
      scrollHeight: s.scrollHeight,
      clientHeight: s.clientHeight,
      scrollWidth: s.scrollWidth,
      clientWidth: s.clientWidth,
      scrollTop: s.scrollTop,
      scrollLeft: s.scrollLeft,
      top: r.top,
      bottom: r.bottom,
      left: r.left,
      right: r.right,
      innerWidth: window.innerWidth,
      innerHeight: window.innerHeight,
      pageScrollWidth: document.documentElement.scrollWidth,
      pageScrollHeight: document.documentElement.scrollHeight,
      statusBottom: document.querySelector('.statusbar').getBoundingClientRect().bottom,
    };
  });
}

export function scrollTo(page, { top, left }) {
  return page.evaluate(({ top: t, left: l }) => {
    const s = document.querySelector('[data-scroller]');
    if (t !== undefined) s.scrollTop = t === 'end' ? s.scrollHeight : t;
    if (l !== undefined) s.scrollLeft = l === 'end' ? s.scrollWidth : l;
  }, { top, left });
}

/** Nothing of the view hangs off the screen: the page itself does not overflow, and the scroll container and
 *  the status line under it end inside the viewport. */
export function assertNothingClipped(s, label) {
  assert.ok(s.pageScrollWidth <= s.innerWidth, `${label}: page is wider than the viewport (${s.pageScrollWidth})`);
  assert.ok(s.pageScrollHeight <= s.innerHeight, `${label}: page is taller than the viewport (${s.pageScrollHeight})`);
  assert.ok(s.left >= 0 && s.right <= s.innerWidth + 0.5, `${label}: scroller sticks out sideways`);
  assert.ok(s.bottom <= s.innerHeight + 0.5 && s.statusBottom <= s.innerHeight + 0.5, `${label}: bottom is cut off`);
  assert.ok(s.clientHeight >= 150, `${label}: scroller is only ${s.clientHeight}px tall`);
}

/** The header row is pinned to the top of the scroller and is what a user sees there. */
export async function assertHeaderVisible(page, label) {
  const result = await page.evaluate(() => {
    const s = document.querySelector('[data-scroller]');
    const sr = s.getBoundingClientRect();
    const ths = [...s.querySelectorAll('thead th')];
    const visible = ths.filter((th) => {
      const r = th.getBoundingClientRect();
      return r.right > sr.left && r.left < sr.left + s.clientWidth;
    });
    const th = visible[Math.floor(visible.length / 2)] ?? ths[0];
    const r = th.getBoundingClientRect();
    const x = Math.max(r.left, sr.left) + Math.min(r.width, 20) / 2 + 2;
    const hit = document.elementFromPoint(x, r.top + r.height / 2);
    return { thTop: r.top, scrollerTop: sr.top + s.clientTop, onTop: !!hit && th.closest('thead').contains(hit) };
  });
  assert.ok(Math.abs(result.thTop - result.scrollerTop) <= 1.5,
    `${label}: header row is at ${result.thTop}, scroller top at ${result.scrollerTop}`);
  assert.ok(result.onTop, `${label}: header cell is covered or not on screen`);
}

/** The element is fully inside the scroller's visible area, below the sticky header, and is what is shown there. */
export async function assertInView(page, selector, label) {
  const r = await page.evaluate((sel) => {
    const s = document.querySelector('[data-scroller]');
    const el = document.querySelector(sel);
    const sr = s.getBoundingClientRect();
    const er = el.getBoundingClientRect();
    const header = s.querySelector('thead')?.getBoundingClientRect();
    const visibleTop = Math.max(sr.top + s.clientTop, header ? header.bottom : 0);
    const visibleBottom = sr.top + s.clientTop + s.clientHeight;
    const cx = Math.min(er.right, sr.left + s.clientWidth) - 4;
    const hit = document.elementFromPoint(Math.max(er.left + 2, cx), er.top + er.height / 2);
    return {
      top: er.top, bottom: er.bottom, visibleTop, visibleBottom,
      right: er.right, visibleRight: sr.left + s.clientLeft + s.clientWidth,
      hit: !!hit && (el === hit || el.contains(hit)),
    };
  }, selector);
  assert.ok(r.top >= r.visibleTop - 1 && r.bottom <= r.visibleBottom + 1,
    `${label}: ${selector} is at ${r.top}..${r.bottom}, visible area ${r.visibleTop}..${r.visibleBottom}`);
  assert.ok(r.hit, `${label}: ${selector} is covered by something else`);
  return r;
}

/**
 * Scrolls to the end until the list says it has every row (the list pages with the cursor as it scrolls). It
 * gives up only when the list stops growing for a while, not after a fixed time: a busy machine pages slowly.
 */
export async function scrollUntilComplete(page, expected) {
  let rows = -1;
  let still = 0;
  while (still < 60) {
    await scrollTo(page, { top: 'end' });
    const state = await page.evaluate(() => ({
      complete: document.querySelector('.list-foot')?.dataset.complete === 'true',
      rows: document.querySelectorAll('[data-scroller] tbody tr').length,
    }));
    if (state.complete) {
      assert.equal(state.rows, expected);
      return;
    }
    still = state.rows > rows ? 0 : still + 1;
    rows = state.rows;
    await page.waitForTimeout(150);
  }
  throw new Error(`the list stopped growing at ${rows} rows without reporting that every row was loaded`);
}

