// Alerts, active or all, each dismissed in one click.

import { badge, computerLink, h, pageTitle, syncRows, table } from '../dom.js';
import { timeAbs, timeAgo } from '../time.js';
import { ApiError, api } from '../api.js';
import { query, setQuery } from '../router.js';
import { setAlertCount } from '../poll.js';

export function pageAlerts(main) {
  pageTitle(main, 'Alerts');
  const showAll = h('input', { type: 'checkbox', id: 'show-all', checked: query().get('all') === 'true' });
  const errorBox = h('p', { class: 'form-error', role: 'alert', id: 'alerts-error' });
  const headers = ['Severity', 'Alert', 'Computer', 'Message', 'Raised', 'Updated', 'Count', 'State', ''];
  const list = table('alerts', headers, 'No alerts.');
  main.append(h('div', { class: 'toolbar' }, h('label', { class: 'check' }, showAll, ' Show cleared and dismissed')), errorBox, list.node);
  showAll.addEventListener('change', () => {
    setQuery({ all: showAll.checked ? 'true' : '' });
    list.tbody.dataset.empty = showAll.checked ? 'No alerts.' : 'No active alerts.';
    refresh();
  });
  list.tbody.dataset.empty = showAll.checked ? 'No alerts.' : 'No active alerts.';

  async function dismiss(alert, button) {
    errorBox.textContent = '';
    button.disabled = true;
    try {
      await api('POST', '/alerts/' + alert.id + '/dismiss');
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      errorBox.textContent = err.message;
    }
    await refresh();
  }

  async function refresh() {
    const data = await api('GET', '/alerts' + (showAll.checked ? '?all=true' : ''));
    if (!showAll.checked) setAlertCount(data.alerts.length);
    syncRows(list.tbody, data.alerts, (a) => a.id, (a) => h('tr', { 'data-alert-id': a.id, class: a.active ? '' : 'inactive' },
      h('td', {}, badge('severity', a.severity)), h('td', { class: 'kind', text: a.kind }),
      h('td', {}, computerLink(a.computer, a.hostname)), h('td', { class: 'message', text: a.message }),
      h('td', {}, timeAgo(a.raised_ms)), h('td', {}, timeAgo(a.updated_ms)), h('td', { class: 'num', text: a.count }),
      h('td', { class: 'state' }, alertState(a)),
      h('td', {}, a.active ? h('button', { type: 'button', class: 'small dismiss', 'data-alert-id': a.id, text: 'Dismiss',
        onclick: (event) => dismiss(a, event.currentTarget) }) : null)));
  }
  return { refresh };
}

function alertState(a) {
  if (a.active) return badge('alert', 'active', 'active');
  if (a.dismissed_ms !== null && a.dismissed_ms !== undefined) return h('span', {}, badge('alert', 'dismissed', 'dismissed'), ' ', timeAbs(a.dismissed_ms));
  if (a.cleared_ms !== null && a.cleared_ms !== undefined) return h('span', {}, badge('alert', 'cleared', 'cleared'), ' ', timeAbs(a.cleared_ms));
  return '—';
}
