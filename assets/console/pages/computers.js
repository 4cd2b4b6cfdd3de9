// The computers list, with its filters and the form that adds one.

import { badge, computerLink, dash, h, labelled, link, option, pageTitle, statusBadge, syncRows, table, yesNo } from '../dom.js';
import { timeAgo } from '../time.js';
import { STATUSES, direction } from '../format.js';
import { api, loadComputers, loadPolicies } from '../api.js';
import { onSubmit, policyOptions } from '../forms.js';
import { query, setQuery } from '../router.js';

const KINDS = ['server', 'laptop', 'vm', 'appliance'];

export function pageComputers(main) {
  pageTitle(main, 'Computers');
  const q = query();
  const search = h('input', { id: 'computer-search', type: 'search', placeholder: 'Search hostname or policy',
    'aria-label': 'Search hostname or policy', value: q.get('q') || '', autocomplete: 'off' });
  const statusSelect = h('select', { id: 'status-filter', 'aria-label': 'Status' },
    option('', 'All statuses', !q.get('status')),
    STATUSES.map((s) => option(s, s, s === q.get('status'))));
  const shown = h('span', { class: 'muted', id: 'computer-count' });
  const list = table('computers', ['Hostname', 'Kind', 'Status', 'Policy', 'Last heartbeat', 'Direction', 'TLS', 'Config up to date'],
    'No computers match.');
  let computers = [];

  function applyFilter() {
    setQuery({ q: search.value.trim(), status: statusSelect.value });
    const needle = search.value.trim().toLowerCase();
    const rows = computers.filter((c) => (!statusSelect.value || c.status === statusSelect.value) &&
      (!needle || c.hostname.toLowerCase().includes(needle) || String(c.policy || '').toLowerCase().includes(needle)));
    shown.textContent = rows.length + ' of ' + computers.length;
    syncRows(list.tbody, rows, (c) => c.id, computerRow);
  }
  search.addEventListener('input', applyFilter);
  statusSelect.addEventListener('change', applyFilter);

  const addForm = addComputerForm(() => refresh());
  main.append(
    h('div', { class: 'toolbar' }, search, statusSelect, shown),
    list.node,
    addForm.node);

  async function refresh() {
    const [list, policies] = await Promise.all([loadComputers(), loadPolicies()]);
    computers = list.sort((a, b) => a.hostname.localeCompare(b.hostname));
    addForm.setPolicies(policies);
    applyFilter();
  }
  return { refresh };
}

function computerRow(c) {
  const agent = c.agent || {};
  return h('tr', { 'data-computer-id': c.id },
    h('td', { class: 'hostname' }, computerLink(c.id, c.hostname)),
    h('td', { text: c.kind }),
    h('td', { class: 'status', 'data-status': c.status }, statusBadge(c.status)),
    h('td', { class: 'policy' }, c.policy_id !== null && c.policy_id !== undefined ? link('/policies/' + c.policy_id, c.policy) : '—'),
    h('td', {}, timeAgo(agent.last_heartbeat_ms)),
    h('td', { text: direction(c) }),
    h('td', { text: dash(agent.tls_version) }),
    h('td', { class: 'config' }, c.agent ? badge('config', yesNo(agent.config_up_to_date)) : '—'));
}

function addComputerForm(onAdded) {
  const hostname = h('input', { id: 'new-hostname', 'data-field': 'hostname', required: true,
    autocomplete: 'off', spellcheck: 'false', placeholder: 'web1.example.lan' });
  const policy = h('select', { id: 'new-computer-policy', 'data-field': 'policy' });
  const kind = h('select', { id: 'new-kind', 'data-field': 'kind' }, KINDS.map((k) => option(k, k, k === 'server')));
  const done = h('span', { class: 'saved', role: 'status' });
  const form = h('form', { id: 'add-computer', class: 'panel inline-form' },
    h('h2', { text: 'Add computer' }),
    h('div', { class: 'row' },
      labelled('Hostname', hostname), labelled('Policy', policy), labelled('Kind', kind),
      h('div', { class: 'field actions' }, h('button', { type: 'submit', class: 'primary', id: 'add-computer-button', text: 'Add computer' }))),
    h('p', { class: 'form-error', role: 'alert' }), done);
  onSubmit(form, async () => {
    done.textContent = '';
    const body = { hostname: hostname.value.trim(), kind: kind.value };
    if (policy.value !== '') body.policy = policy.value; // empty until loaded: the Base Policy
    const c = await api('POST', '/computers', body);
    done.replaceChildren('Added ', computerLink(c.id, c.hostname), '. It shows "activation-required" until its agent activates.');
    hostname.value = '';
    await onAdded(c);
  });
  return { node: form, setPolicies: (policies) => { if (document.activeElement !== policy) policyOptions(policy, policies, 'Base Policy'); } };
}
