// Analytics > CRM: the wide sheet, every field a column, editable cells.

import {
  ROW_FIELDS, EDITABLE, LABELS, WIDTHS, ROW_HEADER_WIDTH, NUMERIC, MONO, STAGES, h, $, count, cellText, editText,
  api, isAbort, viewShell,
} from './common.js';

export function sheetView(main, { signal }) {
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
