// Times as the console shows them: "2 min ago", local date and time, clock offsets.

import { h } from './dom.js';

function pad(n) {
  return String(n).padStart(2, '0');
}

export function absTime(ms) {
  if (ms === null || ms === undefined) return '—';
  const d = new Date(ms);
  return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' +
    pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
}

function relTime(ms) {
  const diff = Date.now() - ms;
  const s = Math.round(Math.abs(diff) / 1000);
  let text;
  if (s < 5) return 'just now';
  if (s < 60) text = s + ' s';
  else if (s < 3600) text = Math.floor(s / 60) + ' min';
  else if (s < 86400) text = Math.floor(s / 3600) + ' h';
  else text = Math.floor(s / 86400) + ' d';
  return diff >= 0 ? text + ' ago' : 'in ' + text;
}

// "2 min ago" with the local time as a tooltip; tickTimes() keeps the text current.
export function timeAgo(ms) {
  if (ms === null || ms === undefined) return h('span', { text: '—' });
  return h('time', { class: 'reltime', 'data-ms': ms, datetime: new Date(ms).toISOString(),
    title: absTime(ms), text: relTime(ms) });
}

export function timeAbs(ms) {
  if (ms === null || ms === undefined) return h('span', { text: '—' });
  return h('time', { datetime: new Date(ms).toISOString(), title: relTime(ms), text: absTime(ms) });
}

export function tickTimes() {
  for (const node of document.querySelectorAll('.reltime[data-ms]')) {
    node.textContent = relTime(Number(node.dataset.ms));
  }
}

export function formatOffset(ms) {
  if (ms === null || ms === undefined) return '—';
  const sign = ms > 0 ? '+' : ms < 0 ? '−' : '';
  const abs = Math.abs(ms);
  return sign + (abs < 1000 ? abs + ' ms' : (abs / 1000).toFixed(1) + ' s');
}
