// Forms: errors next to the field the API names, notices, select options.

import { state } from './state.js';
import { h, link, option, pageTitle } from './dom.js';
import { ApiError } from './api.js';

// The error goes right after the input whose data-field the API names ("settings.x" names
// the setting x); else in the form's .form-error.
export function showError(form, err) {
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

export function clearErrors(form) {
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
export function onSubmit(form, action) {
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
export class FieldError extends Error {
  constructor(field, message) {
    super(message);
    this.field = field;
  }
}

export function noticeBox() {
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

export function policyOptions(select, policies, selectedName, exclude) {
  const current = select.value || selectedName;
  select.replaceChildren(...policies
    .filter((p) => !exclude || !exclude.has(p.id))
    .map((p) => option(p.name, p.name, p.name === current)));
}

// A one-resource page's refresh failure: a 404 (deleted meanwhile) replaces the page with
// a way back to the list; anything else shows in the page's notice.
export function failedOrGone(main, notice, title, text, backHref, backText) {
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
