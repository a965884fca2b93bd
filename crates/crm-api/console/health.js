// The webhook endpoint's health, as the workers report it (GET …/crm-webhook/health, every 2 s), with "Resume now"
// for an endpoint the breaker paused or the system turned off. Shown on the settings and deliveries views.

import { h, badge, api, isAbort, clockTime, shortTime, count } from './common.js';

const STATE_LABEL = {
  healthy: 'Healthy', limited: 'Slowed', paused: 'Paused', disabled: 'Disabled', idle: 'Idle',
};

/** What the state means, in a sentence, from the health route's answer. */
function describe(hs) {
  const workers = hs.workers === 1 ? '1 worker' : `${count(hs.workers)} workers`;
  switch (hs.state) {
    case 'paused':
      return `Paused until ${clockTime(hs.paused_until)} UTC: the endpoint failed repeatedly (or asked to wait with `
        + 'Retry-After), so nothing is sent to it until then, except one probe.';
    case 'disabled':
      return `Turned off by the system: ${hs.disabled_reason ?? 'no reason given'}.`;
    case 'limited': {
      const cap = hs.max_per_second != null ? `, rate cap ${hs.max_per_second}/s` : '';
      return `Slowed by its concurrency limit${cap}: ${count(hs.in_flight)} in flight of a limit of `
        + `${count(hs.concurrency_limit ?? 0)}, ${count(hs.queued)} waiting (${workers}).`;
    }
    case 'healthy':
      return `Sending as fast as it answers: ${count(hs.in_flight)} in flight, limit ${count(hs.concurrency_limit ?? 0)} `
        + `(${workers}).`;
    default:
      return 'Idle: no worker is sending to it right now.';
  }
}

/**
 * The health panel. `say(text, isError)` reports on the view's status line; `onResumed(reenabled)` is told after a
 * resume. Returns the panel element and a stop function (the panel polls every 5 s while its view is open).
 */
export function healthPanel({ signal, say, headingLevel = 'h2', onResumed = () => {} }) {
  const state = h('span', { class: 'health-state', id: 'eh-state' });
  const text = h('p', { class: 'health-text', id: 'eh-text' });
  const changed = h('p', { class: 'help', id: 'eh-changed' });
  const resume = h('button', { type: 'button', class: 'primary', id: 'eh-resume', hidden: true, text: 'Resume now' });
  const actions = h('div', { class: 'row-actions health-actions', hidden: true }, resume);
  const panel = h('section', { class: 'panel health', id: 'endpoint-health', 'aria-labelledby': 'eh-title' },
    h('div', { class: 'panel-head' }, h(headingLevel, { id: 'eh-title', text: 'Endpoint health' }), state),
    text, changed, actions);
  let timer = null;

  function render(hs) {
    state.replaceChildren(badge('health', hs.state, STATE_LABEL[hs.state] ?? hs.state));
    panel.dataset.state = hs.state;
    text.textContent = describe(hs);
    changed.textContent = hs.limit_changed_at ? `Limit last changed ${shortTime(hs.limit_changed_at)} UTC.` : '';
    resume.hidden = !['paused', 'disabled'].includes(hs.state);
    actions.hidden = resume.hidden;
    changed.hidden = !hs.limit_changed_at;
    resume.textContent = hs.state === 'disabled' ? 'Turn back on and resume' : 'Resume now';
  }

  async function refresh() {
    try {
      render(await api('GET', '/crm-webhook/health', { signal }));
    } catch (e) {
      if (!isAbort(e)) text.textContent = `Health unavailable: ${e.message}`;
    }
  }

  resume.addEventListener('click', async () => {
    resume.disabled = true;
    try {
      const { reenabled } = await api('POST', '/crm-webhook/health/resume', { signal });
      await onResumed(reenabled);
      say(reenabled ? 'The webhook is on again; the workers resume now.' : 'The workers resume the endpoint now.');
      // The workers report every 2 s: look again shortly.
      setTimeout(refresh, 2500);
      await refresh();
    } catch (e) {
      if (!isAbort(e)) say(e.message, true);
    } finally {
      resume.disabled = false;
    }
  });

  refresh();
  timer = setInterval(refresh, 5000);
  return { el: panel, refresh, stop: () => clearInterval(timer) };
}
