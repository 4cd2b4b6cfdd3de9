// Picket web console: a small client-side router over the REST API (schema/api.md), as ES
// modules the browser loads itself (no build step): this boots it, router.js maps a path to
// its page in pages/, api.js talks to the manager, dom.js builds the page.
//
// Every page is a function that builds its DOM into <main> and returns a view whose refresh()
// reloads the page's data; the poller calls it every 5 s. Refreshes only touch read-only parts
// (tables, summaries, "Inherited (...)" texts), never what the user is typing.
//
// All text is put in the page with createElement/textContent (see h()): hostnames, alert
// messages and event fields come from agents and must never be parsed as HTML. No inline
// handlers or style attributes: the server sends a Content-Security-Policy of 'self'.
//
// The modules import each other in a circle (api.js → router.js → pages/ → api.js). That is
// fine for ES modules because loading one only defines functions and constants: nothing runs
// until start() below, once every module is loaded.

import { state } from './state.js';
import { h } from './dom.js';
import { API, api } from './api.js';
import { onLinkClick, render } from './router.js';
import { POLL_MS, poll, refreshAlertCount } from './poll.js';

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
