// Deliveries: the log with a status filter; one delivery with its attempts and redeliver.

import {
  DELIVERY_STATUSES, h, $, count, shortTime, badge, api, isAbort, viewShell, autoLoad, sizedColumns, setMinWidth,
  nearBottom,
} from './common.js';

export function deliveriesView(main, { signal }) {
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

export function deliveryView(main, { signal }, id) {
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
