// Picket web console: a small client-side router over the REST API (schema/api.md).
//
// Every page is a function that builds its DOM into <main> and returns a view whose refresh()
// reloads the page's data; the poller calls it every 5 s. Refreshes only touch read-only parts
// (tables, summaries, "Inherited (...)" texts), never what the user is typing.
//
// All text is put in the page with createElement/textContent (see h()): hostnames, alert
// messages and event fields come from agents and must never be parsed as HTML. No inline
// handlers or style attributes: the server sends a Content-Security-Policy of 'self'.
'use strict';

(function () {
  const API = '/api/v1';
  const POLL_MS = 5000;
  const API_TIMEOUT_MS = 30000;
  const STATUSES = ['online', 'offline', 'unknown', 'stopped', 'vm-stopped', 'activation-required'];
  const KINDS = ['server', 'laptop', 'vm', 'appliance'];
  const DIRECTIONS = [
    ['bidirectional', 'Bidirectional'],
    ['manager-initiated', 'Manager Initiated'],
    ['agent-initiated', 'Agent Initiated'],
  ];
  const SETTING_KEYS = [
    'heartbeat.interval',
    'heartbeat.missed-before-alert',
    'heartbeat.max-clock-change',
    'heartbeat.offline-errors-for-inactive-vms',
    'communication.direction',
  ];
  // Built-in defaults (DESIGN.md): what the Base Policy inherits.
  const DEFAULTS = {
    'heartbeat.interval': { value: '10m', source: 'default' },
    'heartbeat.missed-before-alert': { value: 2, source: 'default' },
    'heartbeat.max-clock-change': { value: '15m', source: 'default' },
    'heartbeat.offline-errors-for-inactive-vms': { value: false, source: 'default' },
    'communication.direction': { value: 'bidirectional', source: 'default' },
  };
  const RULE_ACTIONS = ['allow', 'deny', 'force-allow', 'bypass', 'log-only'];

  const state = {
    session: null, // GET /api/v1/session
    view: null, // { refresh } of the page shown
    gen: 0, // bumped at each page render; async work of an older page is dropped
    flash: null, // a notice to show on the next page rendered
    leaving: false, // on the way to /login: render nothing more
    refreshing: false,
    background: 0, // requests of the poller in flight: sent marked, so they are not "use"
    lastActivity: Date.now(),
  };

  // ---------------------------------------------------------------- DOM helpers

  // h('a', {href: '/x', class: 'c', 'data-id': 3, text: 'label'}, child, ...): never parses HTML.
  function h(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === 'class') node.className = value;
      else if (key === 'text') node.textContent = String(value);
      else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
      else if (value === true) node.setAttribute(key, '');
      else node.setAttribute(key, String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function option(value, label, selected, extra) {
    return h('option', Object.assign({ value: value, text: label, selected: Boolean(selected) }, extra || {}));
  }

  function table(id, headers, emptyText) {
    const tbody = h('tbody');
    tbody.dataset.cols = String(headers.length);
    tbody.dataset.empty = emptyText;
    const node = h('table', { id: id, class: 'grid' },
      h('thead', {}, h('tr', {}, headers.map((t) => h('th', { scope: 'col', text: t })))), tbody);
    return { node, tbody };
  }

  // Replaces a tbody's rows by `items`, keeping the existing <tr> of an item whose data did not
  // change: a button the user is about to click is not swapped under the pointer every 5 s.
  function syncRows(tbody, items, key, build) {
    const old = new Map();
    for (const tr of tbody.children) if (tr.dataset.key) old.set(tr.dataset.key, tr);
    const seen = new Set(); // two items with one key (history lines) each get their own row
    const rows = items.map((item) => {
      const k = String(key(item));
      const sig = JSON.stringify(item);
      const prev = old.get(k);
      const reuse = prev && prev.dataset.sig === sig && !seen.has(k);
      seen.add(k);
      if (reuse) return prev;
      const tr = build(item);
      tr.dataset.key = k;
      tr.dataset.sig = sig;
      return tr;
    });
    if (rows.length === 0) {
      rows.push(h('tr', { class: 'empty' },
        h('td', { colspan: tbody.dataset.cols, text: tbody.dataset.empty })));
    }
    const same = rows.length === tbody.children.length && rows.every((r, i) => r === tbody.children[i]);
    if (!same) tbody.replaceChildren(...rows);
  }

  function link(href, text, extra) {
    return h('a', Object.assign({ href: href, text: text }, extra || {}));
  }

  function computerLink(id, hostname) {
    if (id === null || id === undefined) return document.createTextNode(hostname || '—');
    return link('/computers/' + encodeURIComponent(id), hostname || '#' + id);
  }

  function badge(kind, value, text) {
    return h('span', { class: 'badge ' + kind + '-' + String(value).replace(/[^a-z0-9-]/gi, ''), text: text || value });
  }

  function statusBadge(status) {
    return badge('status', status, status);
  }

  function yesNo(value) {
    if (value === true) return 'yes';
    if (value === false) return 'no';
    return '—';
  }

  function dash(value) {
    return value === null || value === undefined || value === '' ? '—' : String(value);
  }

  // ---------------------------------------------------------------- time

  function pad(n) {
    return String(n).padStart(2, '0');
  }

  function absTime(ms) {
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
  function timeAgo(ms) {
    if (ms === null || ms === undefined) return h('span', { text: '—' });
    return h('time', { class: 'reltime', 'data-ms': ms, datetime: new Date(ms).toISOString(),
      title: absTime(ms), text: relTime(ms) });
  }

  function timeAbs(ms) {
    if (ms === null || ms === undefined) return h('span', { text: '—' });
    return h('time', { datetime: new Date(ms).toISOString(), title: relTime(ms), text: absTime(ms) });
  }

  function tickTimes() {
    for (const node of document.querySelectorAll('.reltime[data-ms]')) {
      node.textContent = relTime(Number(node.dataset.ms));
    }
  }

  function formatOffset(ms) {
    if (ms === null || ms === undefined) return '—';
    const sign = ms > 0 ? '+' : ms < 0 ? '−' : '';
    const abs = Math.abs(ms);
    return sign + (abs < 1000 ? abs + ' ms' : (abs / 1000).toFixed(1) + ' s');
  }

  // ---------------------------------------------------------------- settings values

  // "1h30m" → 5400; NaN for anything else. The API writes durations as 30s, 10m, 2h, 7d.
  function durationSeconds(text) {
    const units = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };
    const str = String(text).trim();
    if (!/^(\d+(\.\d+)?(ms|s|m|h|d))+$/.test(str)) return NaN;
    let total = 0;
    for (const m of str.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)) total += Number(m[1]) * units[m[2]];
    return total;
  }

  function durationToMinutes(text) {
    const s = durationSeconds(text);
    return Number.isNaN(s) ? '' : String(Math.round((s / 60) * 10000) / 10000);
  }

  // Minutes typed in the console → the API's duration: "Nm" when whole, else whole seconds.
  function minutesToDuration(minutes) {
    const seconds = Math.round(minutes * 60);
    return seconds % 60 === 0 ? seconds / 60 + 'm' : seconds + 's';
  }

  function sourceLabel(source) {
    if (source === 'computer') return 'This computer (override)';
    if (source === 'default') return 'Default';
    if (typeof source !== 'string') return '—';
    if (source.startsWith('policy:')) return source.slice('policy:'.length);
    if (source.startsWith('kind:')) {
      const kind = source.slice('kind:'.length);
      return kind.charAt(0).toUpperCase() + kind.slice(1);
    }
    return source;
  }

  function directionLabel(value) {
    const found = DIRECTIONS.find((d) => d[0] === value);
    return found ? found[1] : String(value);
  }

  // ---------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(status, message, field) {
      super(message);
      this.status = status;
      this.field = field;
    }
  }

  function toLogin() {
    if (state.leaving) return;
    state.leaving = true;
    location.assign('/login?next=' + encodeURIComponent(location.pathname + location.search));
  }

  async function api(method, path, body) {
    const init = { method: method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
    // The poller's requests say so: the manager does not count them as use, so the session
    // still ends after its idle timeout when nobody is at the screen.
    if (state.background > 0) init.headers['X-Picket-Background'] = '1';
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    // A request that never ends would stop the poller (it waits for the previous refresh).
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), API_TIMEOUT_MS);
    init.signal = abort.signal;
    let res;
    let data;
    try {
      res = await fetch(API + path, init);
      data = res.status === 204 ? null : await res.json().catch(() => null);
    } catch (e) {
      throw new ApiError(0, 'The manager cannot be reached (' + (abort.signal.aborted ? 'no answer in time' : e.message) + ').', null);
    } finally {
      clearTimeout(timer);
    }
    if (res.status === 401) {
      toLogin();
      throw new ApiError(401, 'Your session has ended; log in again.', null);
    }
    if (res.ok) return data;
    const err = (data && data.error) || {};
    const message = err.message || 'The manager answered ' + res.status + ' ' + res.statusText + '.';
    if (res.status === 403 && /one-time password/i.test(message)) mustChangePassword();
    throw new ApiError(res.status, message, err.field === undefined ? null : err.field);
  }

  function mustChangePassword() {
    if (state.session) state.session.must_change_password = true;
    if (location.pathname !== '/account') navigate('/account', true);
  }

  // ---------------------------------------------------------------- form errors

  // The error goes right after the input whose data-field the API names ("settings.x" names
  // the setting x); else in the form's .form-error.
  function showError(form, err) {
    let field = err.field;
    if (typeof field === 'string' && field.startsWith('settings.')) field = field.slice('settings.'.length);
    const input = typeof field === 'string' && field !== ''
      ? form.querySelector('[data-field="' + CSS.escape(field) + '"]') : null;
    if (input) {
      input.setAttribute('aria-invalid', 'true');
      input.insertAdjacentElement('afterend', h('span', { class: 'field-error', role: 'alert', text: err.message }));
      if (!input.disabled) input.focus();
    } else {
      formErrorOf(form).textContent = err.message;
    }
  }

  function clearErrors(form) {
    for (const node of form.querySelectorAll('.field-error')) node.remove();
    for (const node of form.querySelectorAll('[aria-invalid]')) node.removeAttribute('aria-invalid');
    formErrorOf(form).textContent = '';
  }

  function formErrorOf(form) {
    let node = form.querySelector('.form-error');
    if (!node) {
      node = h('p', { class: 'form-error', role: 'alert' });
      form.append(node);
    }
    return node;
  }

  // Submits `form` through `action`, showing errors; the submit button is disabled meanwhile.
  function onSubmit(form, action) {
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      clearErrors(form);
      const buttons = form.querySelectorAll('button[type="submit"]');
      buttons.forEach((b) => { b.disabled = true; });
      try {
        await action();
      } catch (err) {
        if (err instanceof ApiError || err instanceof FieldError) showError(form, err);
        else throw err;
      } finally {
        buttons.forEach((b) => { b.disabled = false; });
      }
    });
  }

  // A value the console refuses before asking the server, reported like the server's errors.
  class FieldError extends Error {
    constructor(field, message) {
      super(message);
      this.field = field;
    }
  }

  function noticeBox() {
    const box = h('div', { id: 'notice', class: 'notice', 'aria-live': 'polite', hidden: true });
    box.ok = (text) => setNotice(box, 'ok', text);
    box.error = (text) => setNotice(box, 'error', text);
    box.clear = () => { box.hidden = true; box.textContent = ''; };
    return box;
  }

  function setNotice(box, kind, text) {
    box.className = 'notice notice-' + kind;
    box.setAttribute('role', kind === 'error' ? 'alert' : 'status');
    box.textContent = text;
    box.hidden = false;
  }

  // ---------------------------------------------------------------- router

  const ROUTES = [
    [/^\/$/, pageDashboard, 'dashboard'],
    [/^\/computers$/, pageComputers, 'computers'],
    [/^\/computers\/(\d+)$/, pageComputer, 'computers'],
    [/^\/policies$/, pagePolicies, 'policies'],
    [/^\/policies\/(\d+)$/, pagePolicy, 'policies'],
    [/^\/alerts$/, pageAlerts, 'alerts'],
    [/^\/events$/, pageEvents, 'events'],
    [/^\/activation$/, pageActivation, 'activation'],
    [/^\/account$/, pageAccount, 'account'],
  ];

  function navigate(url, replace) {
    history[replace ? 'replaceState' : 'pushState'](null, '', url);
    render();
  }

  function query() {
    return new URLSearchParams(location.search);
  }

  // Rewrites the query string in place (filters typed on a page), without a history entry.
  function setQuery(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== '' && v !== null && v !== undefined) q.set(k, v);
    const search = q.toString();
    history.replaceState(null, '', location.pathname + (search ? '?' + search : ''));
  }

  function render() {
    if (state.leaving || !state.session) return;
    const path = location.pathname.length > 1 ? location.pathname.replace(/\/+$/, '') : '/';
    if (state.session.must_change_password && path !== '/account') {
      history.replaceState(null, '', '/account' + (path === '/' ? '' : '?next=' + encodeURIComponent(path + location.search)));
      render();
      return;
    }
    state.gen += 1;
    state.view = null;
    const main = document.getElementById('main');
    main.replaceChildren();
    let route = null;
    let match = null;
    for (const r of ROUTES) {
      match = path.match(r[0]);
      if (match) { route = r; break; }
    }
    for (const a of document.querySelectorAll('a[data-nav]')) {
      const active = route !== null && a.dataset.nav === route[2];
      a.classList.toggle('active', active);
      if (active) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    if (state.flash) {
      main.append(h('div', { class: 'notice notice-ok', role: 'status', text: state.flash }));
      state.flash = null;
    }
    if (!route) {
      pageTitle(main, 'Not found');
      main.append(h('p', {}, 'No page at ', h('code', { text: path }), '. ', link('/', 'Go to the dashboard'), '.'));
      return;
    }
    state.view = route[1](main, match) || null;
    if (state.view && state.view.refresh) runRefresh(state.view);
  }

  function pageTitle(main, title, ...extra) {
    document.title = title + ' — Picket';
    const h1 = h('h1', { text: title });
    main.append(extra.length ? h('div', { class: 'page-head' }, h1, ...extra) : h1);
    return h1;
  }

  // Follows in-app links without a page load; anything else (new tab, /api, /login) as usual.
  function onLinkClick(event) {
    if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey ||
        event.shiftKey || event.altKey) return;
    const a = event.target.closest('a[href]');
    if (!a || a.target || a.hasAttribute('download')) return;
    const url = new URL(a.href, location.href);
    if (url.origin !== location.origin) return;
    if (url.pathname === '/login' || url.pathname.startsWith('/api/') || url.pathname.startsWith('/assets/')) return;
    event.preventDefault();
    if (url.pathname + url.search !== location.pathname + location.search) navigate(url.pathname + url.search);
  }

  // A one-resource page's refresh failure: a 404 (deleted meanwhile) replaces the page with
  // a way back to the list; anything else shows in the page's notice.
  function failedOrGone(main, notice, title, text, backHref, backText) {
    return (err) => {
      if (err.status === 404) {
        main.replaceChildren();
        pageTitle(main, title);
        main.append(h('p', {}, text, link(backHref, backText), '.'));
        state.view = null;
      } else {
        notice.error(err.message);
      }
    };
  }

  // ---------------------------------------------------------------- polling

  // `background`: the poller's refresh, whose requests (until it ends) are marked as such.
  async function runRefresh(view, background) {
    const gen = state.gen;
    state.refreshing = true;
    if (background) state.background += 1;
    try {
      await view.refresh();
      setConnection(null);
    } catch (err) {
      if (gen !== state.gen || state.leaving) return;
      if (err instanceof ApiError && err.status === 0) setConnection(err.message + ' Retrying…');
      else if (err instanceof ApiError) view.failed ? view.failed(err) : setConnection(err.message);
      else throw err;
    } finally {
      state.refreshing = false;
      if (background) state.background -= 1;
    }
  }

  function setConnection(text) {
    const node = document.getElementById('connection');
    node.hidden = !text;
    node.textContent = text || '';
  }

  // Polling would keep the session alive forever, so it stops once the user has been away for
  // the server's idle timeout: the session can then end, and the next action goes to /login.
  function userIdle() {
    const limit = state.session && state.session.idle_timeout_s;
    return Boolean(limit) && Date.now() - state.lastActivity > limit * 1000;
  }

  function poll() {
    tickTimes();
    if (document.hidden || state.refreshing || state.leaving || userIdle()) return;
    if (state.view && state.view.refresh) runRefresh(state.view, true);
    refreshAlertCount();
  }

  async function refreshAlertCount() {
    if (state.session.must_change_password) return; // refused (403) until then
    state.background += 1;
    try {
      const data = await api('GET', '/alerts');
      setAlertCount(data.alerts.length);
    } catch (e) { /* the page's own refresh reports trouble */ } finally {
      state.background -= 1;
    }
  }

  function setAlertCount(n) {
    const node = document.getElementById('alert-count');
    node.hidden = n === 0;
    node.textContent = String(n);
  }

  // ---------------------------------------------------------------- shared loaders

  async function loadPolicies() {
    return (await api('GET', '/policies')).policies;
  }

  async function loadComputers() {
    return (await api('GET', '/computers')).computers;
  }

  function policyOptions(select, policies, selectedName, exclude) {
    const current = select.value || selectedName;
    select.replaceChildren(...policies
      .filter((p) => !exclude || !exclude.has(p.id))
      .map((p) => option(p.name, p.name, p.name === current)));
  }

  // Policy ids in the subtree under `id` (itself included): not valid as its new parent.
  function subtree(policies, id) {
    const ids = new Set([id]);
    let grew = true;
    while (grew) {
      grew = false;
      for (const p of policies) {
        if (p.parent_id !== null && ids.has(p.parent_id) && !ids.has(p.id)) { ids.add(p.id); grew = true; }
      }
    }
    return ids;
  }

  // ================================================================ pages

  // ---------------------------------------------------------------- dashboard

  function pageDashboard(main) {
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
        h('td', {}, computerLink(a.computer, a.hostname)), h('td', { class: 'message', text: a.message }),
        h('td', {}, timeAgo(a.updated_ms))));
      const stale = computers.filter((c) => c.agent && c.agent.config_up_to_date === false);
      syncRows(outdated.tbody, stale, (c) => c.id, (c) => h('tr', { 'data-computer-id': c.id },
        h('td', {}, computerLink(c.id, c.hostname)), h('td', { text: dash(c.policy) }),
        h('td', { class: 'status' }, statusBadge(c.status)), h('td', { text: direction(c) }),
        h('td', {}, timeAgo(c.agent.last_heartbeat_ms))));
    }
    return { refresh };
  }

  function direction(computer) {
    const eff = computer.effective && computer.effective['communication.direction'];
    return eff ? String(eff.value) : '—';
  }

  // ---------------------------------------------------------------- computers

  function pageComputers(main) {
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

  function labelled(text, input, hint) {
    if (!input.id) input.id = 'f' + Math.random().toString(36).slice(2);
    return h('div', { class: 'field' }, h('label', { for: input.id, text: text }), input,
      hint ? h('small', { class: 'hint', text: hint }) : null);
  }

  // ---------------------------------------------------------------- one computer

  function pageComputer(main, match) {
    const id = match[1];
    const h1 = pageTitle(main, 'Computer ' + id);
    const statusSlot = h('span', { class: 'title-status' });
    h1.append(' ', statusSlot);
    const notice = noticeBox();
    const summary = h('dl', { class: 'facts', id: 'computer-summary' });
    const agentFacts = h('dl', { class: 'facts', id: 'agent-details' });
    const effective = table('effective-settings', ['Setting', 'Value', 'Source'], '—');
    const history = table('computer-history', ['At', 'What', 'Detail'], 'No history yet.');
    const events = table('computer-events', ['Received', 'Seq', 'Event', 'Agent time', 'Fields'], 'No events yet.');
    const moveSelect = h('select', { id: 'move-policy', 'data-field': 'policy', 'aria-label': 'Policy' });
    const editor = settingsEditor((body) => api('PATCH', '/computers/' + id, { settings: body }));
    let computer = null;

    const actions = h('div', { class: 'actions-bar' },
      actionButton('send-policy', 'Send policy', 'send-policy'),
      actionButton('check-status', 'Check status', 'check-status'),
      h('button', { type: 'button', id: 'delete-computer', class: 'danger', text: 'Delete', onclick: deleteComputer }));
    const moveForm = h('form', { id: 'move-form', class: 'inline-form compact' },
      h('label', { for: 'move-policy', text: 'Move to policy' }), moveSelect,
      h('button', { type: 'submit', id: 'move-button', text: 'Move' }),
      h('p', { class: 'form-error', role: 'alert' }));
    onSubmit(moveForm, async () => {
      const c = await api('PATCH', '/computers/' + id, { policy: moveSelect.value });
      notice.ok('Moved ' + c.hostname + ' to ' + c.policy + '.');
      await refresh();
    });

    main.append(notice, h('div', { class: 'toolbar' }, actions, moveForm),
      h('div', { class: 'columns' },
        h('section', { class: 'panel' }, h('h2', { text: 'Summary' }), summary),
        h('section', { class: 'panel' }, h('h2', { text: 'Agent' }), agentFacts)),
      h('section', {}, h('h2', { text: 'Effective settings' }), effective.node),
      h('section', { class: 'editor' }, h('h2', { class: 'section-kicker', text: 'Overrides for this computer' }),
        h('p', { class: 'muted', text: 'A field left "Inherited" takes its value from the computer\'s policy.' }), editor.node),
      h('section', {}, h('h2', { text: 'History' }), history.node),
      h('section', {}, h('div', { class: 'section-head' }, h('h2', { text: 'Events' }),
        link('/events?computer=' + encodeURIComponent(id), 'All events of this computer →')), events.node));

    function actionButton(idName, label, verb) {
      return h('button', { type: 'button', id: idName, onclick: async (event) => {
        const button = event.currentTarget;
        button.disabled = true;
        notice.ok(label + '…');
        try {
          const answer = await api('POST', '/computers/' + id + '/' + verb);
          notice.ok(answer && answer.message ? answer.message : label + ': done.');
          await refresh();
        } catch (err) {
          if (!(err instanceof ApiError)) throw err;
          notice.error(err.message);
        } finally {
          button.disabled = false;
        }
      }, text: label });
    }

    async function deleteComputer() {
      const name = computer ? computer.hostname : 'computer ' + id;
      if (!confirm('Delete ' + name + '? Its agent is refused from then on.')) return;
      try {
        await api('DELETE', '/computers/' + id);
        state.flash = 'Deleted ' + name + '.';
        navigate('/computers');
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        notice.error(err.message);
      }
    }

    async function refresh() {
      const [c, policies, hist, evs] = await Promise.all([
        api('GET', '/computers/' + id), loadPolicies(),
        api('GET', '/computers/' + id + '/history'),
        api('GET', '/events?computer=' + encodeURIComponent(id) + '&limit=100')]);
      computer = c;
      h1.firstChild.textContent = c.hostname;
      document.title = c.hostname + ' — Picket';
      statusSlot.replaceChildren(statusBadge(c.status));
      statusSlot.dataset.status = c.status;
      fillSummary(summary, c);
      fillAgent(agentFacts, c);
      fillEffective(effective.tbody, c);
      if (document.activeElement !== moveSelect) policyOptions(moveSelect, policies, c.policy);
      const policy = policies.find((p) => p.id === c.policy_id);
      editor.update(c, policy ? policy.effective : null, c.kind);
      syncRows(history.tbody, hist.history, (x) => x.at_ms + x.what + x.detail, (x) => h('tr', {},
        h('td', { class: 'nowrap' }, timeAbs(x.at_ms)), h('td', { text: x.what }), h('td', { class: 'message', text: dash(x.detail) })));
      syncRows(events.tbody, evs.events, (e) => e.seq, (e) => h('tr', { 'data-event-seq': e.seq },
        h('td', { class: 'nowrap' }, timeAbs(e.received_ms)), h('td', { text: e.seq }),
        h('td', { text: eventName(e) }), h('td', { class: 'nowrap' }, timeAbs(e.time_ms)), h('td', {}, eventFields(e.fields))));
    }

    const failed = failedOrGone(main, notice, 'Computer not found',
      'There is no computer ' + id + ' (it may have been deleted). ', '/computers', 'Back to the computers');
    return { refresh, failed };
  }

  function fact(dl, term, value) {
    dl.append(h('dt', { text: term }), h('dd', {}, value instanceof Node ? value : dash(value)));
  }

  function fillSummary(dl, c) {
    dl.replaceChildren();
    fact(dl, 'Status', statusBadge(c.status));
    fact(dl, 'Policy', c.policy_id !== null && c.policy_id !== undefined ? link('/policies/' + c.policy_id, c.policy) : '—');
    fact(dl, 'Kind', c.kind);
    if (c.kind === 'vm') fact(dl, 'VM power state', c.vm_power_state);
    fact(dl, 'Address', c.address ? c.address : h('span', { class: 'muted', text: '— (where the agent last connected from)' }));
    fact(dl, 'Direction', direction(c));
    fact(dl, 'Added', timeAbs(c.created_ms));
  }

  function fillAgent(dl, c) {
    dl.replaceChildren();
    const a = c.agent;
    if (!a) {
      fact(dl, 'Agent', h('span', {}, 'Not activated yet. ', link('/activation', 'Create an activation token'), ' and run the agent with it.'));
      return;
    }
    const code = (v) => (v ? h('code', { class: 'break', text: v }) : '—');
    fact(dl, 'Version', a.agent_version);
    fact(dl, 'Connected from', a.address);
    fact(dl, 'Listen port', a.listen_port);
    fact(dl, 'Activated', timeAbs(a.activated_ms));
    fact(dl, 'Last heartbeat', timeAgo(a.last_heartbeat_ms));
    fact(dl, 'Clock offset', formatOffset(a.clock_offset_ms));
    fact(dl, 'TLS version', a.tls_version);
    fact(dl, 'Cipher suite', a.cipher_suite);
    fact(dl, 'Applied fingerprint', code(a.applied_fingerprint));
    fact(dl, 'Expected fingerprint', code(a.expected_fingerprint));
    fact(dl, 'Configuration up to date', h('span', { id: 'config-up-to-date' }, badge('config', yesNo(a.config_up_to_date)),
      a.config_rejected ? h('span', { class: 'field-note', text: ' rejected: ' + a.config_rejected }) : null));
    fact(dl, 'Last event seq', a.last_event_seq);
    if (Array.isArray(a.components) && a.components.length) {
      fact(dl, 'Components', h('span', {}, a.components.map((x) => badge('component', x.on ? 'on' : 'off', x.name + (x.on ? ' on' : ' off')))));
    }
    if (a.counters && Object.keys(a.counters).length) fact(dl, 'Counters', eventFields(a.counters));
  }

  function fillEffective(tbody, c) {
    const eff = c.effective || {};
    const keys = SETTING_KEYS.filter((k) => k in eff).concat(Object.keys(eff).filter((k) => !SETTING_KEYS.includes(k)));
    syncRows(tbody, keys.map((k) => Object.assign({ key: k }, eff[k])), (s) => s.key, (s) => h('tr', { 'data-setting': s.key },
      h('td', { class: 'key' }, h('code', { text: s.key })),
      h('td', { class: 'value', text: String(s.value) }),
      h('td', { class: 'source', 'data-source': s.source }, sourceLabel(s.source),
        s.overrides ? h('small', { class: 'field-note', text: ' (the policy says ' + s.overrides.value + ' from ' +
          sourceLabel(s.overrides.source) + (s.overrides.reason ? '; ' + s.overrides.reason : '') + ')' }) : null)));
  }

  function eventName(e) {
    return e.name || 'unknown event ' + e.id;
  }

  function eventFields(fields) {
    const entries = Object.entries(fields || {});
    if (!entries.length) return '—';
    return h('span', { class: 'kv' }, entries.map(([k, v]) => h('code', { text: k + '=' + (typeof v === 'string' ? v : JSON.stringify(v)) })));
  }

  // ---------------------------------------------------------------- settings editor

  // The heartbeat and direction editor, shared by the policy and the computer page.
  // save(body) PATCHes {"settings": body} and returns the updated POLICY or COMPUTER.
  function settingsEditor(save) {
    const heartbeat = settingsSection('Settings > General > Heartbeat', 'heartbeat', [
      numberField('heartbeat.interval', 'Heartbeat interval (minutes)', 'minutes', false),
      numberField('heartbeat.missed-before-alert', 'Number of heartbeats that can be missed before an alert is raised', 'count', true),
      numberField('heartbeat.max-clock-change', 'Maximum change (in minutes) of the local system time on the computer between heartbeats before an alert is raised', 'minutes', true),
      choiceField('heartbeat.offline-errors-for-inactive-vms', 'Raise offline errors for inactive virtual machines',
        [['true', 'Yes'], ['false', 'No']]),
    ], save);
    const directionSection = settingsSection('Settings > General > Communication Direction', 'direction', [
      choiceField('communication.direction', 'Direction of Manager to Agent communication', DIRECTIONS),
    ], save);
    return {
      node: h('div', { class: 'settings-editor' }, heartbeat.node, directionSection.node),
      // obj: POLICY or COMPUTER; parentEffective: what the parent (policy) resolves to, used for
      // the "Inherited (...)" text of a field that is overridden here.
      update(obj, parentEffective, kind) {
        heartbeat.update(obj, parentEffective, kind, false);
        directionSection.update(obj, parentEffective, kind, false);
      },
    };
  }

  function settingsSection(title, name, fields, save) {
    const saved = h('span', { class: 'saved', role: 'status' });
    const form = h('form', { class: 'panel settings-section', 'data-section': name, novalidate: true },
      h('h3', { text: title }), fields.map((f) => f.row),
      h('p', { class: 'form-error', role: 'alert' }),
      h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'primary', 'data-save': name, text: 'Save' }), saved));
    let dirty = false; // the user changed something not yet saved: polling leaves the inputs alone
    let last = null;
    form.addEventListener('input', () => { dirty = true; saved.textContent = ''; });
    form.addEventListener('change', () => { dirty = true; saved.textContent = ''; });
    onSubmit(form, async () => {
      const body = {};
      for (const f of fields) body[f.key] = f.read();
      const obj = await save(body);
      dirty = false;
      update(obj, last && last.parentEffective, last && last.kind, true);
      saved.textContent = 'Saved.';
    });
    function update(obj, parentEffective, kind, force) {
      last = { parentEffective, kind };
      const keep = !force && (dirty || form.contains(document.activeElement));
      for (const f of fields) {
        const own = obj.settings ? obj.settings[f.key] : undefined;
        const eff = obj.effective ? obj.effective[f.key] : undefined;
        // Overridden here: what would apply if inherited is the parent's value.
        const inheritedFrom = own === undefined ? eff : parentEffective ? parentEffective[f.key] : null;
        f.update(own, eff, inheritedFrom, kind, keep);
      }
    }
    return { node: form, update };
  }

  function inheritedText(key, eff) {
    if (!eff) return 'Inherited';
    let value = eff.value;
    if (typeof value === 'boolean') value = value ? 'Yes' : 'No';
    else if (key === 'communication.direction') value = directionLabel(value);
    return 'Inherited (' + value + ' from ' + sourceLabel(eff.source) + ')';
  }

  // A number of minutes or a count, with an "Inherited" checkbox and optionally "Unlimited".
  function numberField(key, label, unit, unlimitedChoice) {
    const base = 'f-' + key.replace(/[^a-z0-9]+/gi, '-');
    const inherit = h('input', { type: 'checkbox', id: base + '-inherit', 'data-inherit': key });
    const input = h('input', { type: 'number', id: base, 'data-field': key, class: 'num', min: 0,
      max: unit === 'count' ? 1000 : null, step: unit === 'count' ? 1 : 'any' });
    const unlimited = unlimitedChoice ? h('input', { type: 'checkbox', id: base + '-unlimited', 'data-unlimited': key }) : null;
    const text = h('span', { class: 'inherited-text', 'data-inherited-text': key });
    let inheritedFrom = null;

    function sync() {
      input.disabled = inherit.checked || Boolean(unlimited && unlimited.checked);
      if (unlimited) unlimited.disabled = inherit.checked;
      text.textContent = inherit.checked ? inheritedText(key, inheritedFrom) : '';
      text.hidden = !inherit.checked;
    }
    inherit.addEventListener('change', () => {
      if (inherit.checked && inheritedFrom) show(inheritedFrom.value);
      sync();
    });
    if (unlimited) unlimited.addEventListener('change', sync);

    function show(value) {
      const isUnlimited = value === 'unlimited';
      if (unlimited) unlimited.checked = isUnlimited;
      if (!isUnlimited) input.value = unit === 'minutes' ? durationToMinutes(value) : String(value);
    }

    const row = h('div', { class: 'setting' },
      h('label', { class: 'setting-label', for: base, text: label }),
      h('div', { class: 'controls' },
        h('label', { class: 'check' }, inherit, ' Inherited'),
        input,
        unlimited ? h('label', { class: 'check' }, unlimited, ' Unlimited') : null,
        text));
    return {
      key, row,
      update(own, eff, from, kind, keep) {
        inheritedFrom = from;
        if (!keep) {
          inherit.checked = own === undefined;
          show(own === undefined ? (eff ? eff.value : '') : own);
        }
        sync();
      },
      read() {
        if (inherit.checked) return 'inherited';
        if (unlimited && unlimited.checked) return 'unlimited';
        const n = Number(input.value);
        if (input.value.trim() === '' || !Number.isFinite(n) || n < 0) {
          throw new FieldError(key, unit === 'count' ? 'Enter a number from 0 to 1000' + (unlimited ? ', or choose Unlimited.' : '.')
            : 'Enter a number of minutes' + (unlimited ? ', or choose Unlimited.' : '.'));
        }
        if (unit === 'count') {
          if (!Number.isInteger(n) || n > 1000) throw new FieldError(key, 'Enter a whole number from 0 to 1000, or choose Unlimited.');
          return n;
        }
        if (Math.round(n * 60) < 1) throw new FieldError(key, 'Enter at least 1 second (0.0167 minutes).');
        return minutesToDuration(n);
      },
    };
  }

  // A select whose first option, "Inherited", carries data-inherit.
  function choiceField(key, label, choices) {
    const id = 'f-' + key.replace(/[^a-z0-9]+/gi, '-');
    const select = h('select', { id: id, 'data-field': key },
      option('inherited', 'Inherited', true, { 'data-inherit': key }),
      choices.map(([value, text]) => option(value, text, false)));
    const text = h('span', { class: 'inherited-text', 'data-inherited-text': key });
    const note = h('small', { class: 'hint' });
    let inheritedFrom = null;
    function sync() {
      const inherited = select.value === 'inherited';
      text.textContent = inherited ? inheritedText(key, inheritedFrom) : '';
      text.hidden = !inherited;
    }
    select.addEventListener('change', sync);
    const row = h('div', { class: 'setting' },
      h('label', { class: 'setting-label', for: id, text: label }),
      h('div', { class: 'controls' }, select, text, note));
    return {
      key, row,
      update(own, eff, from, kind, keep) {
        inheritedFrom = from;
        // An appliance is always bidirectional (DESIGN.md): offer nothing else.
        const appliance = key === 'communication.direction' && kind === 'appliance';
        for (const opt of select.options) opt.disabled = appliance && opt.value !== 'inherited' && opt.value !== 'bidirectional';
        note.textContent = appliance ? 'An appliance is always bidirectional.' : '';
        if (!keep) select.value = own === undefined ? 'inherited' : String(own);
        sync();
      },
      read() {
        if (select.value === 'inherited') return 'inherited';
        if (select.value === 'true' || select.value === 'false') return select.value === 'true';
        return select.value;
      },
    };
  }

  // ---------------------------------------------------------------- policies

  function pagePolicies(main) {
    pageTitle(main, 'Policies');
    const tree = h('ul', { class: 'tree', id: 'policy-tree' });
    const treeError = h('p', { class: 'form-error', role: 'alert', id: 'policies-error' });
    const name = h('input', { id: 'new-policy-name', 'data-field': 'name', required: true, autocomplete: 'off', maxlength: 100 });
    const parent = h('select', { id: 'new-policy-parent', 'data-field': 'parent' });
    const done = h('span', { class: 'saved', role: 'status' });
    const form = h('form', { id: 'new-policy', class: 'panel inline-form' },
      h('h2', { text: 'New policy' }),
      h('div', { class: 'row' }, labelled('Name', name), labelled('Parent', parent),
        h('div', { class: 'field actions' }, h('button', { type: 'submit', class: 'primary', id: 'new-policy-button', text: 'Create policy' }))),
      h('p', { class: 'form-error', role: 'alert' }), done);
    onSubmit(form, async () => {
      done.textContent = '';
      const body = { name: name.value };
      if (parent.value !== '') body.parent = parent.value; // empty until loaded: the Base Policy
      const p = await api('POST', '/policies', body);
      done.replaceChildren('Created ', link('/policies/' + p.id, p.name), '.');
      name.value = '';
      await refresh();
    });
    main.append(h('section', { class: 'panel' }, treeError, tree), form);
    let lastSig = '';

    async function refresh() {
      const [policies, computers] = await Promise.all([loadPolicies(), loadComputers()]);
      if (document.activeElement !== parent) policyOptions(parent, policies, parent.value || 'Base Policy');
      const used = {};
      for (const c of computers) used[c.policy_id] = (used[c.policy_id] || 0) + 1;
      const sig = JSON.stringify([policies.map((p) => [p.id, p.name, p.parent_id]), used]);
      if (sig === lastSig) return; // unchanged: keep the buttons under the pointer
      lastSig = sig;
      tree.replaceChildren(...policyBranch(policies, null, used, deletePolicy));
    }

    async function deletePolicy(p) {
      treeError.textContent = '';
      try {
        await api('DELETE', '/policies/' + p.id);
        done.textContent = 'Deleted ' + p.name + '.';
        await refresh();
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        treeError.textContent = err.message;
      }
    }
    return { refresh };
  }

  function policyBranch(policies, parentId, used, onDelete) {
    const ids = new Set(policies.map((p) => p.id));
    // A policy whose parent is missing is shown at the top rather than lost.
    const children = policies.filter((p) => (parentId === null ? p.parent_id === null || !ids.has(p.parent_id) : p.parent_id === parentId));
    return children.map((p) => {
      const below = policyBranch(policies, p.id, used, onDelete);
      const n = used[p.id] || 0;
      return h('li', { 'data-policy': p.name },
        h('div', { class: 'tree-row' },
          link('/policies/' + p.id, p.name, { 'data-policy-id': p.id, class: 'tree-name' }),
          h('span', { class: 'muted', text: n === 1 ? '1 computer' : n + ' computers' }),
          p.parent_id === null ? h('span', { class: 'muted', text: 'Base Policy: root of the tree' })
            : h('button', { type: 'button', class: 'small danger delete-policy', 'data-policy-id': p.id,
              'aria-label': 'Delete ' + p.name, text: 'Delete', onclick: () => onDelete(p) })),
        below.length ? h('ul', {}, below) : null);
    });
  }

  // ---------------------------------------------------------------- one policy

  function pagePolicy(main, match) {
    const id = Number(match[1]);
    const h1 = pageTitle(main, 'Policy ' + id);
    const notice = noticeBox();
    const name = h('input', { id: 'policy-name', 'data-field': 'name', required: true, autocomplete: 'off', maxlength: 100 });
    const parent = h('select', { id: 'policy-parent', 'data-field': 'parent' });
    const saved = h('span', { class: 'saved', role: 'status' });
    const general = h('form', { id: 'policy-general', class: 'panel inline-form' },
      h('h2', { text: 'General' }),
      h('div', { class: 'row' }, labelled('Name', name), labelled('Parent', parent),
        h('div', { class: 'field actions' }, h('button', { type: 'submit', class: 'primary', 'data-save': 'policy', text: 'Save' }))),
      h('p', { class: 'form-error', role: 'alert' }), saved);
    let generalDirty = false;
    general.addEventListener('input', () => { generalDirty = true; saved.textContent = ''; });
    general.addEventListener('change', () => { generalDirty = true; saved.textContent = ''; });
    let policy = null;
    onSubmit(general, async () => {
      if (!policy) return;
      const body = { name: name.value };
      if (policy.parent_id !== null && parent.value !== policy.parent) body.parent = parent.value;
      policy = await api('PATCH', '/policies/' + id, body);
      generalDirty = false;
      saved.textContent = 'Saved.';
      await refresh(true);
    });

    const editor = settingsEditor((body) => api('PATCH', '/policies/' + id, { settings: body }));
    const ownRules = table('own-rules', ['Name', 'Action', 'Priority', 'Direction', 'Frame', 'Protocol', 'Ports', 'Source IPs', 'Source MACs', ''],
      'This policy has no rules of its own.');
    const inheritedRules = table('inherited-rules', ['From', 'Name', 'Action', 'Priority', 'Direction', 'Frame', 'Protocol', 'Ports', 'Source IPs', 'Source MACs'],
      'No rules inherited from parent policies.');
    const rulesError = h('p', { class: 'form-error', role: 'alert', id: 'rules-error' });
    const ruleForm = newRuleForm(id, () => refresh());

    main.append(notice, general,
      h('section', { class: 'editor' }, editor.node),
      h('section', { id: 'firewall' }, h('h2', { text: 'Firewall rules' }),
        h('p', { class: 'muted', text: 'A priority 4 force-allow or bypass rule for incoming TCP over IP whose ports include the agent\'s port decides who may reach the agent; without one, anyone may.' }),
        rulesError, h('h3', { text: 'Rules of this policy' }), ownRules.node,
        h('h3', { text: 'Inherited rules' }), inheritedRules.node, ruleForm));

    async function deleteRule(rule) {
      rulesError.textContent = '';
      try {
        await api('DELETE', '/policies/' + id + '/firewall-rules/' + rule.id);
        await refresh();
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        rulesError.textContent = err.message;
      }
    }

    async function refresh(force) {
      const [policies, rules] = await Promise.all([loadPolicies(), api('GET', '/policies/' + id + '/firewall-rules')]);
      policy = policies.find((p) => p.id === id);
      if (!policy) throw new ApiError(404, 'No policy ' + id + '.', null);
      h1.textContent = policy.name;
      document.title = policy.name + ' — Picket';
      if (force === true || (!generalDirty && !general.contains(document.activeElement))) {
        name.value = policy.name;
        if (policy.parent_id === null) {
          parent.replaceChildren(option('', '— none: the Base Policy is the root', true));
          parent.disabled = true;
        } else {
          policyOptions(parent, policies, policy.parent, subtree(policies, id));
          parent.value = policy.parent;
        }
      }
      const parentPolicy = policies.find((p) => p.id === policy.parent_id);
      editor.update(policy, parentPolicy ? parentPolicy.effective : DEFAULTS, null);
      syncRows(ownRules.tbody, rules.rules, (r) => r.id, (r) => h('tr', { 'data-rule-id': r.id }, ruleCells(r),
        h('td', {}, h('button', { type: 'button', class: 'small danger delete-rule', 'data-rule-id': r.id, text: 'Delete', onclick: () => deleteRule(r) }))));
      const inherited = rules.effective.filter((r) => r.policy_id !== id);
      syncRows(inheritedRules.tbody, inherited, (r) => r.policy_id + ':' + r.id, (r) => h('tr', { 'data-rule-id': r.id },
        h('td', {}, link('/policies/' + r.policy_id, r.policy)), ruleCells(r)));
    }

    const failed = failedOrGone(main, notice, 'Policy not found',
      'There is no policy ' + id + '. ', '/policies', 'Back to the policies');
    return { refresh, failed };
  }

  function ruleCells(r) {
    const list = (xs) => (xs && xs.length ? xs.join(', ') : 'any');
    return [
      h('td', {}, r.name, r.governs_agent_port ? h('span', { class: 'badge badge-info', title: 'Decides who may reach the agent\'s port', text: 'agent port' }) : null),
      h('td', {}, badge('action', r.action)), h('td', { text: r.priority }), h('td', { text: r.direction }),
      h('td', { text: r.frame_type }), h('td', { text: r.protocol }), h('td', { text: list(r.destination_ports) }),
      h('td', { text: list(r.source_ips) }), h('td', { text: list(r.source_macs) }),
    ];
  }

  function newRuleForm(policyId, onAdded) {
    const select = (field, values, initial) => h('select', { id: 'rule-' + field.replace(/_/g, '-'), 'data-field': field },
      values.map((v) => option(String(v), String(v), v === initial)));
    const text = (field, placeholder) => h('input', { id: 'rule-' + field.replace(/_/g, '-'), 'data-field': field, placeholder: placeholder, autocomplete: 'off' });
    const f = {
      name: text('name', 'agent port from the admin net'),
      action: select('action', RULE_ACTIONS, 'allow'),
      priority: select('priority', [0, 1, 2, 3, 4], 0),
      direction: select('direction', ['incoming', 'outgoing'], 'incoming'),
      frame_type: select('frame_type', ['ip', 'arp', 'any'], 'ip'),
      protocol: select('protocol', ['any', 'tcp', 'udp', 'icmp'], 'any'),
      destination_ports: text('destination_ports', '4118, 8000-8080'),
      source_ips: text('source_ips', '10.0.0.0/8, 192.168.1.5'),
      source_macs: text('source_macs', '00:1a:2b:3c:4d:5e'),
    };
    const done = h('span', { class: 'saved', role: 'status' });
    const form = h('form', { id: 'new-rule', class: 'panel inline-form' },
      h('h3', { text: 'Add a rule' }),
      h('div', { class: 'row' }, labelled('Name', f.name), labelled('Action', f.action), labelled('Priority', f.priority),
        labelled('Direction', f.direction), labelled('Frame type', f.frame_type), labelled('Protocol', f.protocol)),
      h('div', { class: 'row' }, labelled('Destination ports', f.destination_ports, 'Comma-separated; empty = any'),
        labelled('Source IPs', f.source_ips, 'Addresses, CIDRs or from-to'), labelled('Source MACs', f.source_macs, 'Comma-separated'),
        h('div', { class: 'field actions' }, h('button', { type: 'submit', class: 'primary', id: 'add-rule-button', text: 'Add rule' }))),
      h('p', { class: 'form-error', role: 'alert' }), done);
    const split = (input) => input.value.split(',').map((s) => s.trim()).filter((s) => s !== '');
    onSubmit(form, async () => {
      done.textContent = '';
      const rule = await api('POST', '/policies/' + policyId + '/firewall-rules', {
        name: f.name.value.trim(), action: f.action.value, priority: Number(f.priority.value),
        direction: f.direction.value, frame_type: f.frame_type.value, protocol: f.protocol.value,
        destination_ports: split(f.destination_ports), source_ips: split(f.source_ips), source_macs: split(f.source_macs),
      });
      done.textContent = 'Added rule "' + rule.name + '".';
      for (const key of ['name', 'destination_ports', 'source_ips', 'source_macs']) f[key].value = '';
      await onAdded();
    });
    return form;
  }

  // ---------------------------------------------------------------- alerts

  function pageAlerts(main) {
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

  // ---------------------------------------------------------------- events

  function pageEvents(main) {
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

  // ---------------------------------------------------------------- activation

  function pageActivation(main) {
    pageTitle(main, 'Activation');
    const policy = h('select', { id: 'token-policy', 'data-field': 'policy' });
    const uses = h('input', { id: 'token-uses', 'data-field': 'uses', type: 'number', min: 1, max: 100000, placeholder: 'unlimited', class: 'num' });
    const expires = h('input', { id: 'token-expires', 'data-field': 'expires', value: '24h', class: 'short', autocomplete: 'off' });
    const result = h('div', { id: 'token-result', class: 'panel token-result', hidden: true });
    const form = h('form', { id: 'new-token', class: 'panel inline-form' },
      h('h2', { text: 'Create an activation token' }),
      h('p', { class: 'muted', text: 'An agent presents the token once to join this manager, under the policy chosen here.' }),
      h('div', { class: 'row' }, labelled('Policy', policy), labelled('Uses', uses, 'Blank = unlimited'),
        labelled('Expires after', expires, '30m, 24h, 7d (1m to 365d)'),
        h('div', { class: 'field actions' }, h('button', { type: 'submit', class: 'primary', id: 'create-token', text: 'Create token' }))),
      h('p', { class: 'form-error', role: 'alert' }));
    const tokensError = h('p', { class: 'form-error', role: 'alert', id: 'tokens-error' });
    const tokens = table('tokens', ['Token id', 'Policy', 'Uses left', 'Expires', 'Created', ''], 'No activation tokens.');
    main.append(form, result, h('section', {}, h('h2', { text: 'Tokens' }), tokensError, tokens.node));

    onSubmit(form, async () => {
      // Before the policy list has loaded the select is empty: the manager's default (the Base
      // Policy, which the select would show first) applies.
      const body = { expires: expires.value.trim() };
      if (policy.value !== '') body.policy = policy.value;
      const u = uses.value.trim();
      // Only whole numbers become numbers; anything else goes as typed so the server names it.
      if (u !== '') body.uses = /^\d+$/.test(u) ? Number(u) : u;
      const token = await api('POST', '/tokens', body);
      showToken(result, token);
      await refresh();
    });

    async function revoke(token) {
      tokensError.textContent = '';
      try {
        await api('DELETE', '/tokens/' + encodeURIComponent(token.id));
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        tokensError.textContent = err.message;
      }
      await refresh();
    }

    async function refresh() {
      const [policies, data] = await Promise.all([loadPolicies(), api('GET', '/tokens')]);
      if (document.activeElement !== policy) policyOptions(policy, policies, 'Base Policy');
      syncRows(tokens.tbody, data.tokens, (t) => t.id, (t) => h('tr', { 'data-token-id': t.id, class: t.expired ? 'inactive' : '' },
        h('td', {}, h('code', { text: t.id })),
        h('td', {}, t.policy_id !== null && t.policy ? link('/policies/' + t.policy_id, t.policy) : '—'),
        h('td', { text: t.uses_left === null || t.uses_left === undefined ? 'unlimited' : t.uses_left }),
        h('td', {}, t.expired ? badge('token', 'expired', 'expired') : timeAgo(t.expires_ms)),
        h('td', {}, timeAbs(t.created_ms)),
        h('td', {}, h('button', { type: 'button', class: 'small danger revoke', 'data-token-id': t.id, text: 'Revoke', onclick: () => revoke(t) }))));
    }
    return { refresh };
  }

  function showToken(box, token) {
    const command = h('code', { id: 'agent-command', text: token.agent_command });
    const copied = h('span', { class: 'saved', role: 'status' });
    const copy = h('button', { type: 'button', id: 'copy-command', text: 'Copy', onclick: async () => {
      try {
        await navigator.clipboard.writeText(token.agent_command);
        copied.textContent = 'Copied.';
      } catch (e) {
        // No clipboard access (an old browser, or a page not seen as secure): select the text.
        const range = document.createRange();
        range.selectNodeContents(command);
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        copied.textContent = 'Selected: press Ctrl+C to copy.';
      }
    } });
    box.replaceChildren(
      h('h2', { text: 'Token ' + token.id + ' created' }),
      h('p', { class: 'warning', text: 'The secret is shown only once: copy the command now. Run it on the computer to protect.' }),
      h('div', { class: 'command' }, h('pre', {}, command), h('div', {}, copy, ' ', copied)),
      h('p', { class: 'muted', text: 'Policy ' + dash(token.policy) + '; ' +
        (token.uses_left === null ? 'unlimited uses' : token.uses_left + ' use(s)') + '; expires ' + absTime(token.expires_ms) + '.' }));
    box.hidden = false;
  }

  // ---------------------------------------------------------------- account

  function pageAccount(main) {
    pageTitle(main, 'Account');
    const forced = state.session.must_change_password;
    const current = h('input', { id: 'current-password', 'data-field': 'current_password', type: 'password', autocomplete: 'current-password', required: true });
    const fresh = h('input', { id: 'new-password', 'data-field': 'new_password', type: 'password', autocomplete: 'new-password', required: true, minlength: 12 });
    const again = h('input', { id: 'confirm-password', 'data-field': 'confirm_password', type: 'password', autocomplete: 'new-password', required: true });
    const done = h('span', { class: 'saved', role: 'status' });
    const form = h('form', { id: 'password-form', class: 'panel narrow', novalidate: true },
      h('h2', { text: 'Change password' }),
      labelled('Current password', current),
      labelled('New password', fresh, 'At least 12 characters, not the current one.'),
      labelled('New password again', again),
      h('p', { class: 'form-error', role: 'alert' }),
      h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'primary', id: 'change-password', text: 'Change password' }), done));
    if (forced) {
      main.append(h('div', { class: 'notice notice-warning', role: 'alert', id: 'must-change' },
        'The password you logged in with was a one-time password; choose your own. The rest of the console opens once it is changed.'));
    }
    main.append(h('p', { class: 'muted' }, 'Logged in as ', h('strong', { text: state.session.user }), '.',
      state.session.idle_timeout_s ? ' The session ends after ' + Math.round(state.session.idle_timeout_s / 60) + ' min without activity.' : ''), form);
    onSubmit(form, async () => {
      done.textContent = '';
      if (fresh.value.length < 12) throw new FieldError('new_password', 'The new password needs at least 12 characters.');
      if (fresh.value !== again.value) throw new FieldError('confirm_password', 'The two new passwords differ.');
      await api('POST', '/session/password', { current_password: current.value, new_password: fresh.value });
      current.value = fresh.value = again.value = '';
      const wasForced = state.session.must_change_password;
      state.session.must_change_password = false;
      if (wasForced) {
        state.flash = 'Password changed.';
        navigate(safeNext(query().get('next')));
      } else {
        done.textContent = 'Password changed.';
      }
    });
    return null;
  }

  // ---------------------------------------------------------------- start

  async function logout() {
    state.leaving = true;
    try {
      await fetch(API + '/session', { method: 'DELETE', credentials: 'same-origin' });
    } catch (e) { /* leave anyway */ }
    location.assign('/login');
  }

  async function start() {
    document.addEventListener('click', onLinkClick);
    window.addEventListener('popstate', render);
    document.getElementById('logout').addEventListener('click', logout);
    for (const type of ['pointerdown', 'pointermove', 'keydown', 'wheel']) {
      document.addEventListener(type, () => { state.lastActivity = Date.now(); }, { passive: true });
    }
    document.addEventListener('visibilitychange', () => { if (!document.hidden) poll(); });
    try {
      state.session = await api('GET', '/session');
    } catch (err) {
      if (err.status !== 401) {
        document.getElementById('main').replaceChildren(h('p', { class: 'notice notice-error', role: 'alert', text: err.message }));
      }
      return;
    }
    document.getElementById('user').textContent = state.session.user;
    render();
    refreshAlertCount();
    setInterval(poll, POLL_MS);
  }

  start();
})();
