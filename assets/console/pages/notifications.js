// Administration > Notifications: the channels alerts go out on (email, syslog, webhook), a
// test of each, the routes that narrow what each receives, and maintenance windows.

import { badge, computerLink, h, labelled, link, option, pageTitle, syncRows, table } from '../dom.js';
import { absTime, timeAbs, timeAgo } from '../time.js';
import { ALERT_KINDS } from '../format.js';
import { ApiError, api, loadComputers, loadPolicies } from '../api.js';
import { noticeBox, onSubmit, showError } from '../forms.js';
import { channelForm } from '../channels.js';

const CHANGES = ['raised', 'repeated', 'cleared'];

export function pageNotifications(main) {
  pageTitle(main, 'Notifications');
  const notice = noticeBox();
  const secretBox = h('div', { id: 'channel-secret-result', class: 'panel token-result', hidden: true });
  const channels = table('channels', ['Name', 'Kind', 'Sends to', 'Delivery', ''], 'No channels: alerts are only shown in the console.');
  const routes = table('routes', ['Channel', 'Alert kind', 'Severity', 'Policy', 'On', ''],
    'No routes: every channel receives every alert raised and cleared.');
  const windows = table('maintenance', ['On', 'Reason', 'By', 'From', 'Until', ''], 'No maintenance window is open.');
  const channelsError = h('p', { class: 'form-error', role: 'alert', id: 'channels-error' });
  const routesError = h('p', { class: 'form-error', role: 'alert', id: 'routes-error' });
  const windowsError = h('p', { class: 'form-error', role: 'alert', id: 'maintenance-error' });
  // A channel's last test result, by channel name: the node moves into the row when a refresh
  // rebuilds it, so an answer stays on screen until the next test.
  const results = new Map();
  const testing = new Set();

  const addChannel = channelForm(async (answer) => {
    notice.ok('Added the ' + answer.kind + ' channel ' + answer.name + '.');
    if (answer.secret) showSecret(secretBox, answer);
    else secretBox.hidden = true;
    await refresh();
  });
  const addRoute = routeForm(async (route) => {
    notice.ok('Added a route to ' + route.channel + '.');
    await refresh();
  });
  const addWindow = windowForm(async (w) => {
    notice.ok('Maintenance on ' + (w.name || 'it') + ' until ' + absTime(w.end_ms) + '.');
    await refresh();
  });

  main.append(notice, secretBox,
    h('section', {}, h('h2', { text: 'Channels' }),
      h('p', { class: 'muted', text: 'Every alert raised, repeated or cleared is queued for each channel its routes let through, and delivered with retries until the channel gives up.' }),
      channelsError, channels.node, addChannel.node),
    h('section', {}, h('h2', { text: 'Routes' }),
      h('p', { class: 'muted', text: 'A channel with no route receives every alert raised and cleared; with routes, only what one of them lets through (alert kind, severity, a policy and the policies below it).' }),
      routesError, routes.node, addRoute.node),
    h('section', {}, h('h2', { text: 'Maintenance windows' }),
      h('p', { class: 'muted', text: 'During a window, the offline and clock alerts of its computers are recorded and shown but not notified.' }),
      windowsError, windows.node, addWindow.node));

  // Runs `action`, showing an API refusal in `errorBox`, then refreshes.
  async function act(errorBox, action) {
    errorBox.textContent = '';
    try {
      await action();
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      errorBox.textContent = err.message;
    }
    await refresh();
  }

  async function sendTest(name, button) {
    const result = resultFor(results, name);
    testing.add(name);
    button.disabled = true;
    result.className = 'test-result';
    result.textContent = 'Sending a test…';
    try {
      const answer = await api('POST', '/notifications/channels/' + encodeURIComponent(name) + '/test');
      result.className = 'test-result test-ok';
      result.replaceChildren('Delivered. The server answered: ', h('code', { class: 'break', text: answer.answer }));
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      result.className = 'test-result test-failed';
      result.textContent = err.message;
    } finally {
      testing.delete(name);
      button.disabled = false;
    }
  }

  function removeChannel(c) {
    if (!confirm('Remove the channel ' + c.name + '? Its routes go with it, and what is queued for it is dropped.')) return;
    act(channelsError, async () => {
      await api('DELETE', '/notifications/channels/' + encodeURIComponent(c.name));
      results.delete(c.name);
      notice.ok('Removed the channel ' + c.name + '.');
    });
  }

  function channelRow(c) {
    return h('tr', { 'data-channel': c.name },
      h('td', { class: 'name' }, h('strong', { text: c.name })),
      h('td', {}, badge('channel', c.kind)),
      h('td', { class: 'target' }, targetText(c)),
      h('td', { class: 'delivery' }, deliveryCell(c)),
      h('td', { class: 'channel-actions' },
        h('div', { class: 'actions-bar' },
          h('button', { type: 'button', class: 'small test-channel', 'data-channel': c.name, text: 'Send a test',
            disabled: testing.has(c.name), onclick: (event) => sendTest(c.name, event.currentTarget) }),
          h('button', { type: 'button', class: 'small danger remove-channel', 'data-channel': c.name, text: 'Remove',
            onclick: () => removeChannel(c) })),
        resultFor(results, c.name)));
  }

  function routeRow(r) {
    return h('tr', { 'data-route-id': r.id },
      h('td', { text: r.channel }), h('td', { text: r.kind || 'any' }), h('td', { text: r.severity || 'any' }),
      h('td', {}, r.policy === null ? 'any' : h('span', {}, link('/policies/' + r.policy, r.policy_name || '#' + r.policy), ' and below')),
      h('td', { text: r.on.join(', ') }),
      h('td', {}, h('button', { type: 'button', class: 'small danger delete-route', 'data-route-id': r.id, text: 'Delete',
        onclick: () => act(routesError, () => api('DELETE', '/notifications/routes/' + r.id)) })));
  }

  function windowRow(w) {
    const on = w.computer !== undefined ? h('span', {}, 'computer ', computerLink(w.computer, w.name))
      : h('span', {}, 'policy ', link('/policies/' + w.policy, w.name || '#' + w.policy), ' and below');
    return h('tr', { 'data-window-id': w.id },
      h('td', {}, on), h('td', { class: 'message', text: w.reason }), h('td', { text: w.by }),
      h('td', { class: 'nowrap' }, timeAbs(w.start_ms), w.active ? null : h('span', { class: 'muted', text: ' (planned)' })),
      h('td', { class: 'nowrap' }, timeAbs(w.end_ms)),
      h('td', {}, h('button', { type: 'button', class: 'small end-window', 'data-window-id': w.id, text: 'End now',
        onclick: () => act(windowsError, () => api('DELETE', '/maintenance/' + w.id)) })));
  }

  async function refresh() {
    const [data, maintenance, policies] = await Promise.all([
      api('GET', '/notifications/channels'), api('GET', '/maintenance'), loadPolicies()]);
    syncRows(channels.tbody, data.channels, (c) => c.name, channelRow);
    // A route shows its policy's name: its row is redrawn when that changes.
    syncRows(routes.tbody, data.routes.map((r) => Object.assign({ policy_name: policyName(policies, r.policy) }, r)), (r) => r.id, routeRow);
    // Ended windows stay stored until deleted; only open and planned ones matter here.
    const now = Date.now();
    syncRows(windows.tbody, maintenance.windows.filter((w) => w.active || w.start_ms > now), (w) => w.id, windowRow);
    addRoute.update(data.channels, policies);
    addWindow.update(policies);
  }
  return { refresh };
}

function policyName(policies, id) {
  const p = policies.find((x) => x.id === id);
  return p ? p.name : null;
}

function resultFor(results, name) {
  if (!results.has(name)) results.set(name, h('p', { class: 'test-result', 'data-channel': name, role: 'status' }));
  return results.get(name);
}

function targetText(c) {
  const s = c.settings || {};
  let text;
  if (c.kind === 'email') {
    text = 'SMTP ' + s.smtp + ' (' + s.security + ') from ' + s.from + ' to ' + (s.to || []).join(', ') +
      (s.username ? '; login ' + s.username : '');
  } else if (c.kind === 'syslog') {
    text = s.address + ' over ' + s.transport + ', ' + s.format;
  } else if (c.kind === 'webhook') {
    text = s.url + (s.headers && s.headers.length ? '; headers ' + s.headers.join(', ') : '');
  } else {
    text = JSON.stringify(s);
  }
  return h('span', {}, h('span', { text: text }),
    s.ca_cert ? h('span', { class: 'badge badge-info', title: 'Checked against its own CA certificate', text: 'own CA' }) : null);
}

// What is queued for the channel, what went, and how its last attempts fared.
function deliveryCell(c) {
  const d = c.delivery || {};
  return h('div', {},
    h('div', { class: 'counts', text: d.pending + ' pending, ' + d.sent + ' sent, ' + d.failed + ' given up' }),
    d.skipped ? h('div', { class: 'muted', text: d.skipped + ' skipped (not routed here, or during maintenance)' }) : null,
    d.last_sent_ms ? h('div', { class: 'muted' }, 'last sent ', timeAgo(d.last_sent_ms)) : null,
    d.failing ? h('div', { class: 'field-error last-error' }, badge('delivery', 'failing', 'failing'),
      (d.attempts === 1 ? '1 attempt' : d.attempts + ' attempts') + ' failed, the last ', timeAgo(d.last_attempt_ms), ': ' + (d.last_error || 'no error recorded'))
      : d.last_error ? h('div', { class: 'muted last-error', text: 'Earlier error: ' + d.last_error }) : null,
    eventsCell(c));
}

// A syslog channel that forwards agent events: which, and how their delivery goes.
function eventsCell(c) {
  const e = c.event_delivery;
  const ids = (c.settings && c.settings.events) || [];
  if (!e || !ids.length) return null;
  return h('div', { class: 'events' },
    h('div', { class: 'counts', text: 'Agent events ' + ids.join(', ') + ': ' + e.pending + ' pending, ' + e.sent + ' sent, ' + e.failed + ' given up' + (e.dropped ? ', ' + e.dropped + ' deleted before they were sent' : '') }),
    e.failing ? h('div', { class: 'field-error last-error', text: 'Events failing: ' + (e.last_error || 'no error recorded') }) : null);
}

function showSecret(box, channel) {
  const done = h('button', { type: 'button', id: 'secret-copied', text: 'I have copied it', onclick: () => {
    box.replaceChildren();
    box.hidden = true;
  } });
  box.replaceChildren(
    h('h2', { text: 'Signing secret of ' + channel.name }),
    h('p', { class: 'warning', text: 'This secret will not be shown again: copy it now into the receiver, which checks each request\'s signature with it.' }),
    h('div', { class: 'command' }, h('pre', {}, h('code', { id: 'webhook-secret', text: channel.secret })), h('div', {}, done)));
  box.hidden = false;
}

function routeForm(onAdded) {
  const channel = h('select', { id: 'route-channel', 'data-field': 'channel' });
  const kind = h('select', { id: 'route-kind', 'data-field': 'kind' }, option('', 'any', true), ALERT_KINDS.map((k) => option(k, k)));
  const severity = h('select', { id: 'route-severity', 'data-field': 'severity' },
    option('', 'any', true), option('critical', 'critical'), option('warning', 'warning'));
  const policy = h('select', { id: 'route-policy', 'data-field': 'policy' }, option('', 'any', true));
  const on = CHANGES.map((c) => h('input', { type: 'checkbox', id: 'route-on-' + c, value: c, checked: c !== 'repeated' }));
  const onField = h('span', { class: 'checks', 'data-field': 'on' },
    on.map((box) => h('label', { class: 'check', for: box.id }, box, ' ' + box.value)));
  const form = h('form', { id: 'new-route', class: 'panel inline-form' },
    h('h3', { text: 'Add a route' }),
    h('div', { class: 'row' }, labelled('Channel', channel), labelled('Alert kind', kind), labelled('Severity', severity),
      labelled('Policy', policy, 'and the policies below it'),
      h('div', { class: 'field' }, h('span', { class: 'label', text: 'On' }), onField),
      h('div', { class: 'field actions' }, h('button', { type: 'submit', class: 'primary', id: 'add-route', text: 'Add route' }))),
    h('p', { class: 'form-error', role: 'alert' }));
  onSubmit(form, async () => {
    const body = { channel: channel.value, on: on.filter((b) => b.checked).map((b) => b.value) };
    if (kind.value) body.kind = kind.value;
    if (severity.value) body.severity = severity.value;
    if (policy.value) body.policy = policy.value;
    await onAdded(await api('POST', '/notifications/routes', body));
  });
  return {
    node: form,
    update(channels, policies) {
      keepChoice(channel, channels.map((c) => option(c.name, c.name)));
      keepChoice(policy, [option('', 'any')].concat(policies.map((p) => option(p.name, p.name))));
    },
  };
}

// Replaces a select's options, keeping what is chosen; not while the user is on it.
function keepChoice(select, options) {
  if (document.activeElement === select) return;
  const current = select.value;
  select.replaceChildren(...options);
  if (options.some((o) => o.value === current)) select.value = current;
}

function windowForm(onAdded) {
  const target = h('select', { id: 'window-target', 'aria-label': 'Window on' },
    option('policy', 'A policy and below', true), option('computer', 'A computer'));
  const policy = h('select', { id: 'window-policy', 'data-field': 'policy' });
  const computer = h('select', { id: 'window-computer', 'data-field': 'computer' });
  const policyField = labelled('Policy', policy);
  const computerField = labelled('Computer', computer);
  computerField.hidden = true;
  const duration = h('input', { id: 'window-duration', 'data-field': 'duration', value: '2h', class: 'short', autocomplete: 'off' });
  const reason = h('input', { id: 'window-reason', 'data-field': 'reason', maxlength: 500, autocomplete: 'off', placeholder: 'patching' });
  const form = h('form', { id: 'new-window', class: 'panel inline-form' },
    h('h3', { text: 'Open a maintenance window' }),
    h('div', { class: 'row' }, labelled('On', target), policyField, computerField,
      labelled('Duration', duration, '30m, 2h, 1d (at most 30d)'), labelled('Reason', reason),
      h('div', { class: 'field actions' }, h('button', { type: 'submit', class: 'primary', id: 'add-window', text: 'Start window' }))),
    h('p', { class: 'form-error', role: 'alert' }));
  // The computers are listed when asked for (a site may have many), not at every refresh.
  target.addEventListener('change', async () => {
    policyField.hidden = target.value !== 'policy';
    computerField.hidden = target.value !== 'computer';
    if (target.value !== 'computer') return;
    try {
      const computers = (await loadComputers()).sort((a, b) => a.hostname.localeCompare(b.hostname));
      keepChoice(computer, computers.map((c) => option(String(c.id), c.hostname)));
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      showError(form, err);
    }
  });
  onSubmit(form, async () => {
    const body = { duration: duration.value.trim(), reason: reason.value.trim() };
    if (target.value === 'computer') body.computer = computer.value === '' ? null : Number(computer.value);
    else body.policy = policy.value;
    const w = await api('POST', '/maintenance', body);
    reason.value = '';
    await onAdded(w);
  });
  return {
    node: form,
    update(policies) {
      keepChoice(policy, policies.map((p) => option(p.name, p.name)));
    },
  };
}
