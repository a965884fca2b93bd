// CRM / Leads: newest first, paged with the cursor, a stage filter and search.

import {
  STAGES, STAGE_LABEL, h, $, count, shortTime, badge, debounce, api, isAbort, viewShell, autoLoad, sizedColumns,
  setMinWidth, nearBottom,
} from './common.js';

export function leadsView(main, { signal }) {
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
  let total = null;
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
      : `Showing ${count(shown)} of ${count(total ?? shown)} rows; more below.`;
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
      // The first page says how many rows match in all.
      if (page.total != null) total = page.total;
      cursor = page.next_cursor;
      done = !cursor;
      ui.setStatus(done ? `${count(shown)} rows.` : `${count(total ?? shown)} rows; ${count(shown)} loaded.`);
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
    total = null;
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
