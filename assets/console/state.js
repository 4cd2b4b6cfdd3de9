// What the console keeps between pages: the session, the page shown, the poller's marks.

export const state = {
  session: null, // GET /api/v1/session
  view: null, // { refresh } of the page shown
  gen: 0, // bumped at each page render; async work of an older page is dropped
  flash: null, // a notice to show on the next page rendered
  leaving: false, // on the way to /login: render nothing more
  refreshing: false,
  background: 0, // requests of the poller in flight: sent marked, so they are not "use"
  lastActivity: Date.now(),
};
