// Browser tests of the crm-api console, run by ./run.sh (which starts crm-api and delivery-worker and sets
// CONSOLE_URL and CRM_ADMIN_TOKEN). Headless Debian Chromium, driven by playwright-core; node's own test runner.
//
// Setup: a workspace and an admin token through the admin API, BROWSER_TEST_ROWS (1,000) rows through the
// interest route, and a Node HTTP server playing the external CRM (it checks every delivery's signature). The
// operators' views (health, charts, recovery, attempt detail) are tested in operations.test.mjs.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
  BASE, S, SIZES, agent, request, v1, expectStatus, inParallel, allRowIds, until, createWorkspace,
  launchBrowser, startReceiver, newPage, closePage, signIn, go, shot, scrollerState, scrollTo,
  assertNothingClipped, assertHeaderVisible, assertInView, scrollUntilComplete,
} from './helpers.mjs';

const ROWS = Number(process.env.BROWSER_TEST_ROWS ?? 1000);
const ROW_FIELDS = [
  'id', 'workspace_id', 'version', 'email', 'first_name', 'last_name', 'phone', 'company', 'job_title',
  'linkedin_url', 'campaign', 'interest_type', 'interest_channel', 'interest_message', 'interest_at',
  'interest_count', 'pipeline_stage', 'owner', 'deal_value', 'deal_currency', 'next_step_at', 'notes',
  'custom_fields', 'created_at', 'updated_at',
];
const QUALIFIED = Math.min(25, Math.floor(ROWS / 3));

let ws; // workspace id
let token; // admin-role workspace token
let receiver;
let rowIdsNewestFirst = [];

// ---------------------------------------------------------------------------------------------------------------
// Setup and teardown

before(async () => {
  const started = Date.now();
  ({ ws, token } = await createWorkspace('Browser tests'));

  const channels = ['email', 'linkedin', 'phone'];
  await inParallel(ROWS, 20, async (i) => {
    const n = String(i).padStart(4, '0');
    await expectStatus(v1('POST', '/crm/interest', {
      body: {
        lead: {
          email: `lead-${n}@example.com`,
          first_name: `First${n}`,
          last_name: `Last${n}`,
          phone: `+49 30 555 ${n}`,
          company: `Company ${i % 37} GmbH`,
          job_title: i % 3 ? 'Head of Operations' : 'VP Sales',
          linkedin_url: `https://www.linkedin.com/in/lead-${n}`,
        },
        interest: {
          type: 'positive_reply',
          channel: channels[i % 3],
          message: `Lead ${n} wrote back: sounds interesting, let us talk next week about the rollout plan.`,
        },
        campaign: `autumn-${i % 5}`,
      },
    }), 201);
  });
  rowIdsNewestFirst = await allRowIds();
  assert.equal(rowIdsNewestFirst.length, ROWS);
  // A few rows in another stage, for the stage filter.
  await inParallel(QUALIFIED, 10, async (i) => {
    await expectStatus(v1('PATCH', `/crm/rows/${rowIdsNewestFirst[i * 3]}`, {
      body: { pipeline_stage: 'qualified', deal_value: '1250.00', deal_currency: 'EUR', owner: 'Dana' },
    }), 200);
  });
  receiver = await startReceiver();
  S.browser = await launchBrowser();
  console.log(`# setup: workspace, ${ROWS} rows, receiver and Chromium in ${Date.now() - started} ms`);
});

after(async () => {
  const started = Date.now();
  await S.browser?.close();
  await receiver?.close();
  agent.destroy();
  console.log(`# teardown in ${Date.now() - started} ms`);
});

// ---------------------------------------------------------------------------------------------------------------
// Tests

test('the console is served from the binary with a strict policy', async () => {
  for (const [url, type] of [['/', 'text/html'], ['/console/app.js', 'text/javascript'],
    ['/console/app.css', 'text/css'], ['/console/favicon.svg', 'image/svg+xml']]) {
    const r = await request('GET', url);
    assert.equal(r.status, 200, url);
    assert.ok(r.headers['content-type'].startsWith(type), `${url}: ${r.headers['content-type']}`);
    assert.match(r.headers['content-security-policy'], /default-src 'self'/);
    assert.doesNotMatch(r.headers['content-security-policy'], /unsafe-inline|unsafe-eval/);
    assert.equal(r.headers['x-content-type-options'], 'nosniff');
    assert.ok(r.headers['cache-control'], `${url}: no Cache-Control`);
    const again = await request('GET', url, { headers: { 'if-none-match': r.headers.etag } });
    assert.equal(again.status, 304, `${url} revalidates`);
  }
  assert.equal((await request('GET', '/console/nope.js')).status, 404);
  assert.equal((await request('GET', '/healthz')).status, 200);
  assert.equal((await request('GET', '/openapi.json')).status, 200);
});

test('sign in, navigate and edit a cell with the keyboard only', async () => {
  const page = await newPage('desktop');
  await page.goto(`${BASE}/`);
  await shot(page, 'signin-desktop');
  // The sign-in form has focus; type, tab, type, Enter.
  await page.waitForFunction(() => document.activeElement?.id === 'signin-workspace');
  await page.keyboard.type(ws);
  await page.keyboard.press('Tab');
  await page.keyboard.type(token);
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => location.hash === '#/leads' && document.activeElement?.tagName === 'H1');
  const stored = await page.evaluate(() => ({ session: sessionStorage.length, local: localStorage.length }));
  assert.deepEqual(stored, { session: 1, local: 0 }, 'the token is kept in session storage only');

  // Tab to the "Analytics › CRM" link and follow it.
  await page.keyboard.press('Shift+Tab');
  for (let i = 0; i < 20; i += 1) {
    const text = await page.evaluate(() => document.activeElement?.textContent);
    if (text === 'Analytics › CRM') break;
    await page.keyboard.press('Shift+Tab');
  }
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Analytics › CRM');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => location.hash === '#/sheet');
  await page.waitForSelector('table.sheet[data-loaded="true"]', { timeout: 30000 });

  // Tab into the grid: it lands on the first row's email cell; arrow right to "notes", Enter, type, Enter.
  await page.keyboard.press('Tab');
  const start = await page.evaluate(() => {
    const el = document.activeElement;
    return { tag: el.tagName, col: el.cellIndex, row: el.closest('tr')?.dataset.id };
  });
  assert.equal(start.tag, 'TD');
  assert.equal(start.col, ROW_FIELDS.indexOf('email') + 1);
  for (let i = ROW_FIELDS.indexOf('email'); i < ROW_FIELDS.indexOf('notes'); i += 1) {
    await page.keyboard.press('ArrowRight');
  }
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.activeElement?.tagName === 'INPUT');
  const label = await page.evaluate(() => document.activeElement.getAttribute('aria-label'));
  assert.match(label, /^Notes of lead-\d{4}@example\.com$/);
  const notes = `Called on ${new Date().toISOString().slice(0, 10)}, keyboard only`;
  await page.keyboard.press('Control+A');
  await page.keyboard.type(notes);
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => /^Saved Notes/.test(document.querySelector('.statusbar').textContent));
  const after = await page.evaluate(() => ({
    text: document.activeElement.textContent, tag: document.activeElement.tagName,
  }));
  assert.deepEqual(after, { text: notes, tag: 'TD' }, 'the saved value is shown and focus is back on the cell');
  const row = await expectStatus(v1('GET', `/crm/rows/${start.row}`), 200);
  assert.equal(row.notes, notes);

  // Escape cancels an edit.
  await page.keyboard.press('Enter');
  await page.keyboard.type(' and more');
  await page.keyboard.press('Escape');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), notes);

  // Ctrl+End goes to the very last cell, which is scrolled into view.
  await page.keyboard.press('Control+End');
  const lastCell = await page.evaluate(() => {
    const el = document.activeElement;
    return { row: el.closest('tr').dataset.id, col: el.cellIndex };
  });
  assert.deepEqual(lastCell, { row: rowIdsNewestFirst.at(-1), col: ROW_FIELDS.length });
  await page.waitForTimeout(100);
  await assertInView(page, 'table.sheet tbody tr:last-child td:last-child', 'keyboard Ctrl+End');

  // Sign out with the keyboard too.
  await page.focus('#sign-out');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#signin:not([hidden])');
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  await closePage(page);
});

for (const size of Object.keys(SIZES)) {
  test(`leads list scrolls at ${size} size with ${ROWS} rows`, async () => {
    const page = await newPage(size);
    await signIn(page);
    await page.waitForSelector('table.leads tbody tr');
    const s = await scrollerState(page);
    assertNothingClipped(s, `leads ${size}`);
    assert.ok(s.scrollHeight > s.clientHeight, `scrollHeight ${s.scrollHeight} <= height ${s.clientHeight}`);
    // Newest first.
    const first = await page.evaluate(() => document.querySelector('table.leads tbody tr').dataset.id);
    assert.equal(first, rowIdsNewestFirst[0]);
    await assertHeaderVisible(page, `leads ${size} top`);
    // How many rows there are, not only how many are loaded.
    const total = ROWS.toLocaleString('en-US');
    await page.waitForFunction((t) => document.querySelector('.statusbar').textContent.startsWith(`${t} rows;`), total);
    assert.match(await page.textContent('.list-foot p'), new RegExp(`^Showing [\\d,]+ of ${total} rows; more below\\.$`));
    await shot(page, `leads-${size}`);

    await scrollTo(page, { top: s.scrollHeight / 2 });
    await assertHeaderVisible(page, `leads ${size} middle`);
    await scrollUntilComplete(page, ROWS);
    await scrollTo(page, { top: 'end' });
    const last = await page.evaluate(() => document.querySelector('table.leads tbody tr:last-child').dataset.id);
    assert.equal(last, rowIdsNewestFirst.at(-1), 'the last row is the oldest one');
    await assertInView(page, 'table.leads tbody tr:last-child th', `leads ${size} last row`);
    await assertHeaderVisible(page, `leads ${size} end`);
    if (size === 'phone') {
      // The table is wider than a phone: it scrolls sideways inside the same container.
      const p = await scrollerState(page);
      assert.ok(p.scrollWidth > p.clientWidth);
      await scrollTo(page, { left: 'end' });
      await assertInView(page, 'table.leads tbody tr:last-child td:last-child', 'leads phone last column');
      await assertHeaderVisible(page, 'leads phone right');
    }
    assertNothingClipped(await scrollerState(page), `leads ${size} after scrolling`);
    await closePage(page);
  });

  test(`CRM sheet scrolls both ways at ${size} size with ${ROWS} rows`, async () => {
    const page = await newPage(size);
    await signIn(page);
    await go(page, '#/sheet');
    await page.waitForSelector('table.sheet[data-loaded="true"]', { timeout: 30000 });
    const fields = await page.$$eval('table.sheet thead th[data-field]', (ths) => ths.map((th) => th.dataset.field));
    assert.deepEqual(fields, ROW_FIELDS, 'one column per row field, in ROW_FIELDS order');
    const apiRow = await expectStatus(v1('GET', `/crm/rows/${rowIdsNewestFirst[0]}`), 200);
    assert.deepEqual([...fields].sort(), Object.keys(apiRow).sort(), 'the columns are the API row\'s fields');
    assert.equal(await page.$$eval('table.sheet tbody tr', (trs) => trs.length), ROWS);

    const s = await scrollerState(page);
    assertNothingClipped(s, `sheet ${size}`);
    assert.ok(s.scrollHeight > s.clientHeight, `scrollHeight ${s.scrollHeight} <= height ${s.clientHeight}`);
    assert.ok(s.scrollWidth > s.clientWidth, `scrollWidth ${s.scrollWidth} <= width ${s.clientWidth}`);
    assert.ok(s.scrollWidth > s.innerWidth, 'the sheet is wider than the screen');
    await assertHeaderVisible(page, `sheet ${size} top`);
    await shot(page, `sheet-${size}`);

    await scrollTo(page, { top: s.scrollHeight / 3, left: s.scrollWidth / 3 });
    await assertHeaderVisible(page, `sheet ${size} middle`);
    await scrollTo(page, { top: 'end' });
    await assertHeaderVisible(page, `sheet ${size} bottom`);
    const last = await page.evaluate(() => document.querySelector('table.sheet tbody tr:last-child').dataset.id);
    assert.equal(last, rowIdsNewestFirst.at(-1));
    await assertInView(page, 'table.sheet tbody tr:last-child th', `sheet ${size} last row`);
    const end = await scrollerState(page);
    assert.ok(end.scrollTop + end.clientHeight >= end.scrollHeight - 1, 'scrolled to the very bottom');

    await scrollTo(page, { left: 'end' });
    await assertHeaderVisible(page, `sheet ${size} right`);
    await assertInView(page, 'table.sheet thead th:last-child', `sheet ${size} last column header`);
    await assertInView(page, 'table.sheet tbody tr:last-child td:last-child', `sheet ${size} last cell`);
    const lastHeader = await page.$eval('table.sheet thead th:last-child', (th) => th.dataset.field);
    assert.equal(lastHeader, ROW_FIELDS.at(-1));
    const right = await scrollerState(page);
    assert.ok(right.scrollLeft + right.clientWidth >= right.scrollWidth - 1, 'scrolled to the far right');
    await shot(page, `sheet-${size}-scrolled`);
    await closePage(page);
  });
}

test('leads: stage filter and search', async () => {
  const page = await newPage('desktop');
  await signIn(page);
  await page.waitForSelector('table.leads tbody tr');
  await page.selectOption('#leads-stage', 'qualified');
  await page.waitForFunction((n) => document.querySelector('.list-foot').dataset.complete === 'true'
    && document.querySelectorAll('table.leads tbody tr').length === n, QUALIFIED);
  const stages = await page.$$eval('table.leads tbody .badge', (b) => [...new Set(b.map((x) => x.textContent))]);
  assert.deepEqual(stages, ['Qualified']);
  await page.selectOption('#leads-stage', '');
  await page.fill('#leads-q', 'lead-0042@example');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.querySelector('.list-foot').dataset.complete === 'true'
    && document.querySelectorAll('table.leads tbody tr').length === 1);
  assert.equal(await page.$eval('table.leads tbody tr td', (td) => td.textContent), 'lead-0042@example.com');
  await closePage(page);
});

test('webhook settings: errors at the field, a write-only secret, generate-and-show-once, test event', async () => {
  const page = await newPage('desktop');
  await signIn(page);
  await go(page, '#/settings');
  await page.waitForFunction(() => document.querySelector('#wh-secret-state').textContent.length > 0);
  assert.match(await page.textContent('#wh-secret-state'), /No secret/);

  // A private address is refused by the API; the message shows at the URL field and nothing is saved.
  const typed = `whsec_${crypto.randomBytes(24).toString('base64')}`;
  await page.check('#wh-enabled');
  await page.fill('#wh-url', 'https://10.1.2.3/hook');
  await page.check('#wh-event-0');
  await page.check('#wh-event-1');
  await page.fill('#wh-secret', typed);
  await page.click('#wh-save');
  await page.waitForFunction(() => document.querySelector('#wh-url-error').textContent.length > 0);
  assert.equal(await page.getAttribute('#wh-url', 'aria-invalid'), 'true');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'wh-url', 'focus moves to the bad field');
  const unsaved = await expectStatus(v1('GET', '/settings/crm-webhook'), 200);
  assert.equal(unsaved.secret_set, false);
  assert.equal(unsaved.enabled, false);

  // Enabling without events is refused at the events group.
  await page.fill('#wh-url', receiver.url);
  await page.uncheck('#wh-event-0');
  await page.uncheck('#wh-event-1');
  await page.click('#wh-save');
  await page.waitForFunction(() => document.querySelector('#wh-events-error').textContent.length > 0);
  assert.equal(await page.textContent('#wh-url-error'), '', 'the fixed field has no message any more');

  // A rate cap of 0 is refused at its field.
  await page.check('#wh-event-0');
  await page.check('#wh-event-1');
  await page.fill('#wh-rate', '0');
  await page.click('#wh-save');
  await page.waitForFunction(() => document.querySelector('#wh-rate-error').textContent.length > 0);
  assert.equal(await page.getAttribute('#wh-rate', 'aria-invalid'), 'true');
  assert.equal(await page.textContent('#wh-events-error'), '');

  // Saved: the secret input is emptied and only the last four characters are shown, now and later.
  await page.fill('#wh-rate', '2.5');
  receiver.secrets.add(typed);
  await page.click('#wh-save');
  await page.waitForFunction(() => document.querySelector('#wh-status').textContent === 'Settings saved.');
  assert.equal(await page.inputValue('#wh-secret'), '');
  assert.ok((await page.textContent('#wh-secret-state')).includes(`••••${typed.slice(-4)}`), 'last4 is shown');
  const secretNowhere = async (secret, when) => {
    const found = await page.evaluate((sec) => {
      const inputs = [...document.querySelectorAll('input, textarea')].map((i) => i.value);
      const storage = JSON.stringify({ ...sessionStorage }) + JSON.stringify({ ...localStorage });
      return [document.documentElement.outerHTML, document.body.innerText, ...inputs, storage]
        .some((text) => text.includes(sec) || text.includes(sec.slice(6)));
    }, secret);
    assert.equal(found, false, `the secret is on the page ${when}`);
  };
  await secretNowhere(typed, 'after saving');
  const saved = await expectStatus(v1('GET', '/settings/crm-webhook'), 200);
  assert.deepEqual([saved.enabled, saved.url, saved.secret_set, saved.secret_last4, saved.max_per_second],
    [true, receiver.url, true, typed.slice(-4), 2.5]);
  await shot(page, 'settings-desktop');
  await page.reload();
  await page.waitForFunction(() => document.querySelector('#wh-secret-state').textContent.includes('••••'));
  await secretNowhere(typed, 'after a reload');
  assert.equal(await page.inputValue('#wh-url'), receiver.url);
  assert.equal(await page.inputValue('#wh-rate'), '2.5', 'the cap is shown, so saving again keeps it');

  // Generate: shown once, in its own box; gone for good once dismissed or after leaving the page.
  await page.click('#wh-generate');
  await page.waitForSelector('#wh-once-secret');
  const generated = await page.textContent('#wh-once-secret');
  assert.match(generated, /^whsec_/);
  receiver.secrets.add(generated);
  await page.waitForFunction((l4) => document.querySelector('#wh-secret-state').textContent.includes(`••••${l4}`),
    generated.slice(-4));
  assert.equal(await page.inputValue('#wh-secret'), '', 'the generated secret is not put in the input');
  await page.focus('#wh-once-dismiss');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#wh-once', { state: 'detached' });
  await secretNowhere(generated, 'after dismissing it');
  await go(page, '#/leads');
  await go(page, '#/settings');
  await page.waitForFunction(() => document.querySelector('#wh-secret-state').textContent.includes('••••'));
  await secretNowhere(generated, 'after navigating away and back');
  await secretNowhere(typed, 'after navigating away and back');

  // Generate again and navigate away without dismissing: not shown on return either.
  await page.click('#wh-generate');
  await page.waitForSelector('#wh-once-secret');
  const second = await page.textContent('#wh-once-secret');
  receiver.secrets.add(second);
  await go(page, '#/deliveries');
  await go(page, '#/settings');
  await page.waitForFunction(() => document.querySelector('#wh-secret-state').textContent.includes('••••'));
  await secretNowhere(second, 'after leaving the page with the box open');

  // The replaced secret still signs during the rotation; it can be stopped at once (a leaked secret).
  await page.waitForSelector('#wh-drop-previous:not([hidden])');
  assert.match(await page.textContent('#wh-previous-state'), /previous secret also signs until/);
  await page.click('#wh-drop-previous');
  await page.waitForSelector('#wh-drop-previous', { state: 'hidden' });
  const dropped = await expectStatus(v1('GET', '/settings/crm-webhook'), 200);
  assert.equal(dropped.previous_secret_expires_at, null);

  // Send a test event: the receiver gets a signed webhook.test.
  await page.click('#wh-test');
  await page.waitForSelector('#wh-status a[href^="#/deliveries/"]');
  const test = await receiver.waitFor('the test event', (d) => d.body?.type === 'webhook.test');
  assert.equal(test.body.workspace_id, ws);
  assert.ok(test.verified, 'the test event is signed with the saved secret');
  await closePage(page);
});

test('a cell edit in the sheet is delivered to the CRM; the log shows it and redelivers it', async () => {
  const page = await newPage('desktop');
  await signIn(page);
  await go(page, '#/sheet');
  await page.waitForSelector('table.sheet[data-loaded="true"]', { timeout: 30000 });
  const rowId = rowIdsNewestFirst[5];
  const stageCol = ROW_FIELDS.indexOf('pipeline_stage') + 1;
  const cell = `table.sheet tbody tr[data-id="${rowId}"] td:nth-child(${stageCol + 1})`;
  await page.click(cell);
  await page.waitForSelector(`${cell} select`);
  await page.selectOption(`${cell} select`, 'meeting_booked');
  await page.keyboard.press('Enter');
  await page.waitForFunction((sel) => document.querySelector(sel).textContent === 'meeting_booked', cell);

  const delivery = await receiver.waitFor('the crm_edit delivery', (d) => d.body?.type === 'crm_row.updated'
    && d.body.data?.trigger === 'crm_edit' && d.body.data.row?.id === rowId);
  assert.ok(delivery.verified, 'signed with the current secret');
  assert.deepEqual(delivery.body.data.changed_fields, ['pipeline_stage']);
  assert.equal(delivery.body.data.row.pipeline_stage, 'meeting_booked');
  assert.equal(delivery.body.data.previous.pipeline_stage, 'new');
  assert.deepEqual(Object.keys(delivery.body.data.row).sort(), [...ROW_FIELDS].sort(),
    'the receiver sees the sheet\'s columns');
  const eventId = delivery.body.id;

  // The delivery log: filter by status, open the delivery, see its attempt, redeliver.
  await go(page, '#/deliveries');
  await page.selectOption('#dl-status', 'succeeded');
  const link = `table.deliveries tbody tr[data-id="${eventId}"] a`;
  await until('the delivery to show as succeeded', async () => {
    await page.click('#dl-refresh');
    await page.waitForFunction(() => document.querySelector('.list-foot').dataset.complete === 'true');
    return (await page.$(link)) !== null;
  });
  const statuses = await page.$$eval('table.deliveries tbody .badge', (b) => [...new Set(b.map((x) => x.textContent))]);
  assert.deepEqual(statuses, ['succeeded']);
  await shot(page, 'deliveries-desktop');
  await page.focus(link);
  await page.keyboard.press('Enter');
  await page.waitForFunction((id) => location.hash === `#/deliveries/${id}`, eventId);
  await page.waitForSelector('#dl-attempts tbody tr td');
  const attempts = await page.$$eval('#dl-attempts tbody tr', (trs) => trs.map((tr) => tr.cells[3].textContent));
  assert.deepEqual(attempts, ['200']);
  await shot(page, 'delivery-desktop');
  await page.focus('#dl-redeliver');
  await page.keyboard.press('Enter');
  const again = await receiver.waitFor('the redelivery',
    (d) => d.body?.id === eventId && d !== delivery);
  assert.equal(again.headers['x-crm-webhook-id'], eventId, 'same webhook id');
  assert.ok(Number(again.headers['x-crm-webhook-attempt']) > Number(delivery.headers['x-crm-webhook-attempt']),
    'a new attempt number');
  await page.waitForFunction(() => document.querySelectorAll('#dl-attempts tbody tr').length === 2,
    null, { timeout: 25000 });
  await closePage(page);
});

test('a conflicting edit is shown and the user\'s value is kept for a retry', async () => {
  const page = await newPage('desktop');
  await signIn(page);
  await go(page, '#/sheet');
  await page.waitForSelector('table.sheet[data-loaded="true"]', { timeout: 30000 });
  const rowId = rowIdsNewestFirst[7];
  const col = ROW_FIELDS.indexOf('owner') + 1;
  const cell = `table.sheet tbody tr[data-id="${rowId}"] td:nth-child(${col + 1})`;
  // Someone else changes the row after the sheet loaded it.
  await expectStatus(v1('PATCH', `/crm/rows/${rowId}`, { body: { owner: 'Someone Else' } }), 200);

  await page.click(cell);
  await page.fill(`${cell} input`, 'Me');
  await page.keyboard.press('Enter');
  await page.waitForSelector(`${cell} .cell-msg`);
  const message = await page.textContent(`${cell} .cell-msg`);
  assert.match(message, /changed by someone else/i);
  assert.match(message, /Someone Else/, 'the current value is shown');
  assert.equal(await page.inputValue(`${cell} input`), 'Me', 'the user\'s value is not lost');
  assert.equal(await page.getAttribute(`${cell} input`, 'aria-invalid'), 'true');
  await shot(page, 'sheet-conflict-desktop');
  // Enter again saves it deliberately over the other change.
  await page.focus(`${cell} input`);
  await page.keyboard.press('Enter');
  await page.waitForFunction((sel) => document.querySelector(sel).textContent === 'Me', cell);
  const row = await expectStatus(v1('GET', `/crm/rows/${rowId}`), 200);
  assert.equal(row.owner, 'Me');

  // A value the API refuses shows the API's field message; Escape restores the cell.
  const dealCol = ROW_FIELDS.indexOf('deal_value') + 1;
  const deal = `table.sheet tbody tr[data-id="${rowId}"] td:nth-child(${dealCol + 1})`;
  const before = await page.textContent(deal);
  await page.click(deal);
  await page.fill(`${deal} input`, 'a lot');
  await page.keyboard.press('Enter');
  await page.waitForSelector(`${deal} .cell-msg`);
  assert.match(await page.textContent(`${deal} .cell-msg`), /decimal/);
  await page.keyboard.press('Escape');
  await page.waitForFunction(([sel, text]) => !document.querySelector(`${sel} input`)
    && document.querySelector(sel).textContent === text, [deal, before]);
  await closePage(page);
});

test('screenshots of every view at phone size', async () => {
  const page = await newPage('phone');
  await signIn(page);
  await go(page, '#/settings');
  await page.waitForFunction(() => document.querySelector('#wh-secret-state').textContent.includes('••••'));
  assertNothingClipped(await scrollerState(page), 'settings phone');
  await shot(page, 'settings-phone');
  await go(page, '#/deliveries');
  await page.waitForSelector('table.deliveries tbody tr');
  assertNothingClipped(await scrollerState(page), 'deliveries phone');
  await shot(page, 'deliveries-phone');
  const first = await page.$eval('table.deliveries tbody tr a', (a) => a.getAttribute('href'));
  await go(page, first);
  await page.waitForSelector('#dl-facts dt');
  await shot(page, 'delivery-phone');
  await page.goto(`${BASE}/`);
  await page.click('#sign-out');
  await page.waitForSelector('#signin:not([hidden])');
  await shot(page, 'signin-phone');
  await closePage(page);
});
