// Login page of the Picket console: POST /api/v1/session, then go where the user was headed.

import { safeNext } from './common.js';

const form = document.getElementById('login-form');
const username = document.getElementById('username');
const password = document.getElementById('password');
const button = document.getElementById('login-button');
const formError = form.querySelector('.form-error');

function go(mustChangePassword) {
  const next = safeNext(new URLSearchParams(location.search).get('next'));
  if (mustChangePassword) {
    // The console sends the user to /account first anyway; carry `next` along for after.
    location.replace('/account' + (next === '/' ? '' : '?next=' + encodeURIComponent(next)));
  } else {
    location.replace(next);
  }
}

function showError(message) {
  formError.textContent = message;
}

function clearErrors() {
  formError.textContent = '';
  username.removeAttribute('aria-invalid');
  password.removeAttribute('aria-invalid');
}

// Locks the button for the Retry-After seconds of a 429, so a user does not burn attempts.
function lockFor(seconds) {
  button.disabled = true;
  setTimeout(function () { button.disabled = false; }, seconds * 1000);
}

async function readError(res) {
  try {
    const body = await res.json();
    if (body && body.error && body.error.message) return body.error;
  } catch (e) { /* not JSON: fall through */ }
  return { message: 'The manager answered ' + res.status + ' ' + res.statusText, field: null };
}

async function submit(event) {
  event.preventDefault();
  clearErrors();
  if (!username.value || !password.value) {
    showError('Enter your user name and password.');
    (username.value ? password : username).focus();
    return;
  }
  button.disabled = true;
  let res;
  try {
    res = await fetch('/api/v1/session', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ username: username.value, password: password.value }),
    });
  } catch (e) {
    button.disabled = false;
    showError('The manager cannot be reached. Check the connection and try again.');
    return;
  }
  if (res.ok) {
    const body = await res.json().catch(function () { return {}; });
    go(Boolean(body.must_change_password));
    return;
  }
  button.disabled = false;
  const err = await readError(res);
  // A login failure is reported for the form as a whole: it must not hint which of the two
  // was wrong. The field the server names is still marked for screen readers.
  showError(err.message);
  if (err.field === 'password' || err.field === 'username') {
    const input = err.field === 'password' ? password : username;
    input.setAttribute('aria-invalid', 'true');
  }
  password.value = '';
  password.focus();
  if (res.status === 429) {
    const wait = parseInt(res.headers.get('Retry-After') || '', 10);
    lockFor(Number.isFinite(wait) && wait > 0 ? Math.min(wait, 3600) : 5);
  }
}

form.addEventListener('submit', submit);

// Already logged in (a bookmark to /login, the back button): go straight on.
fetch('/api/v1/session', { credentials: 'same-origin', headers: { Accept: 'application/json' } })
  .then(function (res) { return res.ok ? res.json() : null; })
  .then(function (body) { if (body && body.user) go(Boolean(body.must_change_password)); })
  .catch(function () { /* stay on the form */ });
