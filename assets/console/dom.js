// DOM helpers. All text is put in the page with createElement/textContent (see h()):
// hostnames, alert messages and event fields come from agents and must never be parsed as
// HTML. No inline handlers or style attributes: the server sends a Content-Security-Policy
// of 'self'.

// h('a', {href: '/x', class: 'c', 'data-id': 3, text: 'label'}, child, ...): never parses HTML.
export function h(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = String(value);
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (value === true) node.setAttribute(key, '');
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function option(value, label, selected, extra) {
  return h('option', Object.assign({ value: value, text: label, selected: Boolean(selected) }, extra || {}));
}

// A header is its text, or a node (a select-all checkbox).
export function table(id, headers, emptyText) {
  const tbody = h('tbody');
  tbody.dataset.cols = String(headers.length);
  tbody.dataset.empty = emptyText;
  const th = (t) => (t instanceof Node ? h('th', { scope: 'col' }, t) : h('th', { scope: 'col', text: t }));
  const node = h('table', { id: id, class: 'grid' }, h('thead', {}, h('tr', {}, headers.map(th))), tbody);
  return { node, tbody };
}

// Replaces a tbody's rows by `items`, keeping the existing <tr> of an item whose data did not
// change: a button the user is about to click is not swapped under the pointer every 5 s.
export function syncRows(tbody, items, key, build) {
  const old = new Map();
  for (const tr of tbody.children) if (tr.dataset.key) old.set(tr.dataset.key, tr);
  const seen = new Set(); // two items with one key (history lines) each get their own row
  const rows = items.map((item) => {
    const k = String(key(item));
    const sig = JSON.stringify(item);
    const prev = old.get(k);
    const reuse = prev && prev.dataset.sig === sig && !seen.has(k);
    seen.add(k);
    if (reuse) return prev;
    const tr = build(item);
    tr.dataset.key = k;
    tr.dataset.sig = sig;
    return tr;
  });
  if (rows.length === 0) {
    rows.push(h('tr', { class: 'empty' },
      h('td', { colspan: tbody.dataset.cols, text: tbody.dataset.empty })));
  }
  const same = rows.length === tbody.children.length && rows.every((r, i) => r === tbody.children[i]);
  if (!same) tbody.replaceChildren(...rows);
}

export function link(href, text, extra) {
  return h('a', Object.assign({ href: href, text: text }, extra || {}));
}

export function computerLink(id, hostname) {
  if (id === null || id === undefined) return document.createTextNode(hostname || '—');
  return link('/computers/' + encodeURIComponent(id), hostname || '#' + id);
}

export function badge(kind, value, text) {
  return h('span', { class: 'badge ' + kind + '-' + String(value).replace(/[^a-z0-9-]/gi, ''), text: text || value });
}

export function statusBadge(status) {
  return badge('status', status, status);
}

export function yesNo(value) {
  if (value === true) return 'yes';
  if (value === false) return 'no';
  return '—';
}

export function dash(value) {
  return value === null || value === undefined || value === '' ? '—' : String(value);
}

export function labelled(text, input, hint) {
  if (!input.id) input.id = 'f' + Math.random().toString(36).slice(2);
  return h('div', { class: 'field' }, h('label', { for: input.id, text: text }), input,
    hint ? h('small', { class: 'hint', text: hint }) : null);
}

export function pageTitle(main, title, ...extra) {
  document.title = title + ' — Picket';
  const h1 = h('h1', { text: title });
  main.append(extra.length ? h('div', { class: 'page-head' }, h1, ...extra) : h1);
  return h1;
}
