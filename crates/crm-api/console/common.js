// What every view of the console shares: the row's field list and labels, DOM and formatting helpers, the signed-in
// session and the API client, and the layout of a view.

import { FIELDS } from './fields.js';

export const SESSION_KEY = 'crm-console.session';

/** The row's fields in column order, with their labels and kinds: crm-api writes fields.js from crm-mapping's
 *  field list, the same definition the API's rows come from, so the sheet shows every field the rows have. */
export const ROW_FIELDS = FIELDS.map((f) => f.name);
/** The fields PATCH accepts; every other column is read-only. */
export const EDITABLE = new Set(FIELDS.filter((f) => f.editable).map((f) => f.name));
export const LABELS = Object.fromEntries(FIELDS.map((f) => [f.name, f.label]));

/** Sheet column widths in pixels (table-layout: fixed). */
export const WIDTHS = {
  id: 290, workspace_id: 290, version: 80, email: 250, first_name: 140, last_name: 140, phone: 150, company: 180,
  job_title: 180, linkedin_url: 240, campaign: 150, interest_type: 150, interest_channel: 140,
  interest_message: 260, interest_at: 210, interest_count: 90, pipeline_stage: 160, owner: 150, deal_value: 120,
  deal_currency: 90, next_step_at: 210, notes: 260, custom_fields: 240, created_at: 210, updated_at: 210,
};
export const ROW_HEADER_WIDTH = 64;

export const ofKind = (...kinds) => new Set(FIELDS.filter((f) => kinds.includes(f.kind)).map((f) => f.name));
export const NUMERIC = ofKind('integer', 'decimal');
export const MONO = ofKind('uuid');
export const TIMESTAMPS = ofKind('timestamp');

export const STAGES = [
  ['new', 'New'], ['contacted', 'Contacted'], ['qualified', 'Qualified'], ['meeting_booked', 'Meeting booked'],
  ['won', 'Won'], ['lost', 'Lost'],
];
export const STAGE_LABEL = Object.fromEntries(STAGES);

export const DELIVERY_STATUSES = ['pending', 'retrying', 'succeeded', 'failed', 'dead', 'skipped'];
export const EVENTS = [
  ['crm_row.created', 'Row created (crm_row.created)'],
  ['crm_row.updated', 'Row updated (crm_row.updated)'],
];

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// ---------------------------------------------------------------------------------------------------------------
// Small helpers

/** Creates an element. `attrs`: `class`, `text`, `on<event>` handlers, `dataset`, booleans, other attributes. */
export function h(tag, attrs = {}, ...children) {
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

export const $ = (id) => document.getElementById(id);
export const count = (n) => Number(n).toLocaleString('en-US');

/** `2026-11-01T09:30:00.000000Z` → `2026-11-01 09:30` (UTC, as every view's subtitle says). */
export function shortTime(iso) {
  if (!iso) return '';
  return `${iso.slice(0, 10)} ${iso.slice(11, 16)}`;
}

/** `2026-11-01T09:30:00.123456Z` → `2026-11-01 09:30:00 UTC`: the sheet's display; the editor and the cell's
 *  tooltip have the exact value. */
export function sheetTime(iso) {
  return /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d/.test(iso) ? `${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC` : iso;
}

/** A row value as the sheet shows it. */
export function cellText(value, field) {
  if (value == null) return '';
  if (TIMESTAMPS.has(field)) return sheetTime(String(value));
  if (typeof value === 'object') return Object.keys(value).length ? JSON.stringify(value) : '';
  return String(value);
}

/** A row value as the cell editor starts with it. */
export function editText(row, field) {
  const value = row[field];
  if (field === 'custom_fields') return JSON.stringify(value ?? {});
  return value == null ? '' : String(value);
}

export function badge(kind, value, label) {
  return h('span', { class: `badge ${kind}-${value}`, text: label ?? value });
}

/** The part of an id that tells ids apart: UUIDv7s created close together share their first (time) digits, so the
 *  last eight (random) ones are shown, after an ellipsis. */
export function idTail(id) {
  return id ? `…${id.slice(-8)}` : '';
}

/** Copies `text`, saying so through `say(message, isError)`. The clipboard API needs a secure context (https or
 *  loopback); elsewhere a hidden textarea and execCommand do it. */
export async function copyText(text, say, what = 'Text') {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
    } else {
      const area = h('textarea', { class: 'visually-hidden', readonly: true, 'aria-hidden': 'true' });
      area.value = text;
      document.body.append(area);
      area.select();
      const ok = document.execCommand('copy');
      area.remove();
      if (!ok) throw new Error('copy refused');
    }
    say(`${what} copied to the clipboard.`);
  } catch {
    say(`Copying is not available here; select the ${what.toLowerCase()} and copy it.`, true);
  }
}

/** A small "Copy" button for `text` (a function, for text that changes), with an accessible name. */
export function copyButton(text, label, say, what = label) {
  return h('button', {
    type: 'button',
    class: 'copy',
    'aria-label': `Copy ${label}`,
    title: `Copy ${label}`,
    text: 'Copy',
    onclick: () => copyText(typeof text === 'function' ? text() : text, say, what),
  });
}

/** An id shown by its distinguishing tail (the whole id in its tooltip and for screen readers) with a copy button. */
export function idChip(id, label, say) {
  return h('span', { class: 'id-chip', dataset: { id } },
    h('code', { title: id },
      h('span', { 'aria-hidden': 'true', text: idTail(id) }),
      h('span', { class: 'visually-hidden', text: `${label} ${id}` })),
    copyButton(id, `${label} ${id}`, say, label));
}

/** A whole id with a copy button. */
export function fullId(id, label, say) {
  return h('span', { class: 'id-chip', dataset: { id } }, h('code', { text: id }), copyButton(id, label, say, label));
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** Creates an SVG element with attributes (no inline style: the console's policy forbids it). */
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (key === 'text') el.textContent = value;
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child != null && child !== false) el.append(child);
  }
  return el;
}

/** `2026-11-01T09:30:15.123456Z` → `09:30:15`. */
export function clockTime(iso) {
  return iso ? iso.slice(11, 19) : '';
}

export let announceTimer;
/** Speaks `message` through the page's polite live region. */
export function announce(message) {
  const region = $('announcer');
  clearTimeout(announceTimer);
  region.textContent = '';
  announceTimer = setTimeout(() => { region.textContent = message; }, 30);
}

export function debounce(fn, ms) {
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Session and API

/** The signed-in workspace and token, or null. */
export let session = loadSession();

/** Signs in (a session) or out (null). */
export function setSession(next) {
  session = next;
}

export let unauthorized = () => {};

/** What to do when the API no longer accepts this tab's token (the shell signs out). */
export function onUnauthorized(fn) {
  unauthorized = fn;
}

export function loadSession() {
  try {
    const s = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
    if (s && typeof s.ws === 'string' && typeof s.token === 'string' && UUID.test(s.ws) && s.token) return s;
  } catch {
    /* an unreadable session is no session */
  }
  return null;
}

export class ApiError extends Error {
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
export async function api(method, path, { body, ifMatch, signal, as = session } = {}) {
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
      unauthorized('Your token is no longer accepted. Sign in again.');
    } else if (response.status === 403) {
      error.message = `Your token's role does not allow this (${data?.detail ?? 'forbidden'}).`;
    }
    throw error;
  }
  return data;
}

export function isAbort(e) {
  return e?.name === 'AbortError';
}

export function viewShell(main, { title, subtitle, controls, scrollerLabel, scrollerFocusable = true }) {
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
export function autoLoad(scroller, sentinel, load) {
  const observer = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) load();
  }, { root: scroller, rootMargin: '0px 0px 300px 0px' });
  observer.observe(sentinel);
  return () => observer.disconnect();
}

/** A <colgroup> with these pixel widths; the table fills the screen but never gets narrower than their sum, so
 *  on a phone it scrolls sideways instead of squeezing its columns. */
export function sizedColumns(columns) {
  const colgroup = h('colgroup', {}, columns.map(() => h('col')));
  columns.forEach(([, width], i) => { colgroup.children[i].style.width = `${width}px`; });
  return colgroup;
}

export function setMinWidth(table, columns) {
  table.style.minWidth = `${columns.reduce((sum, [, width]) => sum + width, 0)}px`;
}

export function nearBottom(scroller) {
  return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 300;
}
