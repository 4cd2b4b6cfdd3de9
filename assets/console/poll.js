// Polling: the page shown refreshes every 5 s, and the alert count in the menu with it.

import { state } from './state.js';
import { tickTimes } from './time.js';
import { ApiError, api } from './api.js';

export const POLL_MS = 5000;

// `background`: the poller's refresh, whose requests (until it ends) are marked as such.
export async function runRefresh(view, background) {
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

export function poll() {
  tickTimes();
  if (document.hidden || state.refreshing || state.leaving || userIdle()) return;
  if (state.view && state.view.refresh) runRefresh(state.view, true);
  refreshAlertCount();
}

export async function refreshAlertCount() {
  if (state.session.must_change_password) return; // refused (403) until then
  state.background += 1;
  try {
    const data = await api('GET', '/alerts');
    setAlertCount(data.alerts.length);
  } catch (e) { /* the page's own refresh reports trouble */ } finally {
    state.background -= 1;
  }
}

export function setAlertCount(n) {
  const node = document.getElementById('alert-count');
  node.hidden = n === 0;
  node.textContent = String(n);
}
