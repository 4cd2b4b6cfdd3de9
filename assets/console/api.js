// The API client (schema/api.md): JSON over fetch, with the session's cookie.

import { state } from './state.js';
import { navigate } from './router.js';

export const API = '/api/v1';
const API_TIMEOUT_MS = 30000;

export class ApiError extends Error {
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

export async function api(method, path, body) {
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

export async function loadPolicies() {
  return (await api('GET', '/policies')).policies;
}

export async function loadComputers() {
  return (await api('GET', '/computers')).computers;
}
