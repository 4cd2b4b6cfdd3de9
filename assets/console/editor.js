// The heartbeat, direction, firewall and agent upgrade editor, shared by the policy and the computer page.
// save(body) PATCHes {"settings": body} and returns the updated POLICY or COMPUTER.

import { h, option } from './dom.js';
import { DIRECTIONS, directionLabel, durationToMinutes, minutesToDuration, sourceLabel } from './settings.js';
import { FieldError, onSubmit } from './forms.js';

export function settingsEditor(save) {
  const heartbeat = settingsSection('Settings > General > Heartbeat', 'heartbeat', [
    numberField('heartbeat.interval', 'Heartbeat interval (minutes)', 'minutes', false),
    numberField('heartbeat.missed-before-alert', 'Number of heartbeats that can be missed before an alert is raised', 'count', true),
    numberField('heartbeat.max-clock-change', 'Maximum change (in minutes) of the local system time on the computer between heartbeats before an alert is raised', 'minutes', true),
    choiceField('heartbeat.offline-errors-for-inactive-vms', 'Raise offline errors for inactive virtual machines',
      [['true', 'Yes'], ['false', 'No']]),
  ], save);
  const directionSection = settingsSection('Settings > General > Communication Direction', 'direction', [
    choiceField('communication.direction', 'Direction of Manager to Agent communication', DIRECTIONS),
  ], save);
  const firewallSection = settingsSection('Settings > Firewall', 'firewall', [
    choiceField('firewall.enabled', "Enforce the policy's firewall rules on the computer (nftables)",
      [['true', 'Yes'], ['false', 'No']]),
  ], save);
  const upgradeSection = settingsSection('Settings > General > Agent Upgrade', 'agent-upgrade', [
    choiceField('agent.auto-upgrade', "Upgrade the agent to the manager's version when the manager has a newer one",
      [['true', 'Yes'], ['false', 'No']]),
  ], save);
  return {
    node: h('div', { class: 'settings-editor' }, heartbeat.node, directionSection.node, firewallSection.node, upgradeSection.node),
    // obj: POLICY or COMPUTER; parentEffective: what the parent (policy) resolves to, used for
    // the "Inherited (...)" text of a field that is overridden here.
    update(obj, parentEffective, kind) {
      heartbeat.update(obj, parentEffective, kind, false);
      directionSection.update(obj, parentEffective, kind, false);
      firewallSection.update(obj, parentEffective, kind, false);
      upgradeSection.update(obj, parentEffective, kind, false);
    },
  };
}

function settingsSection(title, name, fields, save) {
  const saved = h('span', { class: 'saved', role: 'status' });
  const form = h('form', { class: 'panel settings-section', 'data-section': name, novalidate: true },
    h('h3', { text: title }), fields.map((f) => f.row),
    h('p', { class: 'form-error', role: 'alert' }),
    h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'primary', 'data-save': name, text: 'Save' }), saved));
  let dirty = false; // the user changed something not yet saved: polling leaves the inputs alone
  let last = null;
  form.addEventListener('input', () => { dirty = true; saved.textContent = ''; });
  form.addEventListener('change', () => { dirty = true; saved.textContent = ''; });
  onSubmit(form, async () => {
    const body = {};
    for (const f of fields) body[f.key] = f.read();
    const obj = await save(body);
    dirty = false;
    update(obj, last && last.parentEffective, last && last.kind, true);
    saved.textContent = 'Saved.';
  });
  function update(obj, parentEffective, kind, force) {
    last = { parentEffective, kind };
    const keep = !force && (dirty || form.contains(document.activeElement));
    for (const f of fields) {
      const own = obj.settings ? obj.settings[f.key] : undefined;
      const eff = obj.effective ? obj.effective[f.key] : undefined;
      // Overridden here: what would apply if inherited is the parent's value.
      const inheritedFrom = own === undefined ? eff : parentEffective ? parentEffective[f.key] : null;
      f.update(own, eff, inheritedFrom, kind, keep);
    }
  }
  return { node: form, update };
}

function inheritedText(key, eff) {
  if (!eff) return 'Inherited';
  let value = eff.value;
  if (typeof value === 'boolean') value = value ? 'Yes' : 'No';
  else if (key === 'communication.direction') value = directionLabel(value);
  return 'Inherited (' + value + ' from ' + sourceLabel(eff.source) + ')';
}

// A number of minutes or a count, with an "Inherited" checkbox and optionally "Unlimited".
function numberField(key, label, unit, unlimitedChoice) {
  const base = 'f-' + key.replace(/[^a-z0-9]+/gi, '-');
  const inherit = h('input', { type: 'checkbox', id: base + '-inherit', 'data-inherit': key });
  const input = h('input', { type: 'number', id: base, 'data-field': key, class: 'num', min: 0,
    max: unit === 'count' ? 1000 : null, step: unit === 'count' ? 1 : 'any' });
  const unlimited = unlimitedChoice ? h('input', { type: 'checkbox', id: base + '-unlimited', 'data-unlimited': key }) : null;
  const text = h('span', { class: 'inherited-text', 'data-inherited-text': key });
  let inheritedFrom = null;

  function sync() {
    input.disabled = inherit.checked || Boolean(unlimited && unlimited.checked);
    if (unlimited) unlimited.disabled = inherit.checked;
    text.textContent = inherit.checked ? inheritedText(key, inheritedFrom) : '';
    text.hidden = !inherit.checked;
  }
  inherit.addEventListener('change', () => {
    if (inherit.checked && inheritedFrom) show(inheritedFrom.value);
    sync();
  });
  if (unlimited) unlimited.addEventListener('change', sync);

  function show(value) {
    const isUnlimited = value === 'unlimited';
    if (unlimited) unlimited.checked = isUnlimited;
    if (!isUnlimited) input.value = unit === 'minutes' ? durationToMinutes(value) : String(value);
  }

  const row = h('div', { class: 'setting' },
    h('label', { class: 'setting-label', for: base, text: label }),
    h('div', { class: 'controls' },
      h('label', { class: 'check' }, inherit, ' Inherited'),
      input,
      unlimited ? h('label', { class: 'check' }, unlimited, ' Unlimited') : null,
      text));
  return {
    key, row,
    update(own, eff, from, kind, keep) {
      inheritedFrom = from;
      if (!keep) {
        inherit.checked = own === undefined;
        show(own === undefined ? (eff ? eff.value : '') : own);
      }
      sync();
    },
    read() {
      if (inherit.checked) return 'inherited';
      if (unlimited && unlimited.checked) return 'unlimited';
      const n = Number(input.value);
      if (input.value.trim() === '' || !Number.isFinite(n) || n < 0) {
        throw new FieldError(key, unit === 'count' ? 'Enter a number from 0 to 1000' + (unlimited ? ', or choose Unlimited.' : '.')
          : 'Enter a number of minutes' + (unlimited ? ', or choose Unlimited.' : '.'));
      }
      if (unit === 'count') {
        if (!Number.isInteger(n) || n > 1000) throw new FieldError(key, 'Enter a whole number from 0 to 1000, or choose Unlimited.');
        return n;
      }
      if (Math.round(n * 60) < 1) throw new FieldError(key, 'Enter at least 1 second (0.0167 minutes).');
      return minutesToDuration(n);
    },
  };
}

// A select whose first option, "Inherited", carries data-inherit.
function choiceField(key, label, choices) {
  const id = 'f-' + key.replace(/[^a-z0-9]+/gi, '-');
  const select = h('select', { id: id, 'data-field': key },
    option('inherited', 'Inherited', true, { 'data-inherit': key }),
    choices.map(([value, text]) => option(value, text, false)));
  const text = h('span', { class: 'inherited-text', 'data-inherited-text': key });
  const note = h('small', { class: 'hint' });
  let inheritedFrom = null;
  function sync() {
    const inherited = select.value === 'inherited';
    text.textContent = inherited ? inheritedText(key, inheritedFrom) : '';
    text.hidden = !inherited;
  }
  select.addEventListener('change', sync);
  const row = h('div', { class: 'setting' },
    h('label', { class: 'setting-label', for: id, text: label }),
    h('div', { class: 'controls' }, select, text, note));
  return {
    key, row,
    update(own, eff, from, kind, keep) {
      inheritedFrom = from;
      // An appliance is always bidirectional (DESIGN.md): offer nothing else.
      const appliance = key === 'communication.direction' && kind === 'appliance';
      for (const opt of select.options) opt.disabled = appliance && opt.value !== 'inherited' && opt.value !== 'bidirectional';
      note.textContent = appliance ? 'An appliance is always bidirectional.' : '';
      if (!keep) select.value = own === undefined ? 'inherited' : String(own);
      sync();
    },
    read() {
      if (select.value === 'inherited') return 'inherited';
      if (select.value === 'true' || select.value === 'false') return select.value === 'true';
      return select.value;
    },
  };
}
