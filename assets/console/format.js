// How the API's computers and events read on the page.

import { h } from './dom.js';

export const STATUSES = ['online', 'offline', 'unknown', 'stopped', 'vm-stopped', 'activation-required'];

export function direction(computer) {
  const eff = computer.effective && computer.effective['communication.direction'];
  return eff ? String(eff.value) : '—';
}

export function eventName(e) {
  return e.name || 'unknown event ' + e.id;
}

export function eventFields(fields) {
  const entries = Object.entries(fields || {});
  if (!entries.length) return '—';
  return h('span', { class: 'kv' }, entries.map(([k, v]) => h('code', { text: k + '=' + (typeof v === 'string' ? v : JSON.stringify(v)) })));
}
