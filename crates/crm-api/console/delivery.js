// One delivery: its summary and redeliver, its attempts, and for each attempt what the receiver got (the headers,
// signatures elided, and the body) and what it answered, with copy buttons and a curl line that replays it.

import {
  h, shortTime, badge, api, isAbort, viewShell, sizedColumns, setMinWidth, fullId, copyButton,
} from './common.js';

/** `text` quoted for a POSIX shell. */
function shellQuote(text) {
  return `'${String(text).replaceAll("'", "'\\''")}'`;
}

/** A curl command sending the attempt's request again. The signatures are the elided placeholders: a receiver that
 *  verifies them refuses it, which the comment line says. */
function curlLine(request, headers) {
  const lines = [
    '# Replays this attempt. The signature headers are placeholders (<elided>): a receiver that verifies',
    '# signatures will refuse it. The timestamp is the original attempt\'s.',
    `curl -sS -X ${request.method} ${shellQuote(request.url ?? '<the webhook URL>')} \\`,
    ...headers.map((hd) => `  -H ${shellQuote(`${hd.name}: ${hd.value}`)} \\`),
    `  --data-binary ${shellQuote(request.body)}`,
  ];
  return lines.join('\n');
}

function headersText(headers) {
  return headers.map((hd) => `${hd.name}: ${hd.value}`).join('\n');
}

/** The body, indented for reading (the copy button copies the exact bytes). */
function prettyBody(body) {
  try {
    return JSON.stringify(JSON.parse(body), null, 2);
  } catch {
    return body;
  }
}

/** A labelled block of text with a copy button. */
function block(label, id, text, say, copyText = text) {
  return h('div', { class: 'code-block' },
    h('div', { class: 'code-head' }, h('h4', { id: `${id}-label`, text: label }),
      copyButton(copyText, label.toLowerCase(), say, label)),
    h('pre', { id, tabindex: 0, 'aria-labelledby': `${id}-label` }, h('code', { text })));
}

function attemptDetails(a, request, say, open) {
  const n = a.attempt;
  const answer = a.status_code == null ? (a.error ?? 'no answer') : `HTTP ${a.status_code}`;
  const response = [
    `status: ${a.status_code ?? '—'}`,
    `duration: ${a.duration_ms} ms`,
    a.error ? `error: ${a.error}` : null,
    '',
    a.response_excerpt ?? '(no body)',
  ].filter((line) => line != null).join('\n');
  return h('details', { class: 'attempt', id: `attempt-${n}`, open, dataset: { attempt: n } },
    h('summary', {}, `Attempt ${n} · ${shortTime(a.started_at)} UTC · ${answer} · ${a.duration_ms} ms`),
    h('div', { class: 'attempt-body' },
      h('h3', { text: 'Request' }),
      block(`Request headers of attempt ${n}`, `attempt-${n}-headers`, headersText(a.request_headers), say),
      request ? block(`Request body`, `attempt-${n}-body`, prettyBody(request.body), say, request.body) : null,
      h('h3', { text: 'Answer' }),
      block(`Answer of attempt ${n}`, `attempt-${n}-answer`, response, say),
      request ? block(`curl for attempt ${n}`, `attempt-${n}-curl`, curlLine(request, a.request_headers), say) : null));
}

export function deliveryView(main, { signal }, id) {
  const back = h('a', { href: '#/deliveries', text: '← All deliveries' });
  const ui = viewShell(main, {
    title: 'Delivery', subtitle: 'Times are UTC.', controls: h('p', { class: 'help' }, back), scrollerLabel: 'Delivery details',
  });
  const say = (text, isError) => ui.setStatus(text, isError);
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
  const requestTarget = h('p', { class: 'help', id: 'dl-request-target' });
  const details = h('div', { class: 'attempt-list', id: 'dl-attempt-details' });
  page.append(
    h('section', { class: 'panel', 'aria-labelledby': 'dl-summary-title' },
      h('h2', { id: 'dl-summary-title', text: 'Summary' }), facts,
      h('div', { class: 'actions' }, redeliver),
      h('p', { class: 'help', text: 'Redeliver sends the same event again (same webhook id, new attempt numbers).' })),
    h('section', { class: 'panel', 'aria-labelledby': 'dl-attempts-title' },
      h('h2', { id: 'dl-attempts-title', text: 'Attempts' }),
      // Wider than a phone: it scrolls sideways on its own, inside the panel.
      h('div', { class: 'table-wrap', role: 'region', tabindex: 0, 'aria-labelledby': 'dl-attempts-title' },
        attemptsTable)),
    h('section', { class: 'panel', 'aria-labelledby': 'dl-request-title' },
      h('h2', { id: 'dl-request-title', text: 'What the receiver got' }),
      requestTarget,
      h('p', {
        class: 'help',
        text: 'Each attempt sends the same body; the headers carry its number and time. Signatures are never shown: '
          + 'they appear as <elided>.',
      }),
      details));

  let attemptCount = 0;
  let poll = null;
  let shownAttempts = -1;

  function render(d) {
    attemptCount = d.attempts.length;
    const fact = (label, value) => [h('dt', { text: label }), h('dd', {}, value ?? '—')];
    facts.replaceChildren(
      ...fact('Status', badge('status', d.status)),
      ...fact('Webhook id', fullId(d.id, 'webhook id', say)),
      ...fact('Event', h('code', { text: d.event_type })),
      ...fact('Row', d.row_id ? fullId(d.row_id, 'row id', say) : '—'),
      ...fact('Created', shortTime(d.created_at)),
      ...fact('Delivered', shortTime(d.delivered_at) || '—'),
      ...fact('Next attempt', shortTime(d.next_attempt_at) || '—'),
      ...fact('Last status code', d.last_status_code == null ? '—' : String(d.last_status_code)),
      ...fact('Last error', d.last_error || '—'));
    facts.dataset.status = d.status;
    attemptsBody.replaceChildren(...d.attempts.map((a) => h('tr', {},
      h('td', { class: 'num' }, h('button', {
        type: 'button',
        class: 'link',
        'aria-label': `Show attempt ${a.attempt}'s request and answer`,
        text: String(a.attempt),
        onclick: () => {
          const el = document.getElementById(`attempt-${a.attempt}`);
          if (!el) return;
          el.open = true;
          el.querySelector('summary')?.focus();
          el.scrollIntoView({ block: 'start' });
        },
      })),
      h('td', { text: a.started_at }),
      h('td', { class: 'num', text: `${a.duration_ms} ms` }),
      h('td', { class: 'num', text: a.status_code == null ? '' : String(a.status_code) }),
      h('td', { title: a.error || null, text: a.error ?? '' }),
      h('td', { class: 'excerpt', text: a.response_excerpt ?? '' }))));
    if (!d.attempts.length) {
      attemptsBody.append(h('tr', {}, h('td', { colspan: 6, class: 'muted', text: 'No attempts yet.' })));
    }
    requestTarget.textContent = d.request
      ? `${d.request.method} ${d.request.url ?? '(no URL is set)'} — the URL as configured now.`
      : 'The stored event cannot be read, so the request cannot be shown.';
    // Rebuild the attempt details only when attempts were added, so what the user opened stays open.
    if (shownAttempts !== d.attempts.length) {
      const open = new Set([...details.querySelectorAll('details[open]')].map((el) => el.dataset.attempt));
      details.replaceChildren(...d.attempts.map((a, i) => attemptDetails(a, d.request, say,
        open.has(String(a.attempt)) || (shownAttempts < 0 && i === d.attempts.length - 1))));
      if (!d.attempts.length) details.append(h('p', { class: 'muted', text: 'No attempt has been made yet.' }));
      shownAttempts = d.attempts.length;
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
