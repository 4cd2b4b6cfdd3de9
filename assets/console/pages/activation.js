// Activation tokens: create one (its agent command is shown once), list, revoke.

import { badge, dash, h, labelled, link, pageTitle, syncRows, table } from '../dom.js';
import { absTime, timeAbs, timeAgo } from '../time.js';
import { ApiError, api, loadPolicies } from '../api.js';
import { onSubmit, policyOptions } from '../forms.js';

export function pageActivation(main) {
  pageTitle(main, 'Activation');
  const policy = h('select', { id: 'token-policy', 'data-field': 'policy' });
  const uses = h('input', { id: 'token-uses', 'data-field': 'uses', type: 'number', min: 1, max: 100000, placeholder: 'unlimited', class: 'num' });
  const expires = h('input', { id: 'token-expires', 'data-field': 'expires', value: '24h', class: 'short', autocomplete: 'off' });
  const result = h('div', { id: 'token-result', class: 'panel token-result', hidden: true });
  const form = h('form', { id: 'new-token', class: 'panel inline-form' },
    h('h2', { text: 'Create an activation token' }),
    h('p', { class: 'muted', text: 'An agent presents the token once to join this manager, under the policy chosen here.' }),
    h('div', { class: 'row' }, labelled('Policy', policy), labelled('Uses', uses, 'Blank = unlimited'),
      labelled('Expires after', expires, '30m, 24h, 7d (1m to 365d)'),
      h('div', { class: 'field actions' }, h('button', { type: 'submit', class: 'primary', id: 'create-token', text: 'Create token' }))),
    h('p', { class: 'form-error', role: 'alert' }));
  const tokensError = h('p', { class: 'form-error', role: 'alert', id: 'tokens-error' });
  const tokens = table('tokens', ['Token id', 'Policy', 'Uses left', 'Expires', 'Created', ''], 'No activation tokens.');
  main.append(form, result, h('section', {}, h('h2', { text: 'Tokens' }), tokensError, tokens.node));

  onSubmit(form, async () => {
    // Before the policy list has loaded the select is empty: the manager's default (the Base
    // Policy, which the select would show first) applies.
    const body = { expires: expires.value.trim() };
    if (policy.value !== '') body.policy = policy.value;
    const u = uses.value.trim();
    // Only whole numbers become numbers; anything else goes as typed so the server names it.
    if (u !== '') body.uses = /^\d+$/.test(u) ? Number(u) : u;
    const token = await api('POST', '/tokens', body);
    showToken(result, token);
    await refresh();
  });

  async function revoke(token) {
    tokensError.textContent = '';
    try {
      await api('DELETE', '/tokens/' + encodeURIComponent(token.id));
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      tokensError.textContent = err.message;
    }
    await refresh();
  }

  async function refresh() {
    const [policies, data] = await Promise.all([loadPolicies(), api('GET', '/tokens')]);
    if (document.activeElement !== policy) policyOptions(policy, policies, 'Base Policy');
    syncRows(tokens.tbody, data.tokens, (t) => t.id, (t) => h('tr', { 'data-token-id': t.id, class: t.expired ? 'inactive' : '' },
      h('td', {}, h('code', { text: t.id })),
      h('td', {}, t.policy_id !== null && t.policy ? link('/policies/' + t.policy_id, t.policy) : '—'),
      h('td', { text: t.uses_left === null || t.uses_left === undefined ? 'unlimited' : t.uses_left }),
      h('td', {}, t.expired ? badge('token', 'expired', 'expired') : timeAgo(t.expires_ms)),
      h('td', {}, timeAbs(t.created_ms)),
      h('td', {}, h('button', { type: 'button', class: 'small danger revoke', 'data-token-id': t.id, text: 'Revoke', onclick: () => revoke(t) }))));
  }
  return { refresh };
}

function showToken(box, token) {
  box.replaceChildren(
    h('h2', { text: 'Token ' + token.id + ' created' }),
    h('p', { class: 'warning', text: 'The secret is shown only once: copy a command now.' }),
    h('p', { text: 'On the computer to protect, as root: this one line downloads the agent from this manager (pinned to its key), checks it, installs it with its service and activates it.' }),
    commandBox('install-command', token.install_command),
    h('p', { text: 'Or, where picket is already installed, run the agent directly:' }),
    commandBox('agent-command', token.agent_command),
    h('p', { class: 'muted', text: 'Policy ' + dash(token.policy) + '; ' +
      (token.uses_left === null ? 'unlimited uses' : token.uses_left + ' use(s)') + '; expires ' + absTime(token.expires_ms) + '.' }));
  box.hidden = false;
}

// A command to copy, with its Copy button.
function commandBox(id, text) {
  const command = h('code', { id, text });
  const copied = h('span', { class: 'saved', role: 'status' });
  const copy = h('button', { type: 'button', id: 'copy-' + id, text: 'Copy', onclick: async () => {
    try {
      await navigator.clipboard.writeText(text);
      copied.textContent = 'Copied.';
    } catch (e) {
      // No clipboard access (an old browser, or a page not seen as secure): select the text.
      const range = document.createRange();
      range.selectNodeContents(command);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      copied.textContent = 'Selected: press Ctrl+C to copy.';
    }
  } });
  return h('div', { class: 'command' }, h('pre', {}, command), h('div', {}, copy, ' ', copied));
}
