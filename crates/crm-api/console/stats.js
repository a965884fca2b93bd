// Delivery health as pictures: deliveries per bucket by outcome (stacked bars) and attempt latency (p50 and p99
// lines) over the last hour or day, drawn as SVG by this page from GET …/crm-webhook/stats (aggregated in SQL).
// Each chart has a text summary (its accessible description) and a table with the same numbers.

import { h, svg, api, isAbort, count } from './common.js';

/** The outcomes the bar chart stacks, bottom up. */
const OUTCOMES = [
  ['succeeded', 'Succeeded'], ['retrying', 'Retrying'], ['failed', 'Failed'], ['dead', 'Dead'],
];
const HEIGHT = 130;
const PAD = { top: 10, right: 12, bottom: 24, left: 44 };

/** Round numbers for an axis up to `max`. */
function niceMax(max) {
  if (max <= 0) return 1;
  const step = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 2, 2.5, 5, 10]) {
    if (m * step >= max) return m * step;
  }
  return 10 * step;
}

function ms(value) {
  if (value == null) return '—';
  return value >= 1000 ? `${(value / 1000).toFixed(value >= 10000 ? 0 : 1)} s` : `${Math.round(value)} ms`;
}

/** An axis label for a bucket start: HH:MM in UTC. */
const hhmm = (iso) => iso.slice(11, 16);

/** Every how many buckets the x axis is labelled: every 10 or 20 minutes, every 4 or 8 hours, as the width allows. */
function labelEvery(stats, width) {
  const narrow = width < 420;
  if (stats.window === '1h') return narrow ? 20 : 10;
  return narrow ? 32 : 16;
}

/** The chart frame: y gridlines with labels, x labels every `every` buckets. */
function frame(width, buckets, yMax, every, yLabel) {
  const plotW = width - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const y = (v) => PAD.top + plotH - (v / yMax) * plotH;
  const parts = [];
  for (const v of [0, yMax / 2, yMax]) {
    parts.push(svg('line', { class: 'grid', x1: PAD.left, x2: width - PAD.right, y1: y(v), y2: y(v) }));
    parts.push(svg('text', { class: 'axis', x: PAD.left - 6, y: y(v) + 4, 'text-anchor': 'end', text: yLabel(v) }));
  }
  const slot = plotW / buckets.length;
  buckets.forEach((b, i) => {
    if (i % every === 0) {
      parts.push(svg('text', {
        class: 'axis', x: PAD.left + i * slot, y: HEIGHT - 6, 'text-anchor': 'start', text: hhmm(b.start),
      }));
    }
  });
  return { parts, y, slot, plotH };
}

/** Stacked bars of the deliveries created per bucket, by their status now. */
function outcomeChart(stats, width, ids) {
  const buckets = stats.buckets;
  const totals = buckets.map((b) => OUTCOMES.reduce((sum, [k]) => sum + b.deliveries[k], 0));
  // Counts are whole: an axis of at least 2 keeps its middle line on a whole number.
  const yMax = niceMax(Math.max(2, ...totals));
  const { parts, y, slot } = frame(width, buckets, yMax, labelEvery(stats, width), (v) => count(Math.round(v)));
  const bars = buckets.map((b, i) => {
    let base = 0;
    const x = PAD.left + i * slot + Math.max(0.5, slot * 0.12);
    const w = Math.max(1, slot * 0.76);
    const rects = OUTCOMES.filter(([k]) => b.deliveries[k] > 0).map(([k]) => {
      const top = y(base + b.deliveries[k]);
      const rect = svg('rect', { class: `bar series-${k}`, x, width: w, y: top, height: y(base) - top });
      base += b.deliveries[k];
      return rect;
    });
    const label = OUTCOMES.map(([k, l]) => `${count(b.deliveries[k])} ${l.toLowerCase()}`).join(', ');
    return svg('g', { class: 'bucket', 'data-start': b.start },
      svg('title', { text: `${hhmm(b.start)} UTC: ${label}` }), rects);
  });
  return svg('svg', {
    class: 'chart', width, height: HEIGHT, viewBox: `0 0 ${width} ${HEIGHT}`, role: 'img',
    'aria-labelledby': ids.title, 'aria-describedby': ids.desc, id: 'chart-outcomes',
  }, parts, bars);
}

/** Lines of the median and 99th percentile attempt duration per bucket (gaps where a bucket had no attempt). */
function latencyChart(stats, width, ids) {
  const buckets = stats.buckets;
  const yMax = niceMax(Math.max(0, ...buckets.map((b) => b.attempt_ms_p99 ?? 0)));
  const { parts, y, slot } = frame(width, buckets, yMax, labelEvery(stats, width), (v) => ms(v));
  const line = (key, cls) => {
    let d = '';
    let pen = 'M';
    buckets.forEach((b, i) => {
      const v = b[key];
      if (v == null) {
        pen = 'M';
        return;
      }
      d += `${pen}${(PAD.left + (i + 0.5) * slot).toFixed(1)},${y(v).toFixed(1)} `;
      pen = 'L';
    });
    const dots = buckets.map((b, i) => (b[key] == null ? null
      : svg('circle', { class: `dot ${cls}`, cx: PAD.left + (i + 0.5) * slot, cy: y(b[key]), r: 2 },
        svg('title', { text: `${hhmm(b.start)} UTC: ${key === 'attempt_ms_p50' ? 'p50' : 'p99'} ${ms(b[key])}` }))));
    return [svg('path', { class: `line ${cls}`, d: d.trim() || 'M0,0' }), dots];
  };
  return svg('svg', {
    class: 'chart', width, height: HEIGHT, viewBox: `0 0 ${width} ${HEIGHT}`, role: 'img',
    'aria-labelledby': ids.title, 'aria-describedby': ids.desc, id: 'chart-latency',
  }, parts, line('attempt_ms_p99', 'p99'), line('attempt_ms_p50', 'p50'));
}

function windowName(stats) {
  return stats.window === '1h' ? 'the last hour' : 'the last day';
}

function outcomeSummary(stats) {
  const t = stats.totals;
  const per = stats.bucket_seconds === 60 ? 'minute' : '15 minutes';
  const busiest = stats.buckets.reduce((best, b) => {
    const n = OUTCOMES.reduce((sum, [k]) => sum + b.deliveries[k], 0);
    return n > best.n ? { n, at: b.start } : best;
  }, { n: 0, at: null });
  const head = `Deliveries created in ${windowName(stats)}, per ${per}, by outcome: ${count(t.succeeded)} succeeded, `
    + `${count(t.retrying)} retrying, ${count(t.failed)} failed, ${count(t.dead)} dead`
    + ` (and ${count(t.pending)} pending, ${count(t.skipped)} skipped).`;
  return busiest.at ? `${head} The busiest ${per === 'minute' ? 'minute' : 'quarter hour'} was `
    + `${hhmm(busiest.at)} UTC with ${count(busiest.n)}.` : `${head} None in this window.`;
}

function latencySummary(stats) {
  const a = stats.latency.attempt_ms;
  const d = stats.latency.delivery_ms;
  return `Attempt duration over ${count(a.count)} attempts: p50 ${ms(a.p50)}, p90 ${ms(a.p90)}, p99 ${ms(a.p99)}. `
    + `Time from a change to its delivery, over ${count(d.count)} delivered: p50 ${ms(d.p50)}, p90 ${ms(d.p90)}, `
    + `p99 ${ms(d.p99)}.`;
}

/** The same numbers as a table: one row per bucket that had deliveries or attempts. */
function dataTable(stats) {
  const rows = stats.buckets.filter((b) => OUTCOMES.some(([k]) => b.deliveries[k] > 0) || b.attempt_ms_p50 != null
    || b.deliveries.pending > 0 || b.deliveries.skipped > 0);
  const head = ['Bucket (UTC)', ...OUTCOMES.map(([, l]) => l), 'Pending', 'Skipped', 'Attempt p50', 'Attempt p99'];
  return h('table', { class: 'grid stats-table', id: 'stats-table' },
    h('caption', { text: `Deliveries and attempt latency per bucket, ${windowName(stats)}` }),
    h('thead', {}, h('tr', {}, head.map((label, i) => h('th', { scope: 'col', class: i ? 'num' : null, text: label })))),
    h('tbody', {}, rows.length ? rows.map((b) => h('tr', {},
      h('th', { scope: 'row', text: `${b.start.slice(0, 10)} ${hhmm(b.start)}` }),
      OUTCOMES.map(([k]) => h('td', { class: 'num', text: count(b.deliveries[k]) })),
      h('td', { class: 'num', text: count(b.deliveries.pending) }),
      h('td', { class: 'num', text: count(b.deliveries.skipped) }),
      h('td', { class: 'num', text: ms(b.attempt_ms_p50) }),
      h('td', { class: 'num', text: ms(b.attempt_ms_p99) })))
      : h('tr', {}, h('td', { colspan: head.length, class: 'muted', text: 'No deliveries in this window.' }))));
}

function legend(entries) {
  return h('ul', { class: 'legend', 'aria-hidden': 'true' },
    entries.map(([cls, label]) => h('li', {}, h('span', { class: `swatch ${cls}` }), label)));
}

/** The charts panel. Returns the element, a refresh function and a stop function (it refreshes every 30 s). */
export function statsPanel({ signal, say }) {
  let win = '1h';
  const hour = h('button', { type: 'button', id: 'stats-1h', 'aria-pressed': 'true', text: 'Last hour' });
  const day = h('button', { type: 'button', id: 'stats-24h', 'aria-pressed': 'false', text: 'Last day' });
  const outcomeBox = h('div', { class: 'chart-box', id: 'stats-outcomes' });
  const latencyBox = h('div', { class: 'chart-box', id: 'stats-latency' });
  const outcomeDesc = h('p', { class: 'chart-desc', id: 'stats-outcomes-desc' });
  const latencyDesc = h('p', { class: 'chart-desc', id: 'stats-latency-desc' });
  const tableSlot = h('div', { class: 'table-wrap', role: 'region', tabindex: 0, 'aria-label': 'Statistics table' });
  const panel = h('section', { class: 'panel stats', id: 'delivery-stats', 'aria-labelledby': 'stats-title' },
    h('div', { class: 'panel-head' },
      h('h2', { id: 'stats-title', text: 'Delivery health' }),
      h('div', { class: 'segmented', role: 'group', 'aria-label': 'Window' }, hour, day)),
    // Side by side on a wide screen, one under the other on a phone.
    h('div', { class: 'charts' },
      h('div', { class: 'chart-cell' },
        h('h3', { id: 'stats-outcomes-title', text: 'Deliveries by outcome' }),
        legend(OUTCOMES.map(([k, l]) => [`series-${k}`, l])),
        outcomeBox, outcomeDesc),
      h('div', { class: 'chart-cell' },
        h('h3', { id: 'stats-latency-title', text: 'Attempt duration' }),
        legend([['p50', 'p50 (median)'], ['p99', 'p99']]),
        latencyBox, latencyDesc)),
    h('details', { class: 'stats-details', id: 'stats-details' },
      h('summary', { text: 'Show the numbers as a table' }), tableSlot));
  let last = null;

  function draw() {
    if (!last) return;
    const width = (box) => Math.max(240, Math.floor(box.clientWidth || 480));
    outcomeBox.replaceChildren(outcomeChart(last, width(outcomeBox),
      { title: 'stats-outcomes-title', desc: 'stats-outcomes-desc' }));
    latencyBox.replaceChildren(latencyChart(last, width(latencyBox),
      { title: 'stats-latency-title', desc: 'stats-latency-desc' }));
  }

  async function refresh() {
    try {
      last = await api('GET', `/crm-webhook/stats?window=${win}`, { signal });
      panel.dataset.window = last.window;
      outcomeDesc.textContent = outcomeSummary(last);
      latencyDesc.textContent = latencySummary(last);
      tableSlot.replaceChildren(dataTable(last));
      draw();
      panel.dataset.loaded = 'true';
    } catch (e) {
      if (!isAbort(e)) say(`Statistics unavailable: ${e.message}`, true);
    }
  }

  for (const [button, value] of [[hour, '1h'], [day, '24h']]) {
    button.addEventListener('click', () => {
      win = value;
      hour.setAttribute('aria-pressed', String(value === '1h'));
      day.setAttribute('aria-pressed', String(value === '24h'));
      panel.dataset.loaded = 'false';
      refresh();
    });
  }
  const resize = new ResizeObserver(() => draw());
  resize.observe(outcomeBox);
  refresh();
  const timer = setInterval(refresh, 30000);
  return {
    el: panel,
    refresh,
    stop: () => {
      clearInterval(timer);
      resize.disconnect();
    },
  };
}
