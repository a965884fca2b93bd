// CRM webhook console: a small single-page app over the public REST API (docs/contract.md §2). No framework, no build
// step, no third-party code. It talks only to /v1/workspaces/{ws}/* with the workspace token entered on the
// sign-in screen; the token lives in this tab's sessionStorage and is sent only in the Authorization header.
//
// Routes are URL fragments: #/leads, #/sheet, #/settings, #/deliveries, #/deliveries/<id>. Each view renders into
// <main> as a grid of three rows — heading and controls, exactly one scroll container (.scroller), a status
// line — and returns a clean-up function; leaving a view aborts its requests. This file is the shell: sign-in,
// navigation and the router; each view is a module of its own, over common.js.

import {
  SESSION_KEY, UUID, $, announce, session, setSession, api, onUnauthorized,
} from './common.js';
import { leadsView } from './leads.js';
import { sheetView } from './sheet.js';
import { settingsView } from './settings.js';
import { deliveriesView } from './deliveries.js';
import { deliveryView } from './delivery.js';

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
  setSession(null);
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
    setSession({ ws, token });
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


// ---------------------------------------------------------------------------------------------------------------
// Start

function start() {
  onUnauthorized(signOut);
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
