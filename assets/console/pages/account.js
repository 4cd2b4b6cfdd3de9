// The account page: change the password (first of all, after a one-time password).

import { safeNext } from '../../common.js';
import { state } from '../state.js';
import { h, labelled, pageTitle } from '../dom.js';
import { api } from '../api.js';
import { FieldError, onSubmit } from '../forms.js';
import { navigate, query } from '../router.js';

export function pageAccount(main) {
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
