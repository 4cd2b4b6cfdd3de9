// Shared by the login page (login.js) and the console (console/pages/account.js), as a module.

// `next` comes from the address bar, so anyone can craft it: only a path on this site is
// followed. "//host" and "/\host" would leave the site, and the URL parser drops tabs and
// newlines, so those are refused too; the final check compares origins after parsing.
export function safeNext(raw) {
  if (typeof raw !== 'string' || !raw.startsWith('/') || raw.startsWith('//')) return '/';
  if (/[\\\u0000-\u001f\u007f]/.test(raw)) return '/';
  let url;
  try {
    url = new URL(raw, location.origin);
  } catch (e) {
    return '/';
  }
  if (url.origin !== location.origin) return '/';
  if (url.pathname === '/login' || url.pathname.startsWith('/api/')) return '/';
  return url.pathname + url.search + url.hash;
}
