// CRM webhook console: a small single-page app over the public REST API (docs/contract.md §2). No framework, no build
// step, no third-party code. It talks only to /v1/workspaces/{ws}/* with the workspace token entered on the
// sign-in screen; the token lives in this tab's sessionStorage and is sent only in the Authorization header.
//
// Routes are URL fragments: #/leads, #/sheet, #/settings, #/deliveries, #/deliveries/<id>. Each view renders into
// <main> as a grid of three rows — heading and controls, exactly one scroll container (.scroller), a status
// line — and returns a clean-up function; leaving a view aborts its requests.

import { FIELDS } from './fields.js';

const SESSION_KEY = 'crm-console.session';

/** The row's fields in column order, with their labels and kinds: crm-api writes fields.js from crm-mapping's
 *  field list, the same definition the API's rows come from, so the sheet shows every field the rows have. */
const ROW_FIELDS = FIELDS.map((f) => f.name);
/** The fields PATCH accepts; every other column is read-only. */
const EDITABLE = new Set(FIELDS.filter((f) => f.editable).map((f) => f.name));
const LABELS = Object.fromEntries(FIELDS.map((f) => [f.name, f.label]));

/** Sheet column widths in pixels (table-layout: fixed). */
const WIDTHS = {
  id: 290, workspace_id: 290, version: 80, email: 250, first_name: 140, last_name: 140, phone: 150, company: 180,
  job_title: 180, linkedin_url: 240, campaign: 150, interest_type: 150, interest_channel: 140,
  interest_message: 260, interest_at: 210, interest_count: 90, pipeline_stage: 160, owner: 150, deal_value: 120,
  deal_currency: 90, next_step_at: 210, notes: 260, custom_fields: 240, created_at: 210, updated_at: 210,
};
const ROW_HEADER_WIDTH = 64;

const ofKind = (...kinds) => new Set(FIELDS.filter((f) => kinds.includes(f.kind)).map((f) => f.name));
const NUMERIC = ofKind('integer', 'decimal');
const MONO = ofKind('uuid');
const TIMESTAMPS = ofKind('timestamp');

const STAGES = [
  ['new', 'New'], ['contacted', 'Contacted'], ['qualified', 'Qualified'], ['meeting_booked', 'Meeting booked'],
  ['won', 'Won'], ['lost', 'Lost'],
];
const STAGE_LABEL = Object.fromEntries(STAGES);

const DELIVERY_STATUSES = ['pending', 'retrying', 'succeeded', 'failed', 'dead', 'skipped'];
const EVENTS = [
  ['crm_row.created', 'Row created (crm_row.created)'],
  ['crm_row.updated', 'Row updated (crm_row.updated)'],
];

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// ---------------------------------------------------------------------------------------------------------------
// Small helpers

/** Creates an element. `attrs`: `class`, `text`, `on<event>` handlers, `dataset`, booleans, other attributes. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, '');
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

const $ = (id) => document.getElementById(id);
const count = (n) => Number(n).toLocaleString('en-US');

/** `2026-11-01T09:30:00.000000Z` → `2026-11-01 09:30` (UTC, as every view's subtitle says). */
function shortTime(iso) {
  if (!iso) return '';
  return `${iso.slice(0, 10)} ${iso.slice(11, 16)}`;
}

/** `2026-11-01T09:30:00.123456Z` → `2026-11-01 09:30:00 UTC`: the sheet's display; the editor and the cell's
 *  tooltip have the exact value. */
function sheetTime(iso) {
  return /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d/.test(iso) ? `${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC` : iso;
}

/** A row value as the sheet shows it. */
function cellText(value, field) {
  if (value == null) return '';
  if (TIMESTAMPS.has(field)) return sheetTime(String(value));
  if (typeof value === 'object') return Object.keys(value).length ? JSON.stringify(value) : '';
  return String(value);
}

/** A row value as the cell editor starts with it. */
function editText(row, field) {
  const value = row[field];
  if (field === 'custom_fields') return JSON.stringify(value ?? {});
  return value == null ? '' : String(value);
}

function badge(kind, value, label) {
  return h('span', { class: `badge ${kind}-${value}`, text: label ?? value });
}

let announceTimer;
/** Speaks `message` through the page's polite live region. */
function announce(message) {
  const region = $('announcer');
  clearTimeout(announceTimer);
  region.textContent = '';
  announceTimer = setTimeout(() => { region.textContent = message; }, 30);
}

function debounce(fn, ms) {
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Session and API

let session = loadSession();

function loadSession() {
  try {
    const s = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
    if (s && typeof s.ws === 'string' && typeof s.token === 'string' && UUID.test(s.ws) && s.token) return s;
  } catch {
    /* an unreadable session is no session */
  }
  return null;
}

class ApiError extends Error {
  constructor(status, problem, fallback) {
    super(problem?.detail || problem?.title || fallback || `request failed (${status})`);
    this.status = status;
    this.problem = problem;
    this.fieldErrors = Array.isArray(problem?.errors) ? problem.errors : [];
  }

  /** The message for `field` (or a sub-path such as `events[0]`), else the problem's detail. */
  messageFor(field) {
    const hit = this.fieldErrors.find((e) => e.field === field || e.field.startsWith(`${field}[`)
      || e.field.startsWith(`${field}.`));
    return hit ? hit.message : this.message;
  }
}

/** One request to the workspace API. Resolves to the parsed JSON body (null when empty); rejects with ApiError. */
async function api(method, path, { body, ifMatch, signal, as = session } = {}) {
  const headers = { Authorization: `Bearer ${as.token}`, Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (ifMatch != null) headers['If-Match'] = `"${ifMatch}"`;
  let response;
  try {
    response = await fetch(`/v1/workspaces/${encodeURIComponent(as.ws)}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, null, 'Cannot reach the server. Check your connection and try again.');
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const error = new ApiError(response.status, data);
    if (response.status === 401 && as === session) {
      signOut('Your token is no longer accepted. Sign in again.');
    } else if (response.status === 403) {
      error.message = `Your token's role does not allow this (${data?.detail ?? 'forbidden'}).`;
    }
    throw error;
  }
  return data;
}

function isAbort(e) {
  return e?.name === 'AbortError';
}

// ---------------------------------------------------------------------------------------------------------------
// Sign-in and the shell

function showSignIn(message = '') {
  teardownView();
  $('app').hidden = true;
  $('signin').hidden = false;
  $('signin-error').textContent = message;
  document.title = 'Sign in · CRM webhook console';
  const ws = $('signin-workspace');
  (ws.value ? $('signin-token') : ws).focus();
}

function signOut(message = '') {
  session = null;
  sessionStorage.removeItem(SESSION_KEY);
  $('signin-token').value = '';
  showSignIn(message);
}

async function onSignIn(event) {
  event.preventDefault();
  const wsInput = $('signin-workspace');
  const tokenInput = $('signin-token');
  const error = $('signin-error');
  const ws = wsInput.value.trim();
  const token = tokenInput.value.trim();
  for (const input of [wsInput, tokenInput]) input.removeAttribute('aria-invalid');
  error.textContent = '';
  if (!UUID.test(ws)) {
    wsInput.setAttribute('aria-invalid', 'true');
    error.textContent = 'Enter the workspace ID, a UUID such as 0190c2a4-…';
    wsInput.focus();
    return;
  }
  if (!token) {
    tokenInput.setAttribute('aria-invalid', 'true');
    error.textContent = 'Enter your access token.';
    tokenInput.focus();
    return;
  }
  const button = $('signin-submit');
  button.disabled = true;
  button.textContent = 'Signing in…';
  try {
    // Any viewer route proves the token belongs to this workspace.
    await api('GET', '/settings/crm-webhook', { as: { ws, token } });
    session = { ws, token };
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
    tokenInput.value = '';
    showApp();
  } catch (e) {
    const message = e.status === 401
      ? 'That token is not valid.'
      : e.status === 404
        ? 'No such workspace for this token.'
        : e.message;
    error.textContent = message;
    tokenInput.setAttribute('aria-invalid', 'true');
    tokenInput.focus();
  } finally {
    button.disabled = false;
    button.textContent = 'Sign in';
  }
}

function showApp() {
  $('signin').hidden = true;
  $('app').hidden = false;
  $('workspace-label').textContent = `Workspace ${session.ws}`;
  if (!location.hash || location.hash === '#' || location.hash === '#main') {
    history.replaceState(null, '', '#/leads');
  }
  route();
}

// ---------------------------------------------------------------------------------------------------------------
// Router

const ROUTES = [
  { pattern: /^#\/leads$/, nav: 'leads', title: 'Leads', view: leadsView },
  { pattern: /^#\/sheet$/, nav: 'sheet', title: 'CRM sheet', view: sheetView },
  { pattern: /^#\/settings$/, nav: 'settings', title: 'CRM webhook settings', view: settingsView },
  { pattern: /^#\/deliveries$/, nav: 'deliveries', title: 'Deliveries', view: deliveriesView },
  { pattern: /^#\/deliveries\/([0-9a-f-]{36})$/i, nav: 'deliveries', title: 'Delivery', view: deliveryView },
];

let current = null;

function teardownView() {
  if (!current) return;
  current.controller.abort();
  try {
    current.cleanup?.();
  } catch (e) {
    console.error(e);
  }
  current = null;
  $('main').replaceChildren();
}

function route() {
  if (!session) {
    showSignIn();
    return;
  }
  const hash = location.hash;
  const match = ROUTES.map((r) => [r, r.pattern.exec(hash)]).find(([, m]) => m);
  if (!match) {
    history.replaceState(null, '', '#/leads');
    route();
    return;
  }
  const [spec, m] = match;
  teardownView();
  for (const link of document.querySelectorAll('nav a[data-route]')) {
    if (link.dataset.route === spec.nav) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  const main = $('main');
  main.dataset.view = spec.nav;
  main.dataset.route = hash;
  document.title = `${spec.title} · CRM webhook console`;
  const controller = new AbortController();
  current = { controller, cleanup: null };
  current.cleanup = spec.view(main, { signal: controller.signal }, ...m.slice(1));
  // Move focus to the new view's heading so keyboard and screen-reader users land on it.
  main.querySelector('h1')?.focus({ preventScroll: true });
  announce(`${spec.title} page`);
}

function viewShell(main, { title, subtitle, controls, scrollerLabel, scrollerFocusable = true }) {
  const heading = h('h1', { tabindex: -1, text: title });
  const head = h('div', { class: 'view-head' },
    h('div', { class: 'title' }, heading, subtitle ? h('p', { text: subtitle }) : null),
    controls);
  const scroller = h('div', {
    class: 'scroller',
    role: 'region',
    'aria-label': scrollerLabel,
    tabindex: scrollerFocusable ? 0 : null,
    'data-scroller': '',
  });
  const status = h('p', { class: 'statusbar', role: 'status', 'aria-live': 'polite' });
  main.append(head, scroller, status);
  const setStatus = (text, isError = false) => {
    status.textContent = text;
    status.classList.toggle('error', isError);
  };
  return { heading, scroller, status, setStatus };
}

/** Calls `load` when the sentinel comes within reach of the bottom of the scroller (infinite paging); the
 *  button it sits in does the same for keyboard users. */
function autoLoad(scroller, sentinel, load) {
  const observer = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) load();
  }, { root: scroller, rootMargin: '0px 0px 300px 0px' });
  observer.observe(sentinel);
  return () => observer.disconnect();
}

/** A <colgroup> with these pixel widths; the table fills the screen but never gets narrower than their sum, so
 *  on a phone it scrolls sideways instead of squeezing its columns. */
function sizedColumns(columns) {
  const colgroup = h('colgroup', {}, columns.map(() => h('col')));
  columns.forEach(([, width], i) => { colgroup.children[i].style.width = `${width}px`; });
  return colgroup;
}

function setMinWidth(table, columns) {
  table.style.minWidth = `${columns.reduce((sum, [, width]) => sum + width, 0)}px`;
}

function nearBottom(scroller) {
  return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 300;
}

// ---------------------------------------------------------------------------------------------------------------
// CRM / Leads: newest first, paged with the cursor, stage filter and search.

function leadsView(main, { signal }) {
  const PAGE = 100;
  const search = h('input', {
    id: 'leads-q', type: 'search', maxlength: 200, autocomplete: 'off', spellcheck: 'false',
    placeholder: 'Name, email, company…',
  });
  const stage = h('select', { id: 'leads-stage' },
    h('option', { value: '', text: 'All stages' }),
    STAGES.map(([value, label]) => h('option', { value, text: label })));
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter leads' },
    h('div', { class: 'control' }, h('label', { for: 'leads-q', text: 'Search' }), search),
    h('div', { class: 'control' }, h('label', { for: 'leads-stage', text: 'Stage' }), stage),
    h('button', { type: 'submit', text: 'Search' }));
  const ui = viewShell(main, {
    title: 'Leads', subtitle: 'Every CRM row, newest first. Times are UTC.', controls: form, scrollerLabel: 'Leads list',
  });

  const columns = [
    ['Name', 150], ['Email', 215], ['Company', 150], ['Stage', 130], ['Interest', 175], ['Last interest', 155],
    ['Interests', 85], ['Created', 155],
  ];
  const colgroup = sizedColumns(columns);
  const thead = h('thead', {}, h('tr', {}, columns.map(([label], i) => h('th', {
    scope: 'col',
    class: label === 'Interests' ? 'num' : null,
    'aria-sort': label === 'Created' ? 'descending' : null,
    text: label,
  }))));
  const tbody = h('tbody');
  const table = h('table', { class: 'grid leads' },
    h('caption', { class: 'visually-hidden', text: 'Leads, newest first' }), colgroup, thead, tbody);
  setMinWidth(table, columns);
  const more = h('button', { type: 'button', class: 'load-more', text: 'Load more', onclick: () => loadPage() });
  const endNote = h('p', { class: 'list-end' });
  const foot = h('div', { class: 'list-foot' }, more, endNote);
  ui.scroller.append(table, foot);

  let cursor = null;
  let done = false;
  let loading = false;
  let shown = 0;
  let generation = 0;
  let pageController = null;

  function leadRow(r) {
    const name = [r.first_name, r.last_name].filter(Boolean).join(' ');
    const interest = [r.interest_type, r.interest_channel].filter(Boolean).join(' · ');
    const cell = (text, cls) => h('td', { class: cls, title: text || null, text: text ?? '' });
    return h('tr', { dataset: { id: r.id } },
      h('th', { scope: 'row', title: name || r.email, text: name || '—' }),
      cell(r.email),
      cell(r.company),
      h('td', {}, badge('stage', r.pipeline_stage, STAGE_LABEL[r.pipeline_stage])),
      cell(interest),
      cell(shortTime(r.interest_at)),
      cell(count(r.interest_count), 'num'),
      cell(shortTime(r.created_at)));
  }

  function updateFoot() {
    more.hidden = done;
    more.disabled = loading;
    more.textContent = loading ? 'Loading…' : 'Load more';
    endNote.textContent = done
      ? (shown ? `All ${count(shown)} rows shown.` : 'No rows match.')
      : `Showing ${count(shown)} rows; more below.`;
    foot.dataset.complete = String(done);
  }

  async function loadPage() {
    if (loading || done) return;
    loading = true;
    updateFoot();
    const mine = generation;
    pageController = new AbortController();
    const params = new URLSearchParams({ limit: String(PAGE) });
    if (cursor) params.set('cursor', cursor);
    if (stage.value) params.set('stage', stage.value);
    const q = search.value.trim();
    if (q) params.set('q', q);
    try {
      const page = await api('GET', `/crm/rows?${params}`, { signal: AbortSignal.any([signal, pageController.signal]) });
      if (mine !== generation) return;
      const fragment = document.createDocumentFragment();
      for (const row of page.rows) fragment.append(leadRow(row));
      tbody.append(fragment);
      shown += page.rows.length;
      cursor = page.next_cursor;
      done = !cursor;
      ui.setStatus(done ? `${count(shown)} rows.` : `${count(shown)} rows loaded.`);
    } catch (e) {
      if (isAbort(e) || mine !== generation) return;
      ui.setStatus(e.message, true);
      loading = false;
      updateFoot();
      return;
    }
    loading = false;
    updateFoot();
    // Keep filling while the end of the list is already in view (tall screens, fast scrolling).
    if (!done && nearBottom(ui.scroller)) loadPage();
  }

  function reload() {
    generation += 1;
    pageController?.abort();
    cursor = null;
    done = false;
    loading = false;
    shown = 0;
    tbody.replaceChildren();
    ui.scroller.scrollTop = 0;
    ui.setStatus('Loading…');
    loadPage();
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    reload();
  });
  search.addEventListener('input', debounce(reload, 300));
  stage.addEventListener('change', reload);
  const stopAuto = autoLoad(ui.scroller, foot, () => loadPage());
  reload();
  return () => {
    stopAuto();
    pageController?.abort();
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Analytics > CRM: the wide sheet, every field a column, editable cells.

function sheetView(main, { signal }) {
  const progress = h('p', { class: 'help', id: 'sheet-progress', 'aria-live': 'polite' });
  const ui = viewShell(main, {
    title: 'CRM sheet',
    subtitle: 'Arrow keys move between cells. Enter or click edits; Enter or leaving the cell saves, Escape cancels.',
    controls: progress,
    scrollerLabel: 'CRM sheet',
    scrollerFocusable: false,
  });
  const table = h('table', { class: 'grid sheet', role: 'grid', 'aria-labelledby': 'sheet-title' });
  ui.heading.id = 'sheet-title';
  const tbody = h('tbody');
  ui.scroller.append(table);

  /** id → { row, tr, pending } */
  const rows = new Map();
  let columns = null;
  let active = null; // the cell with tabindex=0 (roving tabindex)
  const editors = new Set();

  function buildHeader(fields) {
    columns = fields;
    const colgroup = h('colgroup', {}, h('col'), columns.map(() => h('col')));
    colgroup.children[0].style.width = `${ROW_HEADER_WIDTH}px`;
    let total = ROW_HEADER_WIDTH;
    columns.forEach((field, i) => {
      const width = WIDTHS[field] ?? 180;
      colgroup.children[i + 1].style.width = `${width}px`;
      total += width;
    });
    table.style.width = `${total}px`;
    const header = h('tr', {},
      h('th', { scope: 'col', title: 'Row number', text: '#' }),
      columns.map((field) => h('th', {
        scope: 'col',
        class: NUMERIC.has(field) ? 'num' : null,
        title: `${field}${EDITABLE.has(field) ? '' : ' (read-only)'}`,
        'aria-sort': field === 'created_at' ? 'descending' : null,
        dataset: { field },
        text: LABELS[field] ?? field,
      })));
    table.replaceChildren(colgroup, h('thead', {}, header), tbody);
  }

  function fillCell(td, row, field) {
    const text = cellText(row[field], field);
    td.textContent = text;
    const exact = row[field] == null ? '' : cellText(row[field]);
    td.title = exact.length > 16 ? exact : '';
  }

  function rowElement(row, index) {
    const tr = h('tr', { dataset: { id: row.id } },
      h('th', { scope: 'row', class: 'num', text: String(index + 1) }));
    for (const field of columns) {
      const editable = EDITABLE.has(field);
      const td = h('td', {
        class: `${editable ? 'editable' : 'readonly'}${NUMERIC.has(field) ? ' num' : ''}${MONO.has(field) ? ' mono' : ''}`,
        'aria-readonly': editable ? null : 'true',
      });
      fillCell(td, row, field);
      tr.append(td);
    }
    return tr;
  }

  function refreshRow(rec) {
    columns.forEach((field, i) => {
      const td = rec.tr.cells[i + 1];
      if (!td.classList.contains('editing')) fillCell(td, rec.row, field);
    });
  }

  async function loadAll() {
    let cursor = null;
    let loaded = 0;
    progress.textContent = 'Loading rows…';
    try {
      do {
        const params = new URLSearchParams({ limit: '200' });
        if (cursor) params.set('cursor', cursor);
        const page = await api('GET', `/crm/rows?${params}`, { signal });
        if (!columns) {
          const extra = page.rows.length ? Object.keys(page.rows[0]).filter((k) => !ROW_FIELDS.includes(k)) : [];
          buildHeader([...ROW_FIELDS, ...extra.sort()]);
        }
        const fragment = document.createDocumentFragment();
        for (const row of page.rows) {
          if (rows.has(row.id)) continue;
          const tr = rowElement(row, loaded);
          rows.set(row.id, { row, tr, pending: Promise.resolve() });
          fragment.append(tr);
          loaded += 1;
        }
        tbody.append(fragment);
        if (!active && tbody.rows.length) {
          const emailColumn = columns.indexOf('email');
          setActive(tbody.rows[0].cells[emailColumn >= 0 ? emailColumn + 1 : 1], false);
        }
        cursor = page.next_cursor;
        progress.textContent = cursor ? `Loading… ${count(loaded)} rows so far` : `${count(loaded)} rows`;
      } while (cursor);
      table.dataset.loaded = 'true';
      if (!loaded) ui.scroller.append(h('p', { class: 'empty', text: 'No rows yet.' }));
      ui.setStatus(`${count(loaded)} rows, ${columns.length} columns.`);
    } catch (e) {
      if (isAbort(e)) return;
      ui.setStatus(e.message, true);
      progress.textContent = `Stopped after ${count(loaded)} rows.`;
    }
  }

  // ---- keyboard navigation (roving tabindex over the body cells) ----

  function setActive(cell, focus = true) {
    if (!cell) return;
    if (active && active !== cell) active.removeAttribute('tabindex');
    active = cell;
    cell.tabIndex = 0;
    if (focus) cell.focus();
  }

  function cellAt(rowIndex, colIndex) {
    const r = Math.max(0, Math.min(tbody.rows.length - 1, rowIndex));
    const tr = tbody.rows[r];
    if (!tr) return null;
    return tr.cells[Math.max(0, Math.min(tr.cells.length - 1, colIndex))];
  }

  table.addEventListener('keydown', (e) => {
    const cell = e.target;
    if (!(cell instanceof HTMLTableCellElement) || cell.parentElement.parentElement !== tbody) return;
    const r = cell.parentElement.sectionRowIndex;
    const c = cell.cellIndex;
    const page = Math.max(1, Math.floor(ui.scroller.clientHeight / (cell.offsetHeight || 36)) - 1);
    const last = cell.parentElement.cells.length - 1;
    const moves = {
      ArrowUp: [r - 1, c], ArrowDown: [r + 1, c], ArrowLeft: [r, c - 1], ArrowRight: [r, c + 1],
      PageUp: [r - page, c], PageDown: [r + page, c],
      Home: e.ctrlKey ? [0, 0] : [r, 0],
      End: e.ctrlKey ? [tbody.rows.length - 1, last] : [r, last],
    };
    if (moves[e.key]) {
      e.preventDefault();
      setActive(cellAt(...moves[e.key]));
    } else if (e.key === 'Enter' || e.key === 'F2') {
      e.preventDefault();
      startEdit(cell);
    }
  });

  table.addEventListener('click', (e) => {
    const cell = e.target.closest('td, th[scope="row"]');
    if (!cell || cell.parentElement.parentElement !== tbody || cell.classList.contains('editing')) return;
    setActive(cell);
    if (cell.classList.contains('editable')) startEdit(cell);
  });

  // ---- cell editing ----

  function startEdit(td) {
    if (!(td instanceof HTMLTableCellElement) || td.cellIndex === 0) return;
    const field = columns[td.cellIndex - 1];
    const rec = rows.get(td.parentElement.dataset.id);
    if (!rec) return;
    if (!EDITABLE.has(field)) {
      ui.setStatus(`${LABELS[field] ?? field} is read-only.`);
      return;
    }
    if (td.classList.contains('editing')) return;
    const stuck = [...editors].find((ed) => ed.error);
    if (stuck) {
      ui.setStatus('Save or cancel the edit with a message first (Enter saves, Escape cancels).', true);
      stuck.input.focus();
      return;
    }
    const who = rec.row.email;
    const label = `${LABELS[field] ?? field} of ${who}`;
    let input;
    if (field === 'pipeline_stage') {
      input = h('select', { 'aria-label': label },
        STAGES.map(([value, text]) => h('option', { value, text })));
    } else {
      input = h('input', { type: 'text', 'aria-label': label, autocomplete: 'off', spellcheck: 'false' });
    }
    input.value = editText(rec.row, field);
    const editor = { td, field, rec, input, error: null, saving: false, closed: false, msg: null };
    editors.add(editor);
    td.classList.add('editing');
    td.removeAttribute('title');
    td.replaceChildren(input);
    input.focus();
    if (input.select) input.select();

    input.addEventListener('keydown', (e) => {
      e.stopPropagation();
      if (e.key === 'Enter') {
        e.preventDefault();
        commit(editor, true);
      } else if (e.key === 'Escape') {
        e.preventDefault();
        close(editor, true);
        ui.setStatus('Edit cancelled.');
      }
    });
    input.addEventListener('blur', () => {
      // Leaving the cell saves, unless a message is shown: then only an explicit Enter saves over it.
      if (!editor.closed && !editor.saving && !editor.error) commit(editor, false);
    });
  }

  function close(editor, refocus) {
    if (editor.closed) return;
    editor.closed = true;
    editors.delete(editor);
    const { td, rec, field } = editor;
    const hadFocus = td.contains(document.activeElement);
    td.classList.remove('editing', 'conflict', 'invalid');
    td.removeAttribute('aria-busy');
    fillCell(td, rec.row, field);
    if (refocus || hadFocus) setActive(td);
  }

  function showError(editor, message, kind) {
    editor.error = message;
    const { td, input } = editor;
    td.classList.remove('conflict', 'invalid');
    td.classList.add(kind);
    input.setAttribute('aria-invalid', 'true');
    if (!editor.msg) {
      editor.msg = h('div', { class: 'cell-msg', role: 'alert', id: `cell-msg-${Math.random().toString(36).slice(2)}` });
      td.append(editor.msg);
      input.setAttribute('aria-describedby', editor.msg.id);
    }
    editor.msg.textContent = message;
    ui.setStatus(message, true);
  }

  /** The PATCH body for this edit, or null when nothing changes; throws a message for input the API would refuse. */
  function patchBody(editor) {
    const { field, rec, input } = editor;
    if (field === 'custom_fields') {
      let next;
      try {
        next = JSON.parse(input.value.trim() || '{}');
      } catch {
        throw new Error('Custom fields must be a JSON object, such as {"source": "fair"}.');
      }
      if (!next || typeof next !== 'object' || Array.isArray(next)) {
        throw new Error('Custom fields must be a JSON object, such as {"source": "fair"}.');
      }
      // The API merges: send the new and changed keys, and null for each removed key.
      const before = rec.row.custom_fields ?? {};
      const merge = {};
      for (const [key, value] of Object.entries(next)) {
        if (JSON.stringify(before[key]) !== JSON.stringify(value)) merge[key] = value;
      }
      for (const key of Object.keys(before)) if (!(key in next)) merge[key] = null;
      return Object.keys(merge).length ? { custom_fields: merge } : null;
    }
    const text = input.value.trim();
    const next = text === '' ? null : text;
    const before = rec.row[field] == null ? null : String(rec.row[field]);
    return next === before ? null : { [field]: next };
  }

  function commit(editor, explicit) {
    if (editor.closed || editor.saving) return;
    let body;
    try {
      body = patchBody(editor);
    } catch (e) {
      showError(editor, e.message, 'invalid');
      if (!explicit) editor.input.focus();
      return;
    }
    if (!body) {
      close(editor, explicit);
      return;
    }
    editor.saving = true;
    editor.td.setAttribute('aria-busy', 'true');
    ui.setStatus(`Saving ${LABELS[editor.field] ?? editor.field}…`);
    // One save at a time per row, so a second edit carries the version the first one produced.
    const { rec } = editor;
    rec.pending = rec.pending.then(() => save(editor, body, explicit));
  }

  async function save(editor, body, explicit) {
    const { rec, field, td } = editor;
    try {
      const updated = await api('PATCH', `/crm/rows/${rec.row.id}`, { body, ifMatch: rec.row.version, signal });
      rec.row = updated;
      editor.saving = false;
      close(editor, explicit);
      refreshRow(rec);
      td.classList.add('saved');
      setTimeout(() => td.classList.remove('saved'), 1200);
      ui.setStatus(`Saved ${LABELS[field] ?? field} of ${updated.email} (version ${updated.version}).`);
    } catch (e) {
      editor.saving = false;
      td.removeAttribute('aria-busy');
      if (isAbort(e)) return;
      if (e.status === 412) {
        // Someone else changed the row: show their value, keep ours in the input for a deliberate retry.
        try {
          rec.row = await api('GET', `/crm/rows/${rec.row.id}`, { signal });
          refreshRow(rec);
        } catch (inner) {
          if (isAbort(inner)) return;
        }
        const theirs = cellText(rec.row[field], field);
        showError(editor,
          `This row was changed by someone else. The current value is ${theirs ? `“${theirs}”` : 'empty'}. `
          + 'Your value is kept here: press Enter to save it anyway, or Escape to keep the current value.',
          'conflict');
      } else if (e.status === 422 || e.status === 409) {
        showError(editor, e.messageFor(field), 'invalid');
      } else if (e.status === 401) {
        // signed out already
      } else {
        showError(editor, e.message, 'invalid');
      }
    }
  }

  loadAll();
  return () => {
    editors.clear();
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Settings > CRM webhook

function settingsView(main, { signal }) {
  const ui = viewShell(main, {
    title: 'CRM webhook',
    subtitle: 'Where CRM row changes are sent, and how they are signed.',
    controls: null,
    scrollerLabel: 'CRM webhook settings',
  });
  const page = h('div', { class: 'page' });
  ui.scroller.append(page);

  const fieldError = (id) => h('p', { class: 'field-error', id, role: 'alert' });
  const disabledNotice = h('p', { class: 'notice warn', hidden: true, id: 'wh-disabled-reason' });
  const enabled = h('input', { type: 'checkbox', id: 'wh-enabled', 'aria-describedby': 'wh-enabled-error' });
  const url = h('input', {
    type: 'url', id: 'wh-url', inputmode: 'url', autocomplete: 'off', spellcheck: 'false',
    placeholder: 'https://crm.example.com/hooks/leads', 'aria-describedby': 'wh-url-help wh-url-error',
  });
  const eventBoxes = EVENTS.map(([value, label], i) => {
    const input = h('input', { type: 'checkbox', id: `wh-event-${i}`, value, name: 'events' });
    return { input, el: h('div', { class: 'check' }, input, h('label', { for: `wh-event-${i}`, text: label })) };
  });
  const secretState = h('p', { class: 'secret-state', id: 'wh-secret-state' });
  const secret = h('input', {
    type: 'password', id: 'wh-secret', autocomplete: 'new-password', spellcheck: 'false',
    'aria-describedby': 'wh-secret-state wh-secret-help wh-secret-error',
  });
  const generate = h('button', { type: 'button', id: 'wh-generate', text: 'Generate new secret' });
  // During a rotation the replaced secret still signs; if it was replaced because it leaked, end that now.
  const previousState = h('p', { class: 'help', id: 'wh-previous-state', hidden: true });
  const dropPrevious = h('button', { type: 'button', id: 'wh-drop-previous', hidden: true, text: 'Stop signing with the old secret now' });
  const onceSlot = h('div', { id: 'wh-once-slot' });
  const save = h('button', { type: 'submit', class: 'primary', id: 'wh-save', text: 'Save' });
  const test = h('button', { type: 'button', id: 'wh-test', text: 'Send test event' });
  const formError = h('p', { class: 'form-error', id: 'wh-form-error', role: 'alert' });
  const formStatus = h('p', { class: 'help', id: 'wh-status', role: 'status', 'aria-live': 'polite' });
  const updated = h('p', { class: 'help', id: 'wh-updated' });

  const form = h('form', { id: 'webhook-form', novalidate: true, 'aria-labelledby': 'wh-form-title' },
    h('h2', { id: 'wh-form-title', class: 'visually-hidden', text: 'Webhook settings' }),
    disabledNotice,
    h('div', { class: 'field' },
      h('div', { class: 'check' }, enabled, h('label', { for: 'wh-enabled', text: 'Send CRM row changes to this webhook' })),
      fieldError('wh-enabled-error')),
    h('div', { class: 'field' },
      h('label', { for: 'wh-url', text: 'Endpoint URL' }),
      url,
      h('p', { class: 'help', id: 'wh-url-help', text: 'Must be https and reachable from the internet.' }),
      fieldError('wh-url-error')),
    h('fieldset', { 'aria-describedby': 'wh-events-error' },
      h('legend', { text: 'Events to send' }),
      eventBoxes.map((b) => b.el),
      fieldError('wh-events-error')),
    h('div', { class: 'field' },
      h('label', { for: 'wh-secret', text: 'Signing secret' }),
      secretState,
      secret,
      h('p', {
        class: 'help',
        id: 'wh-secret-help',
        text: 'Write-only: it is never shown again after saving. Leave empty to keep the current secret. '
          + 'Generating replaces it at once (the previous one stays valid for 24 hours).',
      }),
      fieldError('wh-secret-error'),
      previousState,
      h('div', { class: 'row-actions' }, generate, dropPrevious)),
    onceSlot,
    formError,
    h('div', { class: 'actions' }, save, test),
    formStatus,
    updated);
  page.append(form);

  const errorSlots = { enabled: 'wh-enabled-error', url: 'wh-url-error', events: 'wh-events-error', secret: 'wh-secret-error' };
  const inputsFor = { enabled: [enabled], url: [url], events: eventBoxes.map((b) => b.input), secret: [secret] };

  function clearErrors() {
    for (const id of Object.values(errorSlots)) $(id).textContent = '';
    for (const inputs of Object.values(inputsFor)) for (const i of inputs) i.removeAttribute('aria-invalid');
    formError.textContent = '';
  }

  function showProblem(e) {
    clearErrors();
    let first = null;
    const unplaced = [];
    for (const { field, message } of e.fieldErrors) {
      const key = field.replace(/[[.].*$/, '');
      if (errorSlots[key]) {
        const slot = $(errorSlots[key]);
        slot.textContent = slot.textContent ? `${slot.textContent} ${message}` : message;
        for (const i of inputsFor[key]) i.setAttribute('aria-invalid', 'true');
        first ??= inputsFor[key][0];
      } else {
        unplaced.push(`${field}: ${message}`);
      }
    }
    if (!e.fieldErrors.length || unplaced.length) formError.textContent = unplaced.join(' ') || e.message;
    ui.setStatus('The settings were not saved.', true);
    (first ?? formError).focus?.();
  }

  function render(s) {
    enabled.checked = !!s.enabled;
    url.value = s.url ?? '';
    for (const b of eventBoxes) b.input.checked = (s.events ?? []).includes(b.input.value);
    secretState.textContent = s.secret_set
      ? `A secret is set, ending in ••••${s.secret_last4 ?? ''}.`
      : 'No secret is set yet.';
    secretState.dataset.last4 = s.secret_last4 ?? '';
    secret.placeholder = s.secret_set ? 'Leave empty to keep the current secret' : 'Paste a secret, or generate one';
    secret.value = '';
    const rotating = !!s.previous_secret_expires_at;
    previousState.hidden = !rotating;
    dropPrevious.hidden = !rotating;
    previousState.textContent = rotating
      ? `The previous secret also signs until ${shortTime(s.previous_secret_expires_at)} UTC, so receivers can switch.`
      : '';
    disabledNotice.hidden = !s.disabled_reason;
    disabledNotice.textContent = s.disabled_reason ? `The webhook was turned off: ${s.disabled_reason}` : '';
    updated.textContent = s.updated_at ? `Last saved ${shortTime(s.updated_at)} UTC.` : 'Not saved yet.';
  }

  async function refresh() {
    try {
      render(await api('GET', '/settings/crm-webhook', { signal }));
      ui.setStatus('');
    } catch (e) {
      if (!isAbort(e)) ui.setStatus(e.message, true);
    }
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors();
    const body = {
      enabled: enabled.checked,
      url: url.value.trim() || null,
      events: eventBoxes.filter((b) => b.input.checked).map((b) => b.input.value),
    };
    if (secret.value) body.secret = secret.value;
    save.disabled = true;
    formStatus.textContent = 'Saving…';
    try {
      const saved = await api('PUT', '/settings/crm-webhook', { body, signal });
      render(saved);
      formStatus.textContent = 'Settings saved.';
      ui.setStatus('Settings saved.');
    } catch (err) {
      if (isAbort(err)) return;
      formStatus.textContent = '';
      showProblem(err);
    } finally {
      body.secret = undefined;
      save.disabled = false;
    }
  });

  // The generated secret is shown once, in this box only; dismissing it (or leaving the page) drops it for good.
  let onceBox = null;
  function dismissOnce() {
    if (!onceBox) return;
    onceBox.remove();
    onceBox = null;
    generate.focus();
    ui.setStatus('The new secret is hidden and will not be shown again.');
  }

  generate.addEventListener('click', async () => {
    generate.disabled = true;
    try {
      const { secret: value } = await api('POST', '/settings/crm-webhook/secret', { signal });
      dismissOnce();
      const code = h('code', { id: 'wh-once-secret', text: value });
      const copy = h('button', { type: 'button', text: 'Copy' });
      copy.addEventListener('click', async () => {
        try {
          await navigator.clipboard.writeText(code.textContent);
          ui.setStatus('Secret copied to the clipboard.');
        } catch {
          ui.setStatus('Copying is not available here; select the secret and copy it.', true);
        }
      });
      const heading = h('h2', { tabindex: -1, text: 'New signing secret' });
      onceBox = h('div', { class: 'once', role: 'region', 'aria-labelledby': 'wh-once-title', id: 'wh-once' },
        heading,
        h('p', { text: 'Copy it now and store it in your CRM: it will not be shown again.' }),
        code,
        h('div', { class: 'row-actions' }, copy,
          h('button', { type: 'button', id: 'wh-once-dismiss', text: 'Done, hide it', onclick: dismissOnce })));
      heading.id = 'wh-once-title';
      onceSlot.append(onceBox);
      heading.focus();
      await refresh();
      ui.setStatus('A new secret was generated and saved.');
    } catch (e) {
      if (!isAbort(e)) showProblem(e);
    } finally {
      generate.disabled = false;
    }
  });

  dropPrevious.addEventListener('click', async () => {
    dropPrevious.disabled = true;
    try {
      await api('DELETE', '/settings/crm-webhook/secret/previous', { signal });
      await refresh();
      generate.focus();
      ui.setStatus('The previous secret no longer signs anything.');
    } catch (e) {
      if (!isAbort(e)) ui.setStatus(e.message, true);
    } finally {
      dropPrevious.disabled = false;
    }
  });

  test.addEventListener('click', async () => {
    test.disabled = true;
    try {
      const { delivery_id: id } = await api('POST', '/settings/crm-webhook/test', { signal });
      formStatus.replaceChildren('Test event queued. ', h('a', { href: `#/deliveries/${id}`, text: 'See its delivery' }), '.');
      ui.setStatus('Test event queued.');
    } catch (e) {
      if (!isAbort(e)) {
        formStatus.textContent = '';
        ui.setStatus(e.message, true);
      }
    } finally {
      test.disabled = false;
    }
  });

  refresh();
  return () => {
    onceBox = null;
    secret.value = '';
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Deliveries: the log with a status filter; one delivery with its attempts and redeliver.

function deliveriesView(main, { signal }) {
  const PAGE = 100;
  const status = h('select', { id: 'dl-status' },
    h('option', { value: '', text: 'All statuses' }),
    DELIVERY_STATUSES.map((s) => h('option', { value: s, text: s })));
  const refreshButton = h('button', { type: 'button', id: 'dl-refresh', text: 'Refresh' });
  const controls = h('div', { class: 'filters' },
    h('div', { class: 'control' }, h('label', { for: 'dl-status', text: 'Status' }), status),
    refreshButton);
  const ui = viewShell(main, {
    title: 'Deliveries', subtitle: 'What was sent to the CRM, newest first. Times are UTC.', controls, scrollerLabel: 'Deliveries list',
  });
  const columns = [
    ['Created', 160], ['Event', 150], ['Status', 120], ['Attempts', 90], ['Last code', 90], ['Last error', 200],
    ['Row', 100], ['Delivered', 155], ['Next attempt', 155],
  ];
  const colgroup = sizedColumns(columns);
  const tbody = h('tbody');
  const table = h('table', { class: 'grid deliveries' },
    h('caption', { class: 'visually-hidden', text: 'Deliveries, newest first' }),
    colgroup,
    h('thead', {}, h('tr', {}, columns.map(([label]) => h('th', {
      scope: 'col',
      class: ['Attempts', 'Last code'].includes(label) ? 'num' : null,
      'aria-sort': label === 'Created' ? 'descending' : null,
      text: label,
    })))),
    tbody);
  setMinWidth(table, columns);
  const more = h('button', { type: 'button', text: 'Load more', onclick: () => loadPage() });
  const endNote = h('p');
  const foot = h('div', { class: 'list-foot' }, more, endNote);
  ui.scroller.append(table, foot);

  let cursor = null;
  let done = false;
  let loading = false;
  let shown = 0;
  let generation = 0;

  function deliveryRow(d) {
    const cell = (text, cls) => h('td', { class: cls, title: text || null, text: text ?? '' });
    return h('tr', { dataset: { id: d.id } },
      h('th', { scope: 'row' }, h('a', {
        href: `#/deliveries/${d.id}`,
        'aria-label': `Delivery of ${d.event_type} created ${shortTime(d.created_at)}`,
        text: shortTime(d.created_at),
      })),
      cell(d.event_type, 'mono'),
      h('td', {}, badge('status', d.status)),
      cell(String(d.attempts), 'num'),
      cell(d.last_status_code == null ? '' : String(d.last_status_code), 'num'),
      cell(d.last_error),
      cell(d.row_id ? d.row_id.slice(0, 8) : '', 'mono'),
      cell(shortTime(d.delivered_at)),
      cell(shortTime(d.next_attempt_at)));
  }

  function updateFoot() {
    more.hidden = done;
    more.disabled = loading;
    more.textContent = loading ? 'Loading…' : 'Load more';
    endNote.textContent = done
      ? (shown ? `All ${count(shown)} deliveries shown.` : 'No deliveries yet.')
      : `Showing ${count(shown)} deliveries; more below.`;
    foot.dataset.complete = String(done);
  }

  async function loadPage() {
    if (loading || done) return;
    loading = true;
    updateFoot();
    const mine = generation;
    const params = new URLSearchParams({ limit: String(PAGE) });
    if (cursor) params.set('cursor', cursor);
    if (status.value) params.set('status', status.value);
    try {
      const page = await api('GET', `/crm-webhook/deliveries?${params}`, { signal });
      if (mine !== generation) return;
      const fragment = document.createDocumentFragment();
      for (const d of page.deliveries) fragment.append(deliveryRow(d));
      tbody.append(fragment);
      shown += page.deliveries.length;
      cursor = page.next_cursor;
      done = !cursor;
      ui.setStatus(`${count(shown)} deliveries${done ? '' : ' loaded'}.`);
    } catch (e) {
      if (isAbort(e) || mine !== generation) return;
      ui.setStatus(e.message, true);
    }
    loading = false;
    updateFoot();
    if (!done && nearBottom(ui.scroller)) loadPage();
  }

  function reload() {
    generation += 1;
    cursor = null;
    done = false;
    loading = false;
    shown = 0;
    tbody.replaceChildren();
    ui.scroller.scrollTop = 0;
    loadPage();
  }

  status.addEventListener('change', reload);
  refreshButton.addEventListener('click', reload);
  const stopAuto = autoLoad(ui.scroller, foot, () => loadPage());
  reload();
  return stopAuto;
}

function deliveryView(main, { signal }, id) {
  const back = h('a', { href: '#/deliveries', text: '← All deliveries' });
  const ui = viewShell(main, {
    title: 'Delivery', subtitle: `${id} · times are UTC`, controls: h('p', { class: 'help' }, back), scrollerLabel: 'Delivery details',
  });
  const page = h('div', { class: 'page wide' });
  ui.scroller.append(page);
  const facts = h('dl', { class: 'facts', id: 'dl-facts' });
  const redeliver = h('button', { type: 'button', class: 'primary', id: 'dl-redeliver', text: 'Redeliver' });
  const attemptsBody = h('tbody');
  const attemptColumns = [
    ['Attempt', 90], ['Started', 250], ['Duration', 100], ['Status code', 120], ['Error', 260],
    ['Response excerpt', 300],
  ];
  const attemptsTable = h('table', { class: 'grid attempts', id: 'dl-attempts' },
    h('caption', { class: 'visually-hidden', text: 'Attempts' }),
    sizedColumns(attemptColumns),
    h('thead', {}, h('tr', {}, attemptColumns
      .map(([label], i) => h('th', { scope: 'col', class: [0, 2, 3].includes(i) ? 'num' : null, text: label })))),
    attemptsBody);
  setMinWidth(attemptsTable, attemptColumns);
  page.append(
    h('section', { class: 'panel', 'aria-labelledby': 'dl-summary-title' },
      h('h2', { id: 'dl-summary-title', text: 'Summary' }), facts,
      h('div', { class: 'actions' }, redeliver),
      h('p', { class: 'help', text: 'Redeliver sends the same event again (same webhook id, new attempt numbers).' })),
    h('section', { class: 'panel', 'aria-labelledby': 'dl-attempts-title' },
      h('h2', { id: 'dl-attempts-title', text: 'Attempts' }),
      // Wider than a phone: it scrolls sideways on its own, inside the panel.
      h('div', { class: 'table-wrap', role: 'region', tabindex: 0, 'aria-labelledby': 'dl-attempts-title' },
        attemptsTable)));

  let attemptCount = 0;
  let poll = null;

  function render(d) {
    attemptCount = d.attempts.length;
    const fact = (label, value) => [h('dt', { text: label }), h('dd', {}, value ?? '—')];
    facts.replaceChildren(
      ...fact('Status', badge('status', d.status)),
      ...fact('Event', h('code', { text: d.event_type })),
      ...fact('Row', d.row_id ? h('code', { text: d.row_id }) : '—'),
      ...fact('Created', shortTime(d.created_at)),
      ...fact('Delivered', shortTime(d.delivered_at) || '—'),
      ...fact('Next attempt', shortTime(d.next_attempt_at) || '—'),
      ...fact('Last status code', d.last_status_code == null ? '—' : String(d.last_status_code)),
      ...fact('Last error', d.last_error || '—'));
    facts.dataset.status = d.status;
    attemptsBody.replaceChildren(...d.attempts.map((a) => h('tr', {},
      h('td', { class: 'num', text: String(a.attempt) }),
      h('td', { text: a.started_at }),
      h('td', { class: 'num', text: `${a.duration_ms} ms` }),
      h('td', { class: 'num', text: a.status_code == null ? '' : String(a.status_code) }),
      h('td', { title: a.error || null, text: a.error ?? '' }),
      h('td', { class: 'excerpt', text: a.response_excerpt ?? '' }))));
    if (!d.attempts.length) {
      attemptsBody.append(h('tr', {}, h('td', { colspan: 6, class: 'muted', text: 'No attempts yet.' })));
    }
  }

  async function load() {
    const d = await api('GET', `/crm-webhook/deliveries/${id}`, { signal });
    render(d);
    return d;
  }

  redeliver.addEventListener('click', async () => {
    redeliver.disabled = true;
    const before = attemptCount;
    try {
      await api('POST', `/crm-webhook/deliveries/${id}/redeliver`, { signal });
      ui.setStatus('Redelivery queued.');
      // Follow it for a little while so the new attempt shows up without a manual refresh.
      let tries = 0;
      clearInterval(poll);
      poll = setInterval(async () => {
        tries += 1;
        try {
          const d = await load();
          if ((d.attempts.length > before && !['pending', 'retrying'].includes(d.status)) || tries >= 20) {
            clearInterval(poll);
            ui.setStatus(d.attempts.length > before ? `Redelivered: ${d.status}.` : 'Redelivery still queued.');
          }
        } catch (e) {
          clearInterval(poll);
          if (!isAbort(e)) ui.setStatus(e.message, true);
        }
      }, 1000);
    } catch (e) {
      if (!isAbort(e)) ui.setStatus(e.message, true);
    } finally {
      redeliver.disabled = false;
    }
  });

  load().catch((e) => {
    if (isAbort(e)) return;
    ui.setStatus(e.status === 404 ? 'No such delivery.' : e.message, true);
  });
  return () => clearInterval(poll);
}

// ---------------------------------------------------------------------------------------------------------------
// Start

function start() {
  $('signin-form').addEventListener('submit', onSignIn);
  $('sign-out').addEventListener('click', () => signOut('You are signed out.'));
  $('skip-link').addEventListener('click', (e) => {
    e.preventDefault();
    const target = $('app').hidden ? $('signin-workspace') : ($('main').querySelector('h1') ?? $('main'));
    target.focus();
  });
  window.addEventListener('hashchange', () => {
    if (session) route();
  });
  if (session) showApp();
  else showSignIn();
}

start();
