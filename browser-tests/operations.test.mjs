// Browser tests of the operators' side of the console (issue 14), run by ./run.sh: the endpoint's health with
// "resume now" (paused by the breaker, disabled after 410), delivery health as charts with their table and
// description, bulk recovery with its progress bar, each attempt's request and answer with copy buttons and a curl
// line, and ids told apart by their tail. run.sh starts the worker with 3 attempts per delivery and a breaker that
// pauses after 3 failures for 10 minutes, and crm-api with small recovery batches, so each state is reached fast.
//
// Its own workspace, a few rows, and a receiver whose answer each test sets.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
  BASE, S, agent, v1, expectStatus, until, createWorkspace, launchBrowser, startReceiver, newPage, closePage,
  signIn, go, shot, scrollerState, assertNothingClipped,
} from './helpers.mjs';

let receiver;
let secret;
const emailOf = (d) => d.body?.data?.row?.email;

/** Records interest for a new lead; returns the row. */
async function lead(name) {
  return expectStatus(v1('POST', '/crm/interest', {
    body: { lead: { email: `${name}@example.com`, first_name: name }, interest: { type: 'positive_reply' } },
  }), 201);
}

async function deliveriesWith(status) {
  const page = await expectStatus(v1('GET', `/crm-webhook/deliveries?status=${status}&limit=200`), 200);
  return page.deliveries;
}

/** Waits until the workspace has `n` deliveries with `status`. */
function settled(status, n) {
  return until(`${n} ${status} deliveries`, async () => (await deliveriesWith(status)).length === n, 30000);
}

async function health() {
  return expectStatus(v1('GET', '/crm-webhook/health'), 200);
}

async function withClipboard(page) {
  await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: BASE });
  return () => page.evaluate(() => navigator.clipboard.readText());
}

before(async () => {
  await createWorkspace('Operations');
  receiver = await startReceiver();
  secret = `whsec_${crypto.randomBytes(24).toString('base64')}`;
  receiver.secrets.add(secret);
  await expectStatus(v1('PUT', '/settings/crm-webhook', {
    body: { enabled: true, url: receiver.url, events: ['crm_row.created', 'crm_row.updated'], secret },
  }), 200);
  // Six delivered, four refused outright (failed: a terminal answer also resets the breaker).
  for (let i = 0; i < 6; i += 1) await lead(`ok-${i}`);
  await settled('succeeded', 6);
  receiver.answer(400, '{"error":"unknown lead"}');
  for (let i = 0; i < 4; i += 1) await lead(`refused-${i}`);
  await settled('failed', 4);
  S.browser = await launchBrowser();
});

after(async () => {
  await S.browser?.close();
  await receiver?.close();
  agent.destroy();
});

test('a paused endpoint shows until when, and "resume now" sends the next delivery at once', async () => {
  // Three 503s in a row: the delivery is dead (3 attempts) and the breaker pauses the endpoint for 10 minutes.
  receiver.answer(503, 'busy');
  await lead('unlucky');
  await settled('dead', 1);
  await until('the endpoint to be paused', async () => (await health()).state === 'paused');
  receiver.answer(200);

  const page = await newPage('desktop');
  await signIn(page);
  await go(page, '#/settings');
  await page.waitForSelector('#endpoint-health[data-state="paused"]');
  const text = await page.textContent('#eh-text');
  const pausedUntil = (await health()).paused_until.slice(11, 19);
  assert.match(text, new RegExp(`^Paused until ${pausedUntil} UTC`));
  assert.equal(await page.isVisible('#eh-resume'), true);
  await shot(page, 'settings-health-paused-desktop');

  await page.click('#eh-resume');
  const asked = Date.now();
  await page.waitForFunction(() => /resume the endpoint now/.test(document.querySelector('.statusbar').textContent));
  await lead('after-resume');
  const delivered = await receiver.waitFor('the next delivery', (d) => emailOf(d) === 'after-resume@example.com');
  assert.ok(delivered.verified);
  assert.ok(Date.now() - asked < 8000, 'sent at once, not after the ten-minute pause');
  await page.waitForSelector('#endpoint-health:not([data-state="paused"])', { timeout: 15000 });
  assert.equal(await page.isVisible('#eh-resume'), false);
  await closePage(page);
});

test('a webhook turned off after 410 Gone shows why, and is turned back on from the console', async () => {
  receiver.answer(410, 'gone');
  await lead('gone');
  await until('the webhook to be disabled', async () => (await health()).state === 'disabled');
  receiver.answer(200);
  for (const size of ['desktop', 'phone']) {
    const page = await newPage(size);
    await signIn(page);
    await go(page, '#/deliveries');
    await page.waitForSelector('#endpoint-health[data-state="disabled"]');
    assert.match(await page.textContent('#eh-text'), /^Turned off by the system: endpoint answered 410 Gone/);
    assert.equal(await page.textContent('#eh-resume'), 'Turn back on and resume');
    await shot(page, `deliveries-health-disabled-${size}`);
    await closePage(page);
  }
  const page = await newPage('desktop');
  await signIn(page);
  await go(page, '#/settings');
  await page.waitForSelector('#wh-disabled-reason:not([hidden])');
  assert.equal(await page.isChecked('#wh-enabled'), false);
  await page.click('#eh-resume');
  await page.waitForFunction(() => document.querySelector('#wh-enabled').checked
    && document.querySelector('#wh-disabled-reason').hidden);
  const settings = await expectStatus(v1('GET', '/settings/crm-webhook'), 200);
  assert.deepEqual([settings.enabled, settings.disabled_reason], [true, null]);
  await lead('back-on');
  await receiver.waitFor('a delivery once back on', (d) => emailOf(d) === 'back-on@example.com');
  await closePage(page);
});

test('deliveries per bucket by outcome and attempt latency as charts, with a table and a description', async () => {
  const stats = await expectStatus(v1('GET', '/crm-webhook/stats?window=1h'), 200);
  for (const size of ['desktop', 'phone']) {
    const page = await newPage(size);
    await signIn(page);
    await go(page, '#/deliveries');
    await page.waitForSelector('#delivery-stats[data-loaded="true"] #chart-outcomes');
    assertNothingClipped(await scrollerState(page), `deliveries dashboard ${size}`);
    // One bar group per minute; the stacked segments add up to what the stats route says.
    assert.equal(await page.$$eval('#chart-outcomes g.bucket', (gs) => gs.length), 60);
    for (const outcome of ['succeeded', 'failed', 'dead']) {
      assert.ok(await page.$$eval(`#chart-outcomes rect.series-${outcome}`, (r) => r.length) > 0, outcome);
    }
    const svgInView = await page.$eval('#chart-outcomes', (el) => {
      const r = el.getBoundingClientRect();
      return r.width > 200 && r.right <= window.innerWidth + 0.5 && r.left >= 0;
    });
    assert.ok(svgInView, `${size}: the chart fits the screen`);
    // Accessible: an image named by its heading and described by a sentence with the same totals.
    const described = await page.$eval('#chart-outcomes', (el) => ({
      role: el.getAttribute('role'),
      name: document.getElementById(el.getAttribute('aria-labelledby')).textContent,
      desc: document.getElementById(el.getAttribute('aria-describedby')).textContent,
    }));
    assert.equal(described.role, 'img');
    assert.equal(described.name, 'Deliveries by outcome');
    const t = stats.totals;
    assert.ok(described.desc.includes(`${t.succeeded} succeeded`) && described.desc.includes(`${t.failed} failed`)
      && described.desc.includes(`${t.dead} dead`), described.desc);
    assert.match(await page.textContent('#stats-latency-desc'), /^Attempt duration over \d+ attempts: p50 \d+ ms/);
    assert.ok(await page.$$eval('#chart-latency circle.p50', (c) => c.length) > 0, 'latency points are drawn');
    await page.$eval('#delivery-stats', (el) => el.scrollIntoView());
    await shot(page, `deliveries-charts-${size}`);
    // The table fallback holds the same numbers.
    await page.click('#stats-details summary');
    const tableTotals = await page.$$eval('#stats-table tbody tr', (trs) => trs.reduce((sum, tr) => {
      const cells = [...tr.cells].map((c) => Number(c.textContent.replace(/,/g, '')));
      return { succeeded: sum.succeeded + cells[1], failed: sum.failed + cells[3], dead: sum.dead + cells[4] };
    }, { succeeded: 0, failed: 0, dead: 0 }));
    assert.deepEqual(tableTotals, { succeeded: t.succeeded, failed: t.failed, dead: t.dead });
    // The day, in quarter hours.
    await page.click('#stats-24h');
    await page.waitForSelector('#delivery-stats[data-window="24h"][data-loaded="true"]');
    assert.equal(await page.$$eval('#chart-outcomes g.bucket', (gs) => gs.length), 96);
    assert.equal(await page.getAttribute('#stats-24h', 'aria-pressed'), 'true');
    await closePage(page);
  }
});

test('bulk recovery: field errors, then a progress bar until every failed and dead delivery is sent again', async () => {
  const failed = (await deliveriesWith('failed')).map((d) => d.id);
  const dead = (await deliveriesWith('dead')).map((d) => d.id);
  // Four refused in the setup and the one refused with 410; the one that died of 503s.
  assert.deepEqual([failed.length, dead.length], [5, 1]);
  const page = await newPage('desktop');
  await signIn(page);
  await go(page, '#/deliveries');
  await page.waitForSelector('#recovery:not([open])');
  await page.click('#recovery summary');
  await page.waitForSelector('#recovery-form', { state: 'visible' });
  // Nothing to match with: the API names the field, and nothing starts.
  for (const box of ['#rc-status-0', '#rc-status-1']) await page.uncheck(box);
  await page.click('#rc-start');
  await page.waitForFunction(() => document.querySelector('#rc-statuses-error').textContent.length > 0);
  await page.check('#rc-status-0');
  await page.check('#rc-status-1');
  await page.fill('#rc-since', new Date(Date.now() - 40 * 86400e3).toISOString().slice(0, 16));
  await page.click('#rc-start');
  await page.waitForFunction(() => /30 days/.test(document.querySelector('#rc-since-error').textContent));
  assert.equal(await page.getAttribute('#rc-since', 'aria-invalid'), 'true');
  assert.equal((await expectStatus(v1('GET', '/crm-webhook/recoveries'), 200)).recoveries.length, 0);

  await page.fill('#rc-since', new Date(Date.now() - 3600e3).toISOString().slice(0, 16));
  await page.click('#rc-start');
  await page.waitForSelector('#rc-status[data-status="running"]');
  assert.equal(await page.getAttribute('#rc-progress', 'max'), '6');
  await shot(page, 'recovery-running-desktop');
  await page.waitForSelector('#rc-status[data-status="completed"]', { timeout: 60000 });
  const bar = await page.$eval('#rc-progress', (p) => [p.value, p.max]);
  assert.deepEqual(bar, [6, 6]);
  assert.match(await page.textContent('#rc-progress-label'), /^Completed .*: 6 of 6 matched deliveries sent again\.$/);
  await shot(page, 'recovery-completed-desktop');
  for (const id of [...failed, ...dead]) {
    await until(`delivery ${id} to succeed`, async () => {
      const d = await expectStatus(v1('GET', `/crm-webhook/deliveries/${id}`), 200);
      return d.status === 'succeeded';
    }, 30000);
    const again = receiver.deliveries.filter((d) => d.headers['webhook-id'] === id);
    assert.ok(again.length >= 2 && again.at(-1).verified, `${id} was sent again, signed`);
  }
  await closePage(page);
  // At phone size the last recovery is shown when the view opens.
  const phone = await newPage('phone');
  await signIn(phone);
  await go(phone, '#/deliveries');
  await phone.waitForSelector('#rc-status[data-status="completed"]');
  await phone.$eval('#recovery', (el) => el.scrollIntoView());
  assertNothingClipped(await scrollerState(phone), 'recovery phone');
  await shot(phone, 'recovery-completed-phone');
  await closePage(phone);
});

test('an attempt shows the request the receiver got, signatures elided, the answer, copy buttons and curl', async () => {
  // The once-dead delivery: three 503s, then the recovered 200.
  const d = (await deliveriesWith('succeeded')).find((x) => x.attempts === 4);
  assert.ok(d, 'the recovered delivery with four attempts');
  for (const size of ['desktop', 'phone']) {
    const page = await newPage(size);
    const clipboard = await withClipboard(page);
    await signIn(page);
    await go(page, `#/deliveries/${d.id}`);
    await page.waitForSelector('#attempt-4[open] #attempt-4-headers');
    const headers = await page.textContent('#attempt-4-headers');
    const got = receiver.deliveries.filter((r) => r.headers['webhook-id'] === d.id).at(-1);
    for (const name of ['x-crm-webhook-id', 'x-crm-webhook-timestamp', 'x-crm-webhook-attempt', 'webhook-id',
      'webhook-timestamp', 'user-agent', 'content-type']) {
      assert.ok(headers.includes(`${name}: ${got.headers[name]}`), `${name} as the receiver got it:\n${headers}`);
    }
    assert.ok(headers.includes('x-crm-webhook-signature: sha256=<elided>'));
    assert.ok(headers.includes('webhook-signature: v1,<elided>'));
    assert.ok(!headers.includes(got.headers['webhook-signature']), 'no real signature is shown');
    assert.match(await page.textContent('#attempt-4-answer'), /^status: 200\nduration: \d+ ms\n\n\{"ok":true\}$/);
    assert.match(await page.textContent('#attempt-1-answer'), /^status: 503\n/);
    // Copy the exact body and the curl line.
    await page.click('#attempt-4 .code-block:nth-of-type(2) button.copy');
    await until('the body on the clipboard', async () => (await clipboard()) === got.raw);
    await page.click('#attempt-4 .code-block:nth-of-type(4) button.copy');
    await until('curl on the clipboard', async () => (await clipboard()).includes('curl -sS -X POST'));
    const curl = await clipboard();
    assert.ok(curl.includes(`'${receiver.url}'`) && curl.includes("-H 'x-crm-webhook-signature: sha256=<elided>'"));
    assert.ok(curl.startsWith('# Replays this attempt. The signature headers are placeholders'));
    const html = await page.content();
    assert.ok(!html.includes(secret) && !html.includes(secret.slice(6)), 'the secret is nowhere on the page');
    await page.$eval('#attempt-4', (el) => el.scrollIntoView());
    await shot(page, `delivery-attempt-${size}`);
    await closePage(page);
  }
});

test('ids are told apart by their tail and copied whole', async () => {
  const page = await newPage('desktop');
  const clipboard = await withClipboard(page);
  await signIn(page);
  await go(page, '#/deliveries');
  await page.waitForSelector('table.deliveries tbody tr .id-chip');
  const shown = await page.$$eval('table.deliveries tbody tr', (trs) => trs.map((tr) => ({
    id: tr.dataset.id, tail: tr.cells[6].querySelector('code [aria-hidden]').textContent,
  })));
  assert.ok(shown.length >= 10);
  assert.equal(new Set(shown.map((s) => s.tail)).size, shown.length, 'every shown id differs');
  assert.equal(new Set(shown.map((s) => s.id.slice(0, 8))).size < shown.length, true,
    'their first eight characters do not tell them apart');
  for (const s of shown) assert.equal(s.tail, `…${s.id.slice(-8)}`);
  await page.click(`table.deliveries tbody tr[data-id="${shown[2].id}"] td:nth-child(7) button.copy`);
  await until('the whole id on the clipboard', async () => (await clipboard()) === shown[2].id);
  await closePage(page);
});
