// The form that adds a notification channel (POST /api/v1/notifications/channels): the fields
// of the kind chosen, each named as the API names it so that a refusal shows beside its field.

import { h, labelled, option } from './dom.js';
import { api } from './api.js';
import { FieldError, onSubmit } from './forms.js';

const KINDS = [
  ['email', 'Email (SMTP)'],
  ['syslog', 'Syslog'],
  ['webhook', 'Webhook (HTTPS)'],
];

function input(field, extra) {
  return h('input', Object.assign({ id: 'channel-' + field.replace(/_/g, '-'), 'data-field': field, autocomplete: 'off', spellcheck: 'false' }, extra || {}));
}

function select(field, values, initial) {
  return h('select', { id: 'channel-' + field, 'data-field': field }, values.map(([v, label]) => option(v, label, v === initial)));
}

function textarea(field, placeholder) {
  return h('textarea', { id: 'channel-' + field.replace(/_/g, '-'), 'data-field': field, rows: 3, spellcheck: 'false', placeholder: placeholder });
}

// `onAdded(channel)` gets the API's answer: the channel, with `secret` when one was made.
export function channelForm(onAdded) {
  const kind = select('kind', KINDS, 'email');
  const name = input('name', { required: true, maxlength: 64, placeholder: 'oncall' });
  const f = {
    smtp: input('smtp', { placeholder: 'mail.example.com:587' }),
    security: select('security', [['starttls', 'STARTTLS'], ['tls', 'TLS'], ['none', 'none (this machine only)']], 'starttls'),
    from: input('from', { placeholder: 'picket@example.com' }),
    to: input('to', { class: 'long', placeholder: 'oncall@example.com, admin@example.com' }),
    username: input('username'),
    password: input('password', { type: 'password', autocomplete: 'new-password' }),
    address: input('address', { placeholder: 'siem.example.com:514' }),
    transport: select('transport', [['udp', 'UDP'], ['tcp', 'TCP'], ['tls', 'TLS']], 'tcp'),
    format: select('format', [['cef', 'CEF'], ['leef', 'LEEF'], ['text', 'text']], 'cef'),
    events: input('events', { class: 'long', placeholder: '1000, agent-stopped' }),
    url: input('url', { class: 'long', placeholder: 'https://hooks.example.com/picket' }),
    secret: input('secret', { type: 'password', autocomplete: 'new-password' }),
    headers: textarea('headers', 'Authorization: Bearer …'),
    ca_cert: textarea('ca_cert', '-----BEGIN CERTIFICATE-----'),
    give_up_after: input('give_up_after', { class: 'short', placeholder: '24h' }),
  };
  const groups = {
    email: h('div', { class: 'row', 'data-kind': 'email' }, labelled('SMTP server', f.smtp, 'HOST:PORT'), labelled('Security', f.security),
      labelled('From', f.from), labelled('To', f.to, 'Several: separate them with commas'),
      labelled('User name', f.username, 'Optional login'), labelled('Password', f.password, 'Stored, never shown again')),
    syslog: h('div', { class: 'row', 'data-kind': 'syslog' }, labelled('Collector', f.address, 'HOST:PORT'),
      labelled('Transport', f.transport), labelled('Format', f.format),
      labelled('Agent events', f.events, 'Optional: event ids or names to forward too, separated by commas')),
    webhook: h('div', { class: 'row', 'data-kind': 'webhook' }, labelled('URL', f.url, 'HTTPS only'),
      labelled('Secret', f.secret, 'At least 16 characters; blank: one is made and shown once'),
      labelled('Headers', f.headers, 'Optional: one "Name: value" a line')),
  };
  const caHint = h('small', { class: 'hint' });
  const form = h('form', { id: 'new-channel', class: 'panel inline-form' },
    h('h3', { text: 'Add a channel' }),
    h('div', { class: 'row' }, labelled('Kind', kind), labelled('Name', name, 'Letters, digits, - _ .')),
    groups.email, groups.syslog, groups.webhook,
    h('div', { class: 'row' },
      h('div', { class: 'field' }, h('label', { for: f.ca_cert.id, text: 'CA certificate' }), f.ca_cert, caHint),
      labelled('Give up after', f.give_up_after, '1m to 30d; blank: 24h'),
      h('div', { class: 'field actions' }, h('button', { type: 'submit', class: 'primary', id: 'add-channel', text: 'Add channel' }))),
    h('p', { class: 'form-error', role: 'alert' }));

  function showKind() {
    for (const [k, group] of Object.entries(groups)) group.hidden = k !== kind.value;
    caHint.textContent = kind.value === 'syslog' ? 'Optional, tls only: PEM; blank: the system\'s roots'
      : 'Optional: PEM; blank: the system\'s roots';
  }
  kind.addEventListener('change', showKind);
  showKind();

  onSubmit(form, async () => {
    const body = Object.assign({ name: name.value.trim(), kind: kind.value }, kindFields(kind.value, f));
    if (f.ca_cert.value.trim() !== '') body.ca_cert = f.ca_cert.value.trim() + '\n';
    if (f.give_up_after.value.trim() !== '') body.give_up_after = f.give_up_after.value.trim();
    const channel = await api('POST', '/notifications/channels', body);
    for (const node of Object.values(f)) if (node.tagName !== 'SELECT') node.value = '';
    name.value = '';
    await onAdded(channel);
  });
  return { node: form };
}

function kindFields(kind, f) {
  const value = (node) => node.value.trim();
  if (kind === 'email') {
    const body = { smtp: value(f.smtp), security: f.security.value, from: value(f.from),
      to: value(f.to).split(/[\s,;]+/).filter((s) => s !== '') };
    if (value(f.username) !== '') body.username = value(f.username);
    if (f.password.value !== '') body.password = f.password.value;
    return body;
  }
  if (kind === 'syslog') {
    const body = { address: value(f.address), transport: f.transport.value, format: f.format.value };
    // Ids as numbers, names as they are: the API takes either and names a bad one.
    const events = value(f.events).split(/[\s,;]+/).filter((s) => s !== '')
      .map((e) => (/^\d+$/.test(e) ? Number(e) : e));
    if (events.length) body.events = events;
    return body;
  }
  const body = { url: value(f.url) };
  if (f.secret.value !== '') body.secret = f.secret.value;
  const headers = parseHeaders(f.headers.value);
  if (Object.keys(headers).length) body.headers = headers;
  return body;
}

// "Name: value" a line, blank lines ignored.
function parseHeaders(text) {
  const headers = Object.create(null);
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    const colon = line.indexOf(':');
    if (colon <= 0) throw new FieldError('headers', 'Line ' + (i + 1) + ': write a header as "Name: value".');
    const key = line.slice(0, colon).trim();
    if (key in headers) throw new FieldError('headers', 'Line ' + (i + 1) + ': ' + key + ' is given twice.');
    headers[key] = line.slice(colon + 1).trim();
  });
  return headers;
}
