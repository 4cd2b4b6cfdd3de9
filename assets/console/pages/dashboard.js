// The dashboard: computers by status, active alerts, configurations out of date.

import { badge, computerLink, dash, h, link, pageTitle, statusBadge, syncRows, table } from '../dom.js';
import { timeAgo } from '../time.js';
import { STATUSES, alertSubject, direction } from '../format.js';
import { api, loadComputers } from '../api.js';
import { setAlertCount } from '../poll.js';

export function pageDashboard(main) {
  pageTitle(main, 'Dashboard');
  const cards = h('div', { class: 'cards' });
  const counts = {};
  for (const status of STATUSES) {
    counts[status] = h('span', { class: 'count', text: '–' });
    cards.append(h('a', { class: 'card card-' + status, href: '/computers?status=' + status, 'data-status-card': status },
      counts[status], h('span', { class: 'card-label' }, statusBadge(status))));
  }
  const total = h('span', { class: 'muted' });
  const alerts = table('dashboard-alerts', ['Severity', 'Alert', 'Computer', 'Message', 'Updated'], 'No active alerts.');
  const outdated = table('outdated', ['Computer', 'Policy', 'Status', 'Direction', 'Last heartbeat'],
    'Every activated computer runs its current configuration.');
  main.append(
    h('section', {}, h('h2', {}, 'Computers by status ', total), cards),
    h('section', {}, h('div', { class: 'section-head' }, h('h2', { text: 'Active alerts' }), link('/alerts', 'All alerts →')), alerts.node),
    h('section', {}, h('h2', { text: 'Configuration out of date' }), outdated.node));

  async function refresh() {
    const [computers, alertList] = await Promise.all([loadComputers(), api('GET', '/alerts').then((d) => d.alerts)]);
    for (const status of STATUSES) counts[status].textContent = String(computers.filter((c) => c.status === status).length);
    total.textContent = '(' + computers.length + ' in all)';
    setAlertCount(alertList.length);
    syncRows(alerts.tbody, alertList.slice(0, 10), (a) => a.id, (a) => h('tr', { 'data-alert-id': a.id },
      h('td', {}, badge('severity', a.severity)), h('td', { text: a.kind }),
      h('td', {}, alertSubject(a)), h('td', { class: 'message', text: a.message }),
      h('td', {}, timeAgo(a.updated_ms))));
    const stale = computers.filter((c) => c.agent && c.agent.config_up_to_date === false);
    syncRows(outdated.tbody, stale, (c) => c.id, (c) => h('tr', { 'data-computer-id': c.id },
      h('td', {}, computerLink(c.id, c.hostname)), h('td', { text: dash(c.policy) }),
      h('td', { class: 'status' }, statusBadge(c.status)), h('td', { text: direction(c) }),
      h('td', {}, timeAgo(c.agent.last_heartbeat_ms))));
  }
  return { refresh };
}
