/* Orthanc NAS: helpers shared by the plugin's pages (loaded first, no dependencies). */
'use strict';

const DEFAULT_MESSAGES = {
  401: 'Not signed in, or wrong credentials.',
  403: 'Not allowed: your session may have expired, sign in again.',
  404: 'Not found.',
  429: 'Too many attempts: wait a few minutes and try again.',
  503: 'The service is busy: try again in a moment.'
};

/** Calls the plugin's JSON API; resolves to the parsed answer, or throws an Error with
 *  .status (0 when the server cannot be reached) and .data (the parsed error body or null). */
async function api(method, path, body) {
  const options = {
    method: method,
    credentials: 'same-origin',
    cache: 'no-store',
    // Our pages are served with "Referrer-Policy: no-referrer"; ask for the same-origin
    // policy on API calls so the browser keeps sending Origin/Referer, which the server's
    // CSRF check needs on state-changing requests.
    referrerPolicy: 'same-origin',
    headers: { Accept: 'application/json' }
  };
  if (body !== undefined) {
    options.headers['Content-Type'] = 'application/json';
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch (cause) {
    const err = new Error('Cannot reach the server: check your connection and try again.');
    err.status = 0;
    err.data = null;
    throw err;
  }
  let data = null;
  const text = await response.text();
  if (text) {
    try { data = JSON.parse(text); } catch (ignored) { data = null; }
  }
  if (!response.ok) {
    const message = data && typeof data.error === 'string' ? data.error
      : DEFAULT_MESSAGES[response.status] || 'The server answered an error (HTTP ' + response.status + ').';
    const err = new Error(message);
    err.status = response.status;
    err.data = data;
    throw err;
  }
  return data === null ? {} : data;
}

const UI = {
  /** Element by id. */
  byId: function (id) { return document.getElementById(id); },

  /** A new element; text is set with textContent, attrs with setAttribute. */
  el: function (tag, attrs, text) {
    const node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      if (name === 'className') node.className = attrs[name];
      else node.setAttribute(name, attrs[name]);
    });
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  },

  /** A table cell holding text. */
  cell: function (text, className) {
    return UI.el('td', className ? { className: className } : {}, text);
  },

  /** UNIX seconds as a local date-time ('—' when absent). */
  time: function (ts) {
    if (ts === null || ts === undefined || ts === 0) return '—';
    return new Date(ts * 1000).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
  },

  /** UNIX seconds, short: "14:03" today, "29 Nov 14:03" this year, else with the year. */
  shortTime: function (ts) {
    if (!ts) return '—';
    const d = new Date(ts * 1000), now = new Date();
    const hm = d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
    if (d.toDateString() === now.toDateString()) return hm;
    const opts = { day: 'numeric', month: 'short' };
    if (d.getFullYear() !== now.getFullYear()) opts.year = 'numeric';
    return d.toLocaleDateString(undefined, opts) + ' ' + hm;
  },

  /** A DICOM person name as people write it: "Smith^John^Q" -> "Smith, John Q". */
  personName: function (pn) {
    if (!pn) return '';
    const parts = String(pn).split('=')[0].split('^').map(function (p) { return p.trim(); });
    const given = [parts[3], parts[1], parts[2], parts[4]].filter(Boolean).join(' ');
    return parts[0] && given ? parts[0] + ', ' + given : parts[0] || given;
  },

  /** An identifier in words: "instances_accessed" -> "Instances accessed". */
  words: function (name) {
    const text = String(name || '').replace(/_/g, ' ').replace(/\b2fa\b/g, 'second factor');
    return text.charAt(0).toUpperCase() + text.slice(1);
  },

  /** Shows text in a message element, or hides it when text is empty. */
  say: function (node, text) {
    if (typeof node === 'string') node = UI.byId(node);
    if (!node) return;
    node.textContent = text || '';
    node.hidden = !text;
  },

  /** Shows an error in an alert element and brings it into view. */
  fail: function (node, err) {
    if (typeof node === 'string') node = UI.byId(node);
    UI.say(node, err instanceof Error ? err.message : String(err));
    if (node && node.scrollIntoView) node.scrollIntoView({ block: 'nearest' });
  },

  /** Shows (or, with no err, clears) an error under one form field: its .field-error
   *  element, aria-invalid on the input, focus there. */
  fieldError: function (input, err) {
    if (typeof input === 'string') input = UI.byId(input);
    const box = input && input.closest('.field');
    const out = box && box.querySelector('.field-error');
    if (!out) return;
    UI.say(out, err ? (err instanceof Error ? err.message : String(err)) : '');
    if (err) { input.setAttribute('aria-invalid', 'true'); input.focus(); } else input.removeAttribute('aria-invalid');
  },

  /** Runs fn with the button disabled (no double submit). */
  busy: async function (button, fn) {
    if (button) button.disabled = true;
    try { return await fn(); } finally { if (button) button.disabled = false; }
  },

  /** Copies text to the clipboard when the browser allows it (secure contexts only). */
  copy: function (button, getText) {
    if (!button) return;
    if (!navigator.clipboard || !window.isSecureContext) { button.hidden = true; return; }
    button.addEventListener('click', function () {
      navigator.clipboard.writeText(getText()).then(function () {
        const label = button.textContent;
        button.textContent = 'Copied';
        setTimeout(function () { button.textContent = label; }, 1500);
      }, function () { /* the user can still select the text */ });
    });
  },

  /** Bytes as B, KiB, MiB... ('—' when unknown). */
  bytes: function (n) {
    if (n === null || n === undefined || isNaN(Number(n))) return '—';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
    let i = 0;
    for (n = Number(n); n >= 1024 && i < units.length - 1; i++) n /= 1024;
    return (i ? n.toFixed(n < 10 ? 1 : 0) : String(Math.round(n))) + ' ' + units[i];
  },

  /** Sends the browser to the login page (session gone). */
  toLogin: function () { location.replace('/ui/login'); },

  /** Fills the shared header from GET /api/profile's answer and wires the logout button. */
  header: function (profile) {
    const user = profile.user;
    UI.byId('who-name').textContent = user.display_name || user.username;
    UI.byId('who-role').textContent = user.role;
    ['nav-admin', 'nav-nas'].forEach(function (id) {
      const link = UI.byId(id);
      if (link) link.hidden = user.role !== 'admin';
    });
    document.querySelectorAll('.topbar nav a').forEach(function (link) {
      if (link.getAttribute('href') === location.pathname) link.setAttribute('aria-current', 'page');
    });
    const logout = UI.byId('logout');
    if (logout && !logout.dataset.wired) {
      logout.dataset.wired = '1';
      logout.addEventListener('click', function () {
        UI.busy(logout, async function () {
          try { await api('POST', '/api/logout', {}); } catch (ignored) { /* leave anyway */ }
          location.assign('/ui/login');
        });
      });
    }
  }
};
