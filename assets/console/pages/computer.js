// One computer: summary, maintenance, active alerts (acknowledged or not), agent, effective
// settings, the firewall rules it runs (in evaluation order, with their policy), overrides,
// history and events.

import { state } from '../state.js';
import { badge, dash, h, link, pageTitle, statusBadge, syncRows, table, yesNo } from '../dom.js';
import { absTime, formatOffset, timeAbs, timeAgo } from '../time.js';
import { SETTING_KEYS, sourceLabel } from '../settings.js';
import { acknowledgement, direction, eventFields, eventName, traffic } from '../format.js';
import { ApiError, api, loadPolicies } from '../api.js';
import { clearErrors, failedOrGone, noticeBox, onSubmit, policyOptions, showError } from '../forms.js';
import { navigate } from '../router.js';
import { settingsEditor } from '../editor.js';

export function pageComputer(main, match) {
  const id = match[1];
  const h1 = pageTitle(main, 'Computer ' + id);
  const statusSlot = h('span', { class: 'title-status' });
  h1.append(' ', statusSlot);
  const notice = noticeBox();
  const summary = h('dl', { class: 'facts', id: 'computer-summary' });
  const agentFacts = h('dl', { class: 'facts', id: 'agent-details' });
  const effective = table('effective-settings', ['Setting', 'Value', 'Source'], '—');
  const firewallState = h('div', { id: 'computer-firewall-state' });
  const firewallRules = table('computer-rules', ['#', 'Name', 'From', 'Action', 'Priority', 'Traffic',
    'Ports', 'Source IPs', 'Source MACs', 'Destination IPs', 'Packets'], 'No firewall rules apply to this computer.');
  const history = table('computer-history', ['At', 'What', 'Detail'], 'No history yet.');
  const events = table('computer-events', ['Received', 'Seq', 'Event', 'Agent time', 'Fields'], 'No events yet.');
  const moveSelect = h('select', { id: 'move-policy', 'data-field': 'policy', 'aria-label': 'Policy' });
  const editor = settingsEditor((body) => api('PATCH', '/computers/' + id, { settings: body }));
  const maintenance = h('div', { id: 'computer-maintenance', class: 'notice notice-warning', role: 'status', hidden: true });
  const alerts = table('computer-alerts', ['Severity', 'Alert', 'Message', 'Raised', 'Count', 'Acknowledged', ''], 'No active alerts.');
  const ackComment = h('input', { id: 'computer-ack-comment', 'data-field': 'comment', maxlength: 500, autocomplete: 'off',
    placeholder: 'replacing the PSU' });
  // Not submitted itself: each alert's Acknowledge button sends the comment typed here.
  const ackForm = h('form', { id: 'computer-ack', class: 'inline-form compact' },
    h('label', { for: 'computer-ack-comment', text: 'Comment with an acknowledgement' }), ackComment,
    h('small', { class: 'hint', text: 'optional; an acknowledged alert is not notified again' }),
    h('p', { class: 'form-error', role: 'alert' }));
  ackForm.addEventListener('submit', (event) => event.preventDefault());
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

  main.append(notice, maintenance, h('div', { class: 'toolbar' }, actions, moveForm),
    h('section', {}, h('div', { class: 'section-head' }, h('h2', { text: 'Active alerts' }), link('/alerts', 'All alerts →')),
      ackForm, alerts.node),
    h('div', { class: 'columns' },
      h('section', { class: 'panel' }, h('h2', { text: 'Summary' }), summary),
      h('section', { class: 'panel' }, h('h2', { text: 'Agent' }), agentFacts)),
    h('section', {}, h('h2', { text: 'Effective settings' }), effective.node),
    h('section', { id: 'computer-firewall' }, h('h2', { text: 'Firewall rules' }), firewallState,
      h('div', { class: 'table-scroll' }, firewallRules.node)),
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

  async function acknowledge(alert, button) {
    clearErrors(ackForm);
    button.disabled = true;
    const comment = ackComment.value.trim();
    try {
      await api('POST', '/alerts/' + alert.id + '/acknowledge', comment ? { comment: comment } : undefined);
      ackComment.value = '';
      notice.ok('Acknowledged the ' + alert.kind + ' alert.');
      await refresh();
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      showError(ackForm, err);
    } finally {
      button.disabled = false;
    }
  }

  async function refresh() {
    const [c, policies, hist, evs, active, windows, rules] = await Promise.all([
      api('GET', '/computers/' + id), loadPolicies(),
      api('GET', '/computers/' + id + '/history'),
      api('GET', '/events?computer=' + encodeURIComponent(id) + '&limit=100'),
      api('GET', '/alerts'), api('GET', '/maintenance'), api('GET', '/computers/' + id + '/firewall-rules')]);
    computer = c;
    h1.firstChild.textContent = c.hostname;
    document.title = c.hostname + ' — Picket';
    statusSlot.replaceChildren(statusBadge(c.status));
    statusSlot.dataset.status = c.status;
    fillMaintenance(maintenance, covering(windows.windows, c, policies));
    syncRows(alerts.tbody, active.alerts.filter((a) => a.computer === c.id), (a) => a.id, (a) => h('tr', { 'data-alert-id': a.id },
      h('td', {}, badge('severity', a.severity)), h('td', { class: 'kind', text: a.kind }),
      h('td', { class: 'message', text: a.message }), h('td', { class: 'nowrap' }, timeAgo(a.raised_ms)),
      h('td', { class: 'num', text: a.count }), h('td', { class: 'acknowledged' }, acknowledgement(a.acknowledged) || '—'),
      h('td', {}, a.acknowledged ? null : h('button', { type: 'button', class: 'small acknowledge', 'data-alert-id': a.id,
        text: 'Acknowledge', onclick: (event) => acknowledge(a, event.currentTarget) }))));
    fillSummary(summary, c);
    fillAgent(agentFacts, c);
    fillEffective(effective.tbody, c);
    fillFirewallState(firewallState, rules);
    fillRules(firewallRules.tbody, rules.rules, c.agent ? c.agent.counters : null);
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

// The windows over the computer, itself or a policy above it, that are open or still to come
// (ended ones stay listed by the API until deleted).
function covering(windows, c, policies) {
  const above = new Set();
  let p = policies.find((x) => x.id === c.policy_id);
  while (p && !above.has(p.id)) {
    above.add(p.id);
    p = policies.find((x) => x.id === p.parent_id);
  }
  const now = Date.now();
  return windows.filter((w) => (w.computer === c.id || above.has(w.policy)) && (w.active || w.start_ms > now));
}

function fillMaintenance(box, windows) {
  box.hidden = windows.length === 0;
  box.replaceChildren(...windows.map((w) => {
    const on = w.computer !== undefined ? 'on this computer'
      : h('span', {}, 'through the policy ', link('/policies/' + w.policy, w.name || '#' + w.policy));
    const when = w.active ? 'In maintenance until ' + absTime(w.end_ms) : 'Maintenance planned from ' + absTime(w.start_ms) + ' to ' + absTime(w.end_ms);
    return h('p', { class: 'maintenance-window', 'data-window-id': w.id },
      h('strong', { text: when }), ' (', on, ', by ' + w.by + '): ', h('span', { class: 'reason', text: w.reason }),
      '. Its offline and clock alerts are recorded but not notified.');
  }));
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
  fact(dl, 'Version', a.protocol ? a.agent_version + ' (protocol ' + a.protocol + ')' : a.agent_version);
  if (a.firewall_withheld) fact(dl, 'Firewall', h('span', { id: 'firewall-withheld', class: 'field-note', text: a.firewall_withheld }));
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
    // state: on, off or error (older managers sent only on); the reason shows on hover.
    const state = (x) => x.state || (x.on ? 'on' : 'off');
    fact(dl, 'Components', h('span', {}, a.components.map((x) => {
      const b = badge('component', state(x), x.name + ' ' + state(x));
      if (x.reason) b.title = x.reason;
      return b;
    })));
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

// Whether the host firewall enforces the list below, and how to read it.
function fillFirewallState(box, rules) {
  const from = ' (firewall.enabled from ' + sourceLabel(rules.firewall_enabled_source) + ')';
  const lines = [];
  if (!rules.firewall_enabled) {
    lines.push(h('p', { id: 'firewall-off', class: 'notice notice-warning', role: 'status',
      text: 'The firewall is off for this computer' + from + ': the host firewall enforces none of these rules. ' +
        'The agent still lets only the sources of the rules that govern its port connect to it.' }));
  } else if (rules.firewall_withheld) {
    lines.push(h('p', { id: 'firewall-off', class: 'notice notice-warning', role: 'status', text: rules.firewall_withheld }));
  } else {
    lines.push(h('p', { class: 'muted', text: 'The firewall is on' + from + '.' }));
  }
  lines.push(h('p', { class: 'muted', text: 'In the order the agent evaluates them: priority 4 first; within a priority bypass, ' +
    'log only, force allow, deny, then allow; the first rule that allows or denies a packet decides it.' +
    (rules.agent_port === null ? ' The agent has not reported a listening port: the hidden rules that open it are not shown.' : '') }));
  box.replaceChildren(...lines);
}

// The computer's rules in evaluation order; each says where it comes from, and how many
// packets it matched since the agent last applied its ruleset (when the firewall is on).
function fillRules(tbody, rules, counters) {
  const list = (xs) => (xs && xs.length ? xs.join(', ') : 'any');
  const packets = (r) => {
    const n = counters ? counters['firewall:' + r.counter + ':packets'] : undefined;
    return n === undefined ? '—' : String(n);
  };
  const origin = (r) => {
    if (r.origin === 'policy') return link('/policies/' + r.policy_id, r.policy, { 'data-policy-id': r.policy_id });
    if (r.origin === 'hidden') return h('span', { class: 'muted', title: 'Added by the manager for the agent\'s port', text: 'hidden (manager)' });
    return h('span', { class: 'muted', title: 'What no rule of this direction accepted, once it has an allow rule', text: 'implicit (allow rules)' });
  };
  syncRows(tbody, rules, (r) => r.counter, (r) => h('tr', { 'data-counter': r.counter, 'data-origin': r.origin },
    h('td', { class: 'num', text: r.position }),
    h('td', { class: 'rule-name' }, r.name, r.log ? h('span', { class: 'badge badge-info', text: 'log' }) : null,
      r.skipped ? h('small', { class: 'field-note', title: r.skipped, text: ' (not enforced: ' + r.skipped + ')' }) : null),
    h('td', { class: 'origin nowrap' }, origin(r)),
    h('td', {}, badge('action', r.action)), h('td', { text: r.priority === null ? '—' : r.priority }),
    h('td', { class: 'nowrap', text: traffic(r) }),
    h('td', { text: r.source_ports && r.source_ports.length ? 'from ' + r.source_ports.join(', ') : list(r.destination_ports) }),
    h('td', { text: list(r.source_ips) }), h('td', { text: list(r.source_macs) }),
    h('td', { text: list(r.destination_ips) }), h('td', { class: 'num', text: packets(r) })));
}
