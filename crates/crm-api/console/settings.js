// Settings > CRM webhook: URL, events, secret, test event, and the endpoint's health with "resume now".

import {
  EVENTS, h, $, shortTime, api, isAbort, viewShell,
} from './common.js';
import { healthPanel } from './health.js';

function rateValue(text) {
  const t = text.trim();
  if (t === '') return null;
  const n = Number(t);
  return Number.isFinite(n) ? n : t;
}

export function settingsView(main, { signal }) {
  const ui = viewShell(main, {
    title: 'CRM webhook',
    subtitle: 'Where CRM row changes are sent, and how they are signed.',
    controls: null,
    scrollerLabel: 'CRM webhook settings',
  });
  const page = h('div', { class: 'page' });
  ui.scroller.append(page);
  // A resume may turn the webhook back on: the form then shows it on again.
  const health = healthPanel({ signal, say: (text, isError) => ui.setStatus(text, isError), onResumed: () => refresh() });

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
  // The optional rate cap; PUT replaces it, so the form always sends what this field holds.
  const rate = h('input', {
    type: 'text', id: 'wh-rate', inputmode: 'decimal', autocomplete: 'off', spellcheck: 'false',
    placeholder: 'No limit', 'aria-describedby': 'wh-rate-help wh-rate-error',
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
      h('label', { for: 'wh-rate', text: 'Most requests per second (optional)' }),
      rate,
      h('p', {
        class: 'help',
        id: 'wh-rate-help',
        text: 'For a CRM with a request quota: the workers together send no faster than this (0.5 is one every '
          + 'two seconds). Empty: as fast as the endpoint answers.',
      }),
      fieldError('wh-rate-error')),
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
  page.append(health.el, form);

  const errorSlots = {
    enabled: 'wh-enabled-error', url: 'wh-url-error', events: 'wh-events-error', max_per_second: 'wh-rate-error', secret: 'wh-secret-error',
  };
  const inputsFor = {
    enabled: [enabled], url: [url], events: eventBoxes.map((b) => b.input), max_per_second: [rate], secret: [secret],
  };

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
    rate.value = s.max_per_second == null ? '' : String(s.max_per_second);
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
      // A number when it reads as one; otherwise the text as typed, so the API names what is wrong with it.
      max_per_second: rateValue(rate.value),
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
    health.stop();
    onceBox = null;
    secret.value = '';
  };
}
