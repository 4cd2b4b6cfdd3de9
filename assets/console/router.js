// The client-side router: a path names a page; in-app links and the back button redraw
// <main> without a page load.

import { state } from './state.js';
import { h, link, pageTitle } from './dom.js';
import { runRefresh } from './poll.js';
import { pageAccount } from './pages/account.js';
import { pageActivation } from './pages/activation.js';
import { pageAlerts } from './pages/alerts.js';
import { pageComputer } from './pages/computer.js';
import { pageComputers } from './pages/computers.js';
import { pageDashboard } from './pages/dashboard.js';
import { pageEvents } from './pages/events.js';
import { pageNotifications } from './pages/notifications.js';
import { pagePolicies } from './pages/policies.js';
import { pagePolicy } from './pages/policy.js';

const ROUTES = [
  [/^\/$/, pageDashboard, 'dashboard'],
  [/^\/computers$/, pageComputers, 'computers'],
  [/^\/computers\/(\d+)$/, pageComputer, 'computers'],
  [/^\/policies$/, pagePolicies, 'policies'],
  [/^\/policies\/(\d+)$/, pagePolicy, 'policies'],
  [/^\/alerts$/, pageAlerts, 'alerts'],
  [/^\/events$/, pageEvents, 'events'],
  [/^\/activation$/, pageActivation, 'activation'],
  [/^\/notifications$/, pageNotifications, 'notifications'],
  [/^\/account$/, pageAccount, 'account'],
];

export function navigate(url, replace) {
  history[replace ? 'replaceState' : 'pushState'](null, '', url);
  render();
}

export function query() {
  return new URLSearchParams(location.search);
}

// Rewrites the query string in place (filters typed on a page), without a history entry.
export function setQuery(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== '' && v !== null && v !== undefined) q.set(k, v);
  const search = q.toString();
  history.replaceState(null, '', location.pathname + (search ? '?' + search : ''));
}

export function render() {
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

// Follows in-app links without a page load; anything else (new tab, /api, /login) as usual.
export function onLinkClick(event) {
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
