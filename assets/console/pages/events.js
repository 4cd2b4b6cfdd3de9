// Events the agents sent, filtered by computer and name.

import { computerLink, h, labelled, option, pageTitle, syncRows, table } from '../dom.js';
import { timeAbs } from '../time.js';
import { eventFields, eventName } from '../format.js';
import { ApiError, api, loadComputers } from '../api.js';
import { clearErrors, showError } from '../forms.js';
import { query, setQuery } from '../router.js';

export function pageEvents(main) {
  pageTitle(main, 'Events');
  const q = query();
  const computer = h('select', { id: 'event-computer', 'data-field': 'computer' }, option('', 'All computers', true));
  const type = h('select', { id: 'event-type', 'data-field': 'type' }, option('', 'All events', true));
  const limit = h('input', { id: 'event-limit', 'data-field': 'limit', type: 'number', min: 1, max: 10000, value: q.get('limit') || '100', class: 'num' });
  const wanted = { computer: q.get('computer') || '', type: q.get('type') || '' };
  const filters = h('form', { id: 'event-filters', class: 'toolbar' },
    labelled('Computer', computer), labelled('Event', type), labelled('Limit', limit),
    h('p', { class: 'form-error', role: 'alert' }));
  const list = table('events', ['Received', 'Computer', 'Seq', 'Event', 'Agent time', 'Fields'], 'No events.');
  main.append(filters, list.node);
  let events = [];
  let hostnames = {};

  function reflect() {
    wanted.computer = computer.value;
    wanted.type = type.value;
    setQuery({ computer: computer.value, type: type.value, limit: limit.value === '100' ? '' : limit.value });
  }
  computer.addEventListener('change', () => { reflect(); reload(); });
  type.addEventListener('change', () => { reflect(); show(); });
  limit.addEventListener('change', () => { reflect(); reload(); });
  filters.addEventListener('submit', (event) => { event.preventDefault(); reflect(); reload(); });

  async function reload() {
    clearErrors(filters);
    try {
      await refresh();
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      showError(filters, err);
    }
  }

  function show() {
    const rows = events.filter((e) => !wanted.type || eventName(e) === wanted.type);
    syncRows(list.tbody, rows, (e) => e.computer + ':' + e.seq, (e) => h('tr', { 'data-event-seq': e.seq, 'data-computer-id': e.computer },
      h('td', { class: 'nowrap' }, timeAbs(e.received_ms)), h('td', {}, computerLink(e.computer, hostnames[e.computer])),
      h('td', { class: 'num', text: e.seq }), h('td', { text: eventName(e) }),
      h('td', { class: 'nowrap' }, timeAbs(e.time_ms)), h('td', {}, eventFields(e.fields))));
  }

  async function refresh() {
    const params = new URLSearchParams();
    if (wanted.computer) params.set('computer', wanted.computer);
    params.set('limit', limit.value || '100');
    const [computers, data] = await Promise.all([loadComputers(), api('GET', '/events?' + params)]);
    hostnames = {};
    for (const c of computers) hostnames[c.id] = c.hostname;
    events = data.events;
    if (document.activeElement !== computer) {
      computer.replaceChildren(option('', 'All computers', !wanted.computer),
        ...computers.slice().sort((a, b) => a.hostname.localeCompare(b.hostname))
          .map((c) => option(String(c.id), c.hostname, String(c.id) === wanted.computer)));
    }
    if (document.activeElement !== type) {
      const names = [...new Set(events.map(eventName).concat(wanted.type ? [wanted.type] : []))].sort();
      type.replaceChildren(option('', 'All events', !wanted.type), ...names.map((n) => option(n, n, n === wanted.type)));
    }
    show();
  }
  return { refresh, failed: (err) => { clearErrors(filters); showError(filters, err); } };
}
