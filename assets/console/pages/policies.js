// The policy tree, and the form that creates a policy.

import { h, labelled, link, pageTitle } from '../dom.js';
import { ApiError, api, loadComputers, loadPolicies } from '../api.js';
import { onSubmit, policyOptions } from '../forms.js';

export function pagePolicies(main) {
  pageTitle(main, 'Policies');
  const tree = h('ul', { class: 'tree', id: 'policy-tree' });
  const treeError = h('p', { class: 'form-error', role: 'alert', id: 'policies-error' });
  const name = h('input', { id: 'new-policy-name', 'data-field': 'name', required: true, autocomplete: 'off', maxlength: 100 });
  const parent = h('select', { id: 'new-policy-parent', 'data-field': 'parent' });
  const done = h('span', { class: 'saved', role: 'status' });
  const form = h('form', { id: 'new-policy', class: 'panel inline-form' },
    h('h2', { text: 'New policy' }),
    h('div', { class: 'row' }, labelled('Name', name), labelled('Parent', parent),
      h('div', { class: 'field actions' }, h('button', { type: 'submit', class: 'primary', id: 'new-policy-button', text: 'Create policy' }))),
    h('p', { class: 'form-error', role: 'alert' }), done);
  onSubmit(form, async () => {
    done.textContent = '';
    const body = { name: name.value };
    if (parent.value !== '') body.parent = parent.value; // empty until loaded: the Base Policy
    const p = await api('POST', '/policies', body);
    done.replaceChildren('Created ', link('/policies/' + p.id, p.name), '.');
    name.value = '';
    await refresh();
  });
  main.append(h('section', { class: 'panel' }, treeError, tree), form);
  let lastSig = '';

  async function refresh() {
    const [policies, computers] = await Promise.all([loadPolicies(), loadComputers()]);
    if (document.activeElement !== parent) policyOptions(parent, policies, parent.value || 'Base Policy');
    const used = {};
    for (const c of computers) used[c.policy_id] = (used[c.policy_id] || 0) + 1;
    const sig = JSON.stringify([policies.map((p) => [p.id, p.name, p.parent_id]), used]);
    if (sig === lastSig) return; // unchanged: keep the buttons under the pointer
    lastSig = sig;
    tree.replaceChildren(...policyBranch(policies, null, used, deletePolicy));
  }

  async function deletePolicy(p) {
    treeError.textContent = '';
    try {
      await api('DELETE', '/policies/' + p.id);
      done.textContent = 'Deleted ' + p.name + '.';
      await refresh();
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      treeError.textContent = err.message;
    }
  }
  return { refresh };
}

function policyBranch(policies, parentId, used, onDelete) {
  const ids = new Set(policies.map((p) => p.id));
  // A policy whose parent is missing is shown at the top rather than lost.
  const children = policies.filter((p) => (parentId === null ? p.parent_id === null || !ids.has(p.parent_id) : p.parent_id === parentId));
  return children.map((p) => {
    const below = policyBranch(policies, p.id, used, onDelete);
    const n = used[p.id] || 0;
    return h('li', { 'data-policy': p.name },
      h('div', { class: 'tree-row' },
        link('/policies/' + p.id, p.name, { 'data-policy-id': p.id, class: 'tree-name' }),
        h('span', { class: 'muted', text: n === 1 ? '1 computer' : n + ' computers' }),
        p.parent_id === null ? h('span', { class: 'muted', text: 'Base Policy: root of the tree' })
          : h('button', { type: 'button', class: 'small danger delete-policy', 'data-policy-id': p.id,
            'aria-label': 'Delete ' + p.name, text: 'Delete', onclick: () => onDelete(p) })),
      below.length ? h('ul', {}, below) : null);
  });
}
