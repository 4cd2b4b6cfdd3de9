// One policy: name and parent, settings, firewall rules (added, edited in place, deleted).

import { badge, h, labelled, link, option, pageTitle, syncRows, table } from '../dom.js';
import { DEFAULTS } from '../settings.js';
import { ApiError, api, loadPolicies } from '../api.js';
import { clearErrors, failedOrGone, noticeBox, onSubmit, policyOptions } from '../forms.js';
import { settingsEditor } from '../editor.js';
import { traffic } from '../format.js';

const RULE_ACTIONS = ['allow', 'deny', 'force-allow', 'bypass', 'log-only'];

// Policy ids in the subtree under `id` (itself included): not valid as its new parent.
function subtree(policies, id) {
  const ids = new Set([id]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const p of policies) {
      if (p.parent_id !== null && ids.has(p.parent_id) && !ids.has(p.id)) { ids.add(p.id); grew = true; }
    }
  }
  return ids;
}

export function pagePolicy(main, match) {
  const id = Number(match[1]);
  const h1 = pageTitle(main, 'Policy ' + id);
  const notice = noticeBox();
  const name = h('input', { id: 'policy-name', 'data-field': 'name', required: true, autocomplete: 'off', maxlength: 100 });
  const parent = h('select', { id: 'policy-parent', 'data-field': 'parent' });
  const saved = h('span', { class: 'saved', role: 'status' });
  const general = h('form', { id: 'policy-general', class: 'panel inline-form' },
    h('h2', { text: 'General' }),
    h('div', { class: 'row' }, labelled('Name', name), labelled('Parent', parent),
      h('div', { class: 'field actions' }, h('button', { type: 'submit', class: 'primary', 'data-save': 'policy', text: 'Save' }))),
    h('p', { class: 'form-error', role: 'alert' }), saved);
  let generalDirty = false;
  general.addEventListener('input', () => { generalDirty = true; saved.textContent = ''; });
  general.addEventListener('change', () => { generalDirty = true; saved.textContent = ''; });
  let policy = null;
  onSubmit(general, async () => {
    if (!policy) return;
    const body = { name: name.value };
    if (policy.parent_id !== null && parent.value !== policy.parent) body.parent = parent.value;
    policy = await api('PATCH', '/policies/' + id, body);
    generalDirty = false;
    saved.textContent = 'Saved.';
    await refresh(true);
  });

  const editor = settingsEditor((body) => api('PATCH', '/policies/' + id, { settings: body }));
  const ownRules = table('own-rules', ['Name', 'Action', 'Priority', 'Traffic', 'Ports', 'Source IPs', 'Source MACs', 'Destination IPs', ''],
    'This policy has no rules of its own.');
  const inheritedRules = table('inherited-rules', ['From', 'Name', 'Action', 'Priority', 'Traffic', 'Ports', 'Source IPs', 'Source MACs', 'Destination IPs'],
    'No rules inherited from parent policies.');
  const rulesError = h('p', { class: 'form-error', role: 'alert', id: 'rules-error' });
  const ruleForm = newRuleForm(id, () => refresh());

  main.append(notice, general,
    h('section', { class: 'editor' }, editor.node),
    h('section', { id: 'firewall' }, h('h2', { text: 'Firewall rules' }),
      h('p', { class: 'muted', text: 'A priority 4 force-allow or bypass rule for incoming TCP over IP whose ports include the agent\'s port decides who may reach the agent; without one, anyone may.' }),
      rulesError, h('h3', { text: 'Rules of this policy' }), h('div', { class: 'table-scroll' }, ownRules.node),
      h('h3', { text: 'Inherited rules' }), h('div', { class: 'table-scroll' }, inheritedRules.node), ruleForm.node));

  async function deleteRule(rule) {
    rulesError.textContent = '';
    try {
      await api('DELETE', '/policies/' + id + '/firewall-rules/' + rule.id);
      if (ruleForm.editing() === rule.id) ruleForm.reset();
      await refresh();
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      rulesError.textContent = err.message;
    }
  }

  async function refresh(force) {
    const [policies, rules] = await Promise.all([loadPolicies(), api('GET', '/policies/' + id + '/firewall-rules')]);
    policy = policies.find((p) => p.id === id);
    if (!policy) throw new ApiError(404, 'No policy ' + id + '.', null);
    h1.textContent = policy.name;
    document.title = policy.name + ' — Picket';
    if (force === true || (!generalDirty && !general.contains(document.activeElement))) {
      name.value = policy.name;
      if (policy.parent_id === null) {
        parent.replaceChildren(option('', '— none: the Base Policy is the root', true));
        parent.disabled = true;
      } else {
        policyOptions(parent, policies, policy.parent, subtree(policies, id));
        parent.value = policy.parent;
      }
    }
    const parentPolicy = policies.find((p) => p.id === policy.parent_id);
    editor.update(policy, parentPolicy ? parentPolicy.effective : DEFAULTS, null);
    // Edited or deleted elsewhere: the form no longer edits what the table shows.
    if (ruleForm.editing() !== null && !rules.rules.some((r) => r.id === ruleForm.editing())) ruleForm.reset();
    syncRows(ownRules.tbody, rules.rules, (r) => r.id, (r) => h('tr', { 'data-rule-id': r.id }, ruleCells(r),
      h('td', { class: 'nowrap' },
        h('button', { type: 'button', class: 'small edit-rule', 'data-rule-id': r.id, text: 'Edit', onclick: () => ruleForm.edit(r) }), ' ',
        h('button', { type: 'button', class: 'small danger delete-rule', 'data-rule-id': r.id, text: 'Delete', onclick: () => deleteRule(r) }))));
    const inherited = rules.effective.filter((r) => r.policy_id !== id);
    syncRows(inheritedRules.tbody, inherited, (r) => r.policy_id + ':' + r.id, (r) => h('tr', { 'data-rule-id': r.id },
      h('td', {}, link('/policies/' + r.policy_id, r.policy)), ruleCells(r)));
  }

  const failed = failedOrGone(main, notice, 'Policy not found',
    'There is no policy ' + id + '. ', '/policies', 'Back to the policies');
  return { refresh, failed };
}

function ruleCells(r) {
  const list = (xs) => (xs && xs.length ? xs.join(', ') : 'any');
  return [
    h('td', { class: 'rule-name' }, r.name, r.governs_agent_port ? h('span', { class: 'badge badge-info', title: 'Decides who may reach the agent\'s port', text: 'agent port' }) : null,
      r.log ? h('span', { class: 'badge badge-info', title: 'What it matches is logged and reported as events', text: 'log' }) : null),
    h('td', {}, badge('action', r.action)), h('td', { text: r.priority }), h('td', { class: 'nowrap', text: traffic(r) }),
    h('td', { text: list(r.destination_ports) }),
    h('td', { text: list(r.source_ips) }), h('td', { text: list(r.source_macs) }), h('td', { text: list(r.destination_ips) }),
  ];
}

// The rule form: it adds a rule, or after edit(rule) replaces that rule (PUT) keeping its id
// and place. One form for both, so an edit can set whatever an addition can.
function newRuleForm(policyId, onSaved) {
  const select = (field, values, initial) => h('select', { id: 'rule-' + field.replace(/_/g, '-'), 'data-field': field },
    values.map((v) => option(String(v), String(v), v === initial)));
  const text = (field, placeholder) => h('input', { id: 'rule-' + field.replace(/_/g, '-'), 'data-field': field, placeholder: placeholder, autocomplete: 'off' });
  const f = {
    name: text('name', 'agent port from the admin net'),
    action: select('action', RULE_ACTIONS, 'allow'),
    priority: select('priority', [0, 1, 2, 3, 4], 0),
    direction: select('direction', ['incoming', 'outgoing'], 'incoming'),
    frame_type: select('frame_type', ['ip', 'arp', 'any'], 'ip'),
    protocol: select('protocol', ['any', 'tcp', 'udp', 'icmp'], 'any'),
    destination_ports: text('destination_ports', '4118, 8000-8080'),
    source_ips: text('source_ips', '10.0.0.0/8, 192.168.1.5'),
    source_macs: text('source_macs', '00:1a:2b:3c:4d:5e'),
    destination_ips: text('destination_ips', '192.0.2.10'),
    log: h('input', { type: 'checkbox', id: 'rule-log', 'data-field': 'log' }),
  };
  const title = h('h3', { text: 'Add a rule' });
  const submit = h('button', { type: 'submit', class: 'primary', id: 'add-rule-button', text: 'Add rule' });
  const cancel = h('button', { type: 'button', id: 'cancel-rule-edit', text: 'Cancel', hidden: true, onclick: () => reset() });
  const done = h('span', { class: 'saved', role: 'status' });
  const form = h('form', { id: 'new-rule', class: 'panel inline-form' },
    title,
    h('div', { class: 'row' }, labelled('Name', f.name), labelled('Action', f.action), labelled('Priority', f.priority),
      labelled('Direction', f.direction), labelled('Frame type', f.frame_type), labelled('Protocol', f.protocol)),
    h('div', { class: 'row' }, labelled('Destination ports', f.destination_ports, 'Comma-separated; empty = any'),
      labelled('Source IPs', f.source_ips, 'Addresses, CIDRs or from-to'), labelled('Source MACs', f.source_macs, 'Comma-separated'),
      labelled('Destination IPs', f.destination_ips, 'As source IPs'),
      h('div', { class: 'field' }, h('span', { class: 'label', text: 'Log' }),
        h('label', { class: 'check' }, f.log, ' Report matches as events')),
      h('div', { class: 'field actions' }, h('div', { class: 'form-actions' }, submit, cancel))),
    h('p', { class: 'form-error', role: 'alert' }), done);
  let editing = null;
  // The rule as the form showed it when editing began: only what the user changed is sent, and
  // the manager keeps the rest as it is then, so another administrator's edit of another field
  // in the meantime is not undone.
  let original = null;
  const split = (input) => input.value.split(',').map((s) => s.trim()).filter((s) => s !== '');
  const TEXTS = ['name', 'destination_ports', 'source_ips', 'source_macs', 'destination_ips'];

  // Back to adding; the selects keep their values, handy for adding several similar rules.
  function reset() {
    editing = null;
    original = null;
    form.dataset.editing = '';
    title.textContent = 'Add a rule';
    submit.textContent = 'Add rule';
    cancel.hidden = true;
    clearErrors(form);
    for (const key of TEXTS) f[key].value = '';
    f.log.checked = false;
  }

  function edit(rule) {
    editing = rule.id;
    form.dataset.editing = String(rule.id);
    title.textContent = 'Edit rule ' + rule.id + ' "' + rule.name + '"';
    submit.textContent = 'Save rule';
    cancel.hidden = false;
    done.textContent = '';
    clearErrors(form);
    f.name.value = rule.name;
    for (const key of ['action', 'priority', 'direction', 'frame_type', 'protocol']) f[key].value = String(rule[key]);
    for (const key of TEXTS.slice(1)) f[key].value = (rule[key] || []).join(', ');
    f.log.checked = rule.log === true;
    original = read();
    form.scrollIntoView({ block: 'nearest' });
    f.name.focus();
  }

  function read() {
    return {
      name: f.name.value.trim(), action: f.action.value, priority: Number(f.priority.value),
      direction: f.direction.value, frame_type: f.frame_type.value, protocol: f.protocol.value,
      destination_ports: split(f.destination_ports), source_ips: split(f.source_ips), source_macs: split(f.source_macs),
      destination_ips: split(f.destination_ips), log: f.log.checked,
    };
  }

  onSubmit(form, async () => {
    done.textContent = '';
    const body = read();
    const path = '/policies/' + policyId + '/firewall-rules';
    let rule;
    if (editing === null) {
      rule = await api('POST', path, body);
    } else {
      const changes = {};
      for (const key of Object.keys(body)) {
        if (JSON.stringify(body[key]) !== JSON.stringify(original[key])) changes[key] = body[key];
      }
      rule = await api('PUT', path + '/' + editing, changes);
    }
    const verb = editing === null ? 'Added' : 'Saved';
    reset();
    done.textContent = verb + ' rule "' + rule.name + '".';
    await onSaved();
  });
  return { node: form, edit, reset, editing: () => editing };
}
