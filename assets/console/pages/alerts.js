// Alerts, active or all: each dismissed in one click, or several chosen and acknowledged (with
// a comment) or dismissed at once.

import { badge, h, pageTitle, syncRows, table } from '../dom.js';
import { timeAbs, timeAgo } from '../time.js';
import { acknowledgement, alertSubject } from '../format.js';
import { ApiError, api } from '../api.js';
import { FieldError, clearErrors, noticeBox, onSubmit, showError } from '../forms.js';
import { query, setQuery } from '../router.js';
import { setAlertCount } from '../poll.js';

export function pageAlerts(main) {
  pageTitle(main, 'Alerts');
  const notice = noticeBox();
  const showAll = h('input', { type: 'checkbox', id: 'show-all', checked: query().get('all') === 'true' });
  const errorBox = h('p', { class: 'form-error', role: 'alert', id: 'alerts-error' });
  const selectAll = h('input', { type: 'checkbox', id: 'select-all-alerts', 'aria-label': 'Select every active alert' });
  const headers = [selectAll, 'Severity', 'Alert', 'Computer', 'Message', 'Raised', 'Updated', 'Count', 'State', ''];
  const list = table('alerts', headers, 'No alerts.');
  // Ids of the active alerts ticked; kept across refreshes, which may rebuild their rows.
  const selected = new Set();
  let shown = [];

  const chosen = h('span', { class: 'muted', id: 'alerts-selected', role: 'status' });
  const comment = h('input', { id: 'ack-comment', 'data-field': 'comment', maxlength: 500, autocomplete: 'off',
    placeholder: 'replacing the PSU', 'aria-label': 'Comment' });
  const dismissButton = h('button', { type: 'button', id: 'bulk-dismiss', class: 'danger', text: 'Dismiss',
    onclick: () => bulkDismiss() });
  const bulkForm = h('form', { id: 'alerts-bulk', class: 'inline-form compact' },
    chosen, h('label', { for: 'ack-comment', text: 'Comment' }), comment,
    h('button', { type: 'submit', id: 'bulk-acknowledge', text: 'Acknowledge' }), dismissButton,
    h('p', { class: 'form-error', role: 'alert' }));
  onSubmit(bulkForm, () => bulk(true));

  main.append(notice,
    h('div', { class: 'toolbar' }, h('label', { class: 'check' }, showAll, ' Show cleared and dismissed'), bulkForm),
    h('p', { class: 'muted', text: 'An acknowledged alert stays active while its condition lasts but is not notified again; a dismissed one ends now.' }),
    errorBox, list.node);
  showAll.addEventListener('change', () => {
    setQuery({ all: showAll.checked ? 'true' : '' });
    list.tbody.dataset.empty = showAll.checked ? 'No alerts.' : 'No active alerts.';
    refresh();
  });
  list.tbody.dataset.empty = showAll.checked ? 'No alerts.' : 'No active alerts.';
  selectAll.addEventListener('change', () => {
    for (const a of shown.filter((x) => x.active)) {
      if (selectAll.checked) selected.add(a.id);
      else selected.delete(a.id);
    }
    for (const box of list.tbody.querySelectorAll('input.select-alert')) box.checked = selectAll.checked;
    showSelection();
  });

  function showSelection() {
    const active = shown.filter((a) => a.active).length;
    chosen.textContent = selected.size === 1 ? '1 selected' : selected.size + ' selected';
    selectAll.checked = active > 0 && selected.size === active;
    selectAll.indeterminate = selected.size > 0 && selected.size < active;
    selectAll.disabled = active === 0;
  }

  // POST /alerts/acknowledge or /alerts/dismiss with the ticked ids; each id's outcome is in
  // the answer, and one that could not be done does not stop the others.
  async function bulk(ack) {
    notice.clear();
    const ids = [...selected];
    if (!ids.length) throw new FieldError(null, 'Tick the alerts to ' + (ack ? 'acknowledge' : 'dismiss') + ' first.');
    const body = { ids: ids };
    if (ack && comment.value.trim() !== '') body.comment = comment.value.trim();
    const answer = await api('POST', '/alerts/' + (ack ? 'acknowledge' : 'dismiss'), body);
    reportBulk(notice, ack, answer);
    for (const r of answer.results) if (r.done) selected.delete(r.id);
    if (ack) comment.value = '';
    await refresh();
  }

  // The form's submit acknowledges; this second button dismisses, its errors shown alike.
  async function bulkDismiss() {
    clearErrors(bulkForm);
    dismissButton.disabled = true;
    try {
      await bulk(false);
    } catch (err) {
      if (err instanceof ApiError || err instanceof FieldError) showError(bulkForm, err);
      else throw err;
    } finally {
      dismissButton.disabled = false;
    }
  }

  async function dismiss(alert, button) {
    errorBox.textContent = '';
    button.disabled = true;
    try {
      await api('POST', '/alerts/' + alert.id + '/dismiss');
      selected.delete(alert.id);
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      errorBox.textContent = err.message;
    }
    await refresh();
  }

  function tick(alert, box) {
    if (box.checked) selected.add(alert.id);
    else selected.delete(alert.id);
    showSelection();
  }

  async function refresh() {
    const data = await api('GET', '/alerts' + (showAll.checked ? '?all=true' : ''));
    if (!showAll.checked) setAlertCount(data.alerts.length);
    shown = data.alerts;
    const active = new Set(shown.filter((a) => a.active).map((a) => a.id));
    for (const id of [...selected]) if (!active.has(id)) selected.delete(id);
    syncRows(list.tbody, shown, (a) => a.id, (a) => h('tr', { 'data-alert-id': a.id, class: a.active ? '' : 'inactive' },
      h('td', {}, a.active ? h('input', { type: 'checkbox', class: 'select-alert', 'data-alert-id': a.id,
        'aria-label': 'Select alert ' + a.id, checked: selected.has(a.id), onchange: (event) => tick(a, event.currentTarget) }) : null),
      h('td', {}, badge('severity', a.severity)), h('td', { class: 'kind', text: a.kind }),
      h('td', {}, alertSubject(a)), h('td', { class: 'message', text: a.message }),
      h('td', {}, timeAgo(a.raised_ms)), h('td', {}, timeAgo(a.updated_ms)), h('td', { class: 'num', text: a.count }),
      h('td', { class: 'state' }, alertState(a)),
      h('td', {}, a.active ? h('button', { type: 'button', class: 'small dismiss', 'data-alert-id': a.id, text: 'Dismiss',
        onclick: (event) => dismiss(a, event.currentTarget) }) : null)));
    // A reused row keeps its box as the user left it; a rebuilt one was drawn from `selected`.
    for (const box of list.tbody.querySelectorAll('input.select-alert')) box.checked = selected.has(Number(box.dataset.alertId));
    showSelection();
  }
  return { refresh };
}

function reportBulk(notice, ack, answer) {
  const verb = ack ? 'Acknowledged' : 'Dismissed';
  const total = answer.results.length;
  const failed = answer.results.filter((r) => !r.done);
  const head = verb + ' ' + answer.done + (total === answer.done ? '' : ' of ' + total) + (total === 1 ? ' alert.' : ' alerts.');
  if (!failed.length) {
    notice.ok(head);
    return;
  }
  notice.error(head + ' ' + failed.map((r) => 'Alert ' + r.id + ': ' + r.error + '.').join(' '));
}

function alertState(a) {
  if (a.active) return h('span', {}, badge('alert', 'active', 'active'), acknowledgement(a.acknowledged));
  if (a.dismissed_ms !== null && a.dismissed_ms !== undefined) return h('span', {}, badge('alert', 'dismissed', 'dismissed'), ' ', timeAbs(a.dismissed_ms));
  if (a.cleared_ms !== null && a.cleared_ms !== undefined) return h('span', {}, badge('alert', 'cleared', 'cleared'), ' ', timeAbs(a.cleared_ms));
  return '—';
}
