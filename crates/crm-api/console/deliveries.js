// Deliveries: the endpoint's health, delivery health as charts, bulk recovery, and the log with a status filter
// (one delivery with its attempts is delivery.js).

import {
  DELIVERY_STATUSES, h, count, shortTime, badge, api, isAbort, viewShell, autoLoad, sizedColumns, setMinWidth,
  nearBottom, idChip,
} from './common.js';
import { healthPanel } from './health.js';
import { statsPanel } from './stats.js';
import { recoveryPanel } from './recovery.js';

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
  const say = (text, isError) => ui.setStatus(text, isError);
  const health = healthPanel({ signal, say });
  const stats = statsPanel({ signal, say });
  const recovery = recoveryPanel({ signal, say });
  const logTitle = h('h2', { class: 'log-title', id: 'dl-log-title', text: 'Delivery log' });
  ui.scroller.append(h('div', { class: 'dashboard' }, health.el, stats.el, recovery.el), logTitle);
  const columns = [
    ['Created', 160], ['Event', 150], ['Status', 120], ['Attempts', 90], ['Last code', 90], ['Last error', 200],
    ['Webhook id', 150], ['Row', 150], ['Delivered', 155], ['Next attempt', 155],
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
      h('td', { class: 'mono' }, idChip(d.id, 'Webhook id', say)),
      h('td', { class: 'mono' }, d.row_id ? idChip(d.row_id, 'Row id', say) : ''),
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
    loadPage();
  }

  status.addEventListener('change', reload);
  refreshButton.addEventListener('click', () => {
    reload();
    health.refresh();
    stats.refresh();
  });
  const stopAuto = autoLoad(ui.scroller, foot, () => loadPage());
  reload();
  return () => {
    stopAuto();
    health.stop();
    stats.stop();
    recovery.stop();
  };
}
