// Bulk recovery: send every failed (or dead, skipped, succeeded) delivery since a time again, and follow its
// progress (POST and GET …/crm-webhook/recoveries). The panel is folded until opened or a recovery shows. The re-queueing happens in crm-api's background, paced behind
// live traffic; this panel polls the recovery once a second while it runs.

import { h, $, api, isAbort, count, shortTime, idChip } from './common.js';

const RECOVERABLE = [['failed', 'Failed', true], ['dead', 'Dead', true], ['skipped', 'Skipped', false],
  ['succeeded', 'Succeeded', false]];

/** `Date` → the `YYYY-MM-DDTHH:MM` a datetime-local input takes, in UTC. */
function inputTime(date) {
  return date.toISOString().slice(0, 16);
}

export function recoveryPanel({ signal, say }) {
  const now = new Date();
  const since = h('input', {
    type: 'datetime-local', id: 'rc-since', required: true, 'aria-describedby': 'rc-since-help rc-since-error',
    min: inputTime(new Date(now.getTime() - 30 * 24 * 3600 * 1000)), max: inputTime(now),
  });
  since.value = inputTime(new Date(now.getTime() - 24 * 3600 * 1000));
  const boxes = RECOVERABLE.map(([value, label, checked], i) => {
    const input = h('input', { type: 'checkbox', id: `rc-status-${i}`, value, checked });
    return { input, el: h('div', { class: 'check' }, input, h('label', { for: `rc-status-${i}`, text: label })) };
  });
  const start = h('button', { type: 'submit', class: 'primary', id: 'rc-start', text: 'Send them again' });
  const formError = h('p', { class: 'form-error', id: 'rc-error', role: 'alert' });
  const progress = h('progress', { id: 'rc-progress', max: 1, value: 0, 'aria-labelledby': 'rc-progress-label' });
  const progressLabel = h('p', { class: 'help', id: 'rc-progress-label', role: 'status', 'aria-live': 'polite' });
  const which = h('p', { class: 'help', id: 'rc-which' });
  const progressBox = h('div', { class: 'recovery-progress', id: 'rc-status', hidden: true },
    which, progress, progressLabel);
  const form = h('form', { id: 'recovery-form', novalidate: true, 'aria-labelledby': 'rc-title' },
    h('div', { class: 'field' },
      h('label', { for: 'rc-since', text: 'Deliveries created since (UTC)' }),
      since,
      h('p', { class: 'help', id: 'rc-since-help', text: 'At most 30 days back.' }),
      h('p', { class: 'field-error', id: 'rc-since-error', role: 'alert' })),
    h('fieldset', { 'aria-describedby': 'rc-statuses-error' },
      h('legend', { text: 'With the status' }),
      h('div', { class: 'checks-inline' }, boxes.map((b) => b.el)),
      h('p', { class: 'field-error', id: 'rc-statuses-error', role: 'alert' })),
    formError,
    h('div', { class: 'actions' }, start));
  // Folded away until wanted (or while a recovery is shown): it is not needed at a glance.
  const panel = h('details', { class: 'panel recovery', id: 'recovery' },
    h('summary', {}, h('h2', { id: 'rc-title', text: 'Recover deliveries' })),
    h('p', {
      class: 'help',
      text: 'Sends each matching delivery again, with the same webhook id and new attempt numbers, a batch at a '
        + 'time behind live traffic. Deliveries still pending or retrying are left alone.',
    }),
    form, progressBox);
  let poll = null;
  let following = null;

  function clearErrors() {
    for (const id of ['rc-since-error', 'rc-statuses-error']) $(id).textContent = '';
    since.removeAttribute('aria-invalid');
    formError.textContent = '';
  }

  function render(r) {
    panel.open = true;
    progressBox.hidden = false;
    progressBox.dataset.status = r.status;
    progressBox.dataset.id = r.id;
    progress.max = Math.max(1, r.matched);
    progress.value = r.status === 'completed' ? progress.max : Math.min(r.queued, r.matched);
    which.replaceChildren(`Recovery `, idChip(r.id, 'Recovery id', say),
      ` of ${r.statuses.join(' and ')} deliveries since ${shortTime(r.since)} UTC`);
    const left = Math.max(0, r.matched - r.queued);
    progressLabel.textContent = r.status === 'completed'
      ? `Completed${r.finished_at ? ` at ${shortTime(r.finished_at)} UTC` : ''}: ${count(r.queued)} of `
        + `${count(r.matched)} matched deliveries sent again${r.matched > r.queued ? ` (${count(left)} had been `
        + 'redelivered or removed meanwhile)' : ''}.`
      : `Running: ${count(r.queued)} of ${count(r.matched)} matched deliveries queued again.`;
    start.disabled = r.status === 'running';
  }

  function follow(id) {
    following = id;
    clearInterval(poll);
    poll = setInterval(async () => {
      try {
        const r = await api('GET', `/crm-webhook/recoveries/${id}`, { signal });
        if (following !== id) return;
        render(r);
        if (r.status === 'completed') {
          clearInterval(poll);
          say(`Recovery completed: ${count(r.queued)} deliveries sent again.`);
        }
      } catch (e) {
        clearInterval(poll);
        if (!isAbort(e)) say(e.message, true);
      }
    }, 1000);
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors();
    const body = { since: since.value ? `${since.value}:00Z` : '' };
    body.statuses = boxes.filter((b) => b.input.checked).map((b) => b.input.value);
    start.disabled = true;
    try {
      const r = await api('POST', '/crm-webhook/recoveries', { body, signal });
      render(r);
      say(`Recovery started: ${count(r.matched)} deliveries match.`);
      if (r.status === 'running') follow(r.id);
    } catch (err) {
      if (isAbort(err)) return;
      start.disabled = false;
      let placed = false;
      for (const { field, message } of err.fieldErrors) {
        if (field === 'since') {
          $('rc-since-error').textContent = message;
          since.setAttribute('aria-invalid', 'true');
          placed = true;
        } else if (field.startsWith('statuses')) {
          $('rc-statuses-error').textContent = message;
          placed = true;
        }
      }
      if (!placed) formError.textContent = err.message;
      say('The recovery was not started.', true);
    }
  });

  // A recovery started earlier (here or elsewhere) is shown, and followed while it runs.
  api('GET', '/crm-webhook/recoveries?limit=1', { signal }).then((page) => {
    const latest = page.recoveries[0];
    if (!latest || following) return;
    render(latest);
    if (latest.status === 'running') follow(latest.id);
  }).catch((e) => {
    if (!isAbort(e)) say(e.message, true);
  });

  return { el: panel, stop: () => clearInterval(poll) };
}
