// How the API's computers, events, alerts and firewall rules read on the page.

import { badge, computerLink, h, link } from './dom.js';
import { timeAgo } from './time.js';

export const STATUSES = ['online', 'offline', 'unknown', 'stopped', 'vm-stopped', 'activation-required'];

export function direction(computer) {
  const eff = computer.effective && computer.effective['communication.direction'];
  return eff ? String(eff.value) : '—';
}

// A firewall rule's `incoming ip/tcp`: direction, frame type and protocol in one column, as the
// CLI shows them.
export function traffic(rule) {
  return rule.direction + ' ' + rule.frame_type + '/' + rule.protocol;
}

export function eventName(e) {
  return e.name || 'unknown event ' + e.id;
}

export function eventFields(fields) {
  const entries = Object.entries(fields || {});
  if (!entries.length) return '—';
  return h('span', { class: 'kv' }, entries.map(([k, v]) => h('code', { text: k + '=' + (typeof v === 'string' ? v : JSON.stringify(v)) })));
}

// The alert kinds (schema/alerts.md; a test in src/api/assets.rs compares), for route filters.
export const ALERT_KINDS = [
  'computer-offline',
  'clock-changed',
  'manager-cannot-reach-agent',
  'notification-failed',
  'site-incident',
  'driver-offline',
];

// An alert's acknowledgement: who, when, and their comment.
export function acknowledgement(ack) {
  if (!ack) return null;
  return h('span', { class: 'ack' }, badge('alert', 'acknowledged', 'acknowledged'),
    h('span', { class: 'ack-by', text: 'by ' + ack.by + ' ' }), timeAgo(ack.at_ms),
    ack.comment ? h('span', { class: 'ack-comment', text: ack.comment }) : null);
}

// A computer's alert links to it; one about no computer (computer 0) names what it is about.
export function alertSubject(a) {
  if (a.computer) return computerLink(a.computer, a.hostname);
  if (a.kind === 'notification-failed' && a.about) return link('/notifications', 'channel ' + a.about);
  if (a.kind === 'site-incident' && a.about) {
    return h('span', {}, link('/policies/' + encodeURIComponent(a.about), 'policy ' + a.about),
      ' (' + (a.computers || []).length + ' computers)');
  }
  return '—';
}
