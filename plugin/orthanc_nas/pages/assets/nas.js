/* Orthanc NAS: NAS mirror page (status, settings, queue, share browser). */
'use strict';
(function () {
  const $ = UI.byId;
  const KEYS = ['enabled', 'type', 'host', 'port', 'share', 'username', 'path', 'layout', 'encrypt', 'require_signing',
    'timeout_seconds', 'verify', 'max_attempts', 'retry_base_seconds', 'retry_max_seconds', 'on_delete'];
  const STATE_KIND = { done: 'good', failed: 'bad', pending: 'warn' };
  const PAGE = 50;
  let config = null, queueOffset = 0, statusBusy = false, browseSeq = 0;

  async function start() {
    let profile;
    try { profile = await api('GET', '/api/profile'); } catch (err) {
      if (err.status === 401 || err.status === 403) UI.toLogin(); else UI.fail('nas-status-error', err);
      return;
    }
    UI.header(profile);
    if (profile.user.role !== 'admin') { location.replace('/ui/account'); return; }
    loadStatus(); loadConfig(); loadQueue(); browse('');
    setInterval(function () { if (!document.hidden) loadStatus(); }, 5000);
    document.addEventListener('visibilitychange', function () { if (!document.hidden) loadStatus(); });
  }

  // ---- helpers ----------------------------------------------------------------------------
  const bytes = UI.bytes;
  /** Seconds as "42 s", "5 min", "3 h 12 min", "2 d 4 h". */
  function age(s) {
    const m = Math.floor(s / 60), h = Math.floor(s / 3600), d = Math.floor(s / 86400);
    return s < 60 ? Math.max(0, Math.round(s)) + ' s' : s < 3600 ? m + ' min'
      : s < 86400 ? h + ' h ' + (m % 60) + ' min' : d + ' d ' + (h % 24) + ' h';
  }
  function set(id, text) { $(id).textContent = text === null || text === undefined || text === '' ? '—' : String(text); }
  function badge(text, kind) { return UI.el('span', { className: 'badge ' + (kind || '') }, text); }
  function clear(prefix) { UI.say(prefix + '-error', ''); UI.say(prefix + '-ok', ''); }
  /** Replaces a table's rows; each cell is a td (used as is), another node (wrapped in a td) or text. */
  function fill(table, rows, empty) {
    const body = $(table).tBodies[0];
    body.textContent = '';
    if (!rows.length) rows = [[UI.el('td', { colspan: String($(table).tHead.rows[0].cells.length), className: 'empty' }, empty)]];
    return rows.map(function (cells) {
      const row = body.insertRow();
      cells.forEach(function (c) {
        if (!(c instanceof Node)) row.appendChild(UI.cell(c));
        else if (c.tagName === 'TD') row.appendChild(c);
        else row.appendChild(UI.el('td')).appendChild(c);
      });
      return row;
    });
  }
  /** Runs fn with the button disabled; an error goes to the alert element (id) or to the function onError. */
  function act(button, onError, fn) {
    return UI.busy(button, async function () {
      try { await fn(); } catch (err) { if (typeof onError === 'string') UI.fail(onError, err); else onError(err); }
    });
  }
  function svg(tag, attrs) {
    const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
    Object.keys(attrs).forEach(function (name) { node.setAttribute(name, attrs[name]); });
    return node;
  }

  // ---- status -----------------------------------------------------------------------------
  function spaceBar(total, free) {
    const holder = $('status-space-bar');
    holder.textContent = '';
    if (!total || typeof free !== 'number') return;
    const used = Math.min(1, Math.max(0, (total - free) / total));
    const bar = holder.appendChild(svg('svg', { width: '160', height: '10', viewBox: '0 0 100 10',
      preserveAspectRatio: 'none', role: 'img', 'aria-label': Math.round(used * 100) + '% used' }));
    bar.appendChild(svg('rect', { width: '100', height: '10', rx: '2', fill: 'currentColor', 'fill-opacity': '0.2' }));
    bar.appendChild(svg('rect', { width: String(used * 100), height: '10', rx: '2', fill: used > 0.9 ? '#b3261e' : '#1d64d8' }));
  }
  async function loadStatus() {
    if (statusBusy) return;
    statusBusy = true;
    try {
      const s = await api('GET', '/api/nas/status');
      UI.say('nas-status-error', '');
      const c = $('nas-connected');
      c.textContent = s.connected ? 'connected' : s.enabled ? 'not connected' : 'not connected (mirroring off)';
      c.className = 'badge ' + (s.connected ? 'good' : 'bad');
      c.dataset.connected = String(Boolean(s.connected));
      const oldest = s.oldest_pending_age_seconds;
      const text = { 'status-enabled': s.enabled ? 'on' : 'off (nothing is copied)', 'status-type': s.type,
        'status-last-error': s.last_error ? s.last_error + (s.last_error_at ? ' (' + UI.time(s.last_error_at) + ')' : '') : '',
        'nas-pending': s.pending, 'nas-failed': s.failed, 'nas-mirrored': s.mirrored,
        'nas-verified': s.verified, 'nas-unverified': s.unverified,
        'status-oldest-unverified': typeof s.oldest_unverified_age_seconds === 'number'
          ? '(oldest copied ' + age(s.oldest_unverified_age_seconds) + ' ago)' : '',
        'status-mirrored-bytes': '(' + bytes(s.mirrored_bytes) + ')', 'status-oldest': typeof oldest === 'number' ? age(oldest) : '',
        'status-throughput': bytes(s.throughput_bytes_per_second || 0) + '/s', 'status-worker': UI.time(s.worker_updated_at),
        'status-space': s.total_bytes ? bytes(s.free_bytes) + ' free of ' + bytes(s.total_bytes) : '' };
      Object.keys(text).forEach(function (id) { set(id, text[id]); });
      spaceBar(s.total_bytes, s.free_bytes);
    } catch (err) {
      if (err.status === 401) UI.toLogin(); else UI.say('nas-status-error', err.message);  // polled: no scrolling
    } finally { statusBusy = false; }
  }
  $('nas-backfill').addEventListener('click', function () {
    clear('nas-status');
    if (!window.confirm('Queue every instance Orthanc holds that is not yet on the NAS? The copies run in the ' +
        'background and can take long on a large archive.')) return;
    act($('nas-backfill'), 'nas-status-error', async function () {
      await api('POST', '/api/nas/backfill', {});
      UI.say('nas-status-ok', 'Started: instances missing on the NAS are being queued (see Pending).');
    }).then(loadStatus);
  });

  // ---- settings ---------------------------------------------------------------------------
  function showConfig(answer) {
    config = answer.config;
    KEYS.forEach(function (k) {
      const input = $('nas-' + k);
      if (input.type === 'checkbox') input.checked = Boolean(config[k]);
      else input.value = config[k] === null || config[k] === undefined ? '' : String(config[k]);
    });
    $('nas-password').value = '';
    $('nas-password').placeholder = config.password_set ? 'A password is set (empty = keep it)' : 'No password set';
    document.querySelectorAll('#nas-form [data-source]').forEach(function (node) {
      const source = (answer.sources || {})[node.dataset.source];
      node.textContent = source === 'runtime' ? 'Source: saved on this page' : source ? 'Source: ' + source : '';
    });
    const u = answer.updated;
    $('nas-updated').textContent = u && u.updated_at ? 'Last changed on this page ' + UI.time(u.updated_at) + ' by ' +
      (u.updated_by || '?') + '.' : 'Nothing saved on this page: every setting comes from orthanc.json.';
  }
  async function loadConfig() {
    try { showConfig(await api('GET', '/api/nas/config')); } catch (err) { UI.fail('nas-error', err); }
  }
  /** The form's values that differ from the loaded settings (the password only when typed). */
  function changes() {
    const out = {};
    KEYS.forEach(function (k) {
      const input = $('nas-' + k);
      let value = input.type === 'checkbox' ? input.checked : input.value;
      if (input.type === 'number' && /^[0-9]+$/.test(value.trim())) value = parseInt(value, 10);
      if (value !== config[k]) out[k] = value;  // a bad number goes as text: the server names the field
    });
    if ($('nas-password').value) out.password = $('nas-password').value;
    return out;
  }
  function clearForm() {
    clear('nas');
    document.querySelectorAll('#nas-form .alert').forEach(function (n) { n.classList.remove('alert'); });
    document.querySelectorAll('#nas-form [aria-invalid]').forEach(function (n) { n.removeAttribute('aria-invalid'); });
  }
  /** Shows an API error and highlights the field it names. */
  function formError(err) {
    UI.say('nas-ok', '');
    UI.fail('nas-error', err);
    const key = err.data && err.data.field;
    const input = KEYS.concat('password').indexOf(key) >= 0 ? $('nas-' + key) : null;
    if (!input) return;
    input.setAttribute('aria-invalid', 'true');
    (input.closest('.field') || input.closest('label') || input).classList.add('alert');
    input.focus();
  }
  function showSteps(answer) {
    const list = $('nas-test-result');
    (answer.steps || [{ step: 'start', ok: false, error: answer.error || 'no answer' }]).forEach(function (s) {
      const item = list.appendChild(UI.el('li', { 'data-step': s.step, 'data-ok': String(Boolean(s.ok)) }));
      item.appendChild(badge(s.ok ? '✓' : '✗', s.ok ? 'good' : 'bad'));
      const extra = s.result && s.result.total ? ' (' + bytes(s.result.free) + ' free of ' + bytes(s.result.total) + ')' : '';
      item.appendChild(document.createTextNode(' ' + s.step + (s.ok ? extra : ': ' + (s.error || 'failed'))));
    });
    list.hidden = false;
    UI.say('nas-ok', answer.ok ? 'Test passed: these settings work (they are not saved yet).' : '');
    if (!answer.ok) UI.fail('nas-error', 'Test failed' + (answer.failed_step ? ' at step "' + answer.failed_step + '"' : '') + '.');
  }
  $('nas-test').addEventListener('click', function () {
    if (!config) { loadConfig(); return; }
    clearForm();
    $('nas-test-result').textContent = '';
    $('nas-test-result').hidden = true;
    const body = changes();
    UI.say('nas-ok', 'Testing… this can take up to a minute.');
    act($('nas-test'), formError, async function () { showSteps(await api('POST', '/api/nas/test', body)); });
  });
  function saveConfig(button, body, done) {
    act(button, formError, async function () {
      showConfig(await api('POST', '/api/nas/config', body));
      UI.say('nas-ok', done);
      loadStatus();
    });
  }
  $('nas-form').addEventListener('submit', function (event) {
    event.preventDefault();
    if (!config) { loadConfig(); return; }
    clearForm();
    const body = changes();
    if (!Object.keys(body).length) { UI.say('nas-ok', 'Nothing changed.'); return; }
    if (config.enabled && body.enabled === false &&
        !window.confirm('Stop mirroring? New instances will no longer be copied to the NAS.')) return;
    saveConfig($('nas-save'), body, 'Settings saved.');
  });
  $('nas-reset').addEventListener('click', function () {
    clearForm();
    if (!window.confirm('Forget every NAS setting saved on this page (the password too) and go back to orthanc.json?')) return;
    saveConfig($('nas-reset'), { reset: true }, 'Back to the settings of orthanc.json.');
  });

  // ---- queue ------------------------------------------------------------------------------
  function queueCells(it) {
    const id = UI.el('td', { className: 'mono small' }, it.instance_id);
    if (it.remote_path) id.appendChild(UI.el('div', { className: 'muted' }, it.remote_path));
    const next = it.next_attempt_at * 1000 > Date.now() ? UI.time(it.next_attempt_at) : 'now';
    const retry = it.state !== 'failed' ? '' : UI.el('button', { type: 'button', className: 'sm secondary',
      'data-retry': it.instance_id, 'aria-label': 'Retry ' + it.instance_id }, 'Retry');
    return [id, it.op + (it.source ? ' (' + it.source + ')' : ''), badge(it.state, STATE_KIND[it.state]), bytes(it.size),
      it.attempts, UI.time(it.enqueued_at), it.state === 'done' ? UI.time(it.done_at) : it.state === 'pending' ? next : '—',
      UI.el('td', { className: 'details small' }, it.last_error || '—'), retry];
  }
  async function loadQueue() {
    const state = $('queue-state').value;
    const query = new URLSearchParams({ limit: String(PAGE), offset: String(queueOffset) });
    if (state) query.set('state', state);
    let answer;
    try { answer = await api('GET', '/api/nas/queue?' + query.toString()); } catch (err) { UI.fail('queue-error', err); return; }
    UI.say('queue-error', '');
    const items = answer.items || [];
    if (!items.length && queueOffset > 0) { queueOffset = 0; loadQueue(); return; }  // the page emptied (retried)
    const rows = fill('queue-table', items.map(queueCells), 'No items.');
    items.forEach(function (it, i) { rows[i].dataset.instanceId = it.instance_id; });
    const total = { failed: answer.failed, pending: answer.pending, done: answer.mirrored }[state];
    const known = typeof total === 'number';
    $('queue-info').textContent = items.length
      ? (queueOffset + 1) + '–' + (queueOffset + items.length) + (known ? ' of ' + total : '') : '';
    $('queue-prev').disabled = queueOffset === 0;
    $('queue-next').disabled = items.length < PAGE || (known && queueOffset + items.length >= total);
  }
  function retry(button, body) {
    clear('queue');
    act(button, 'queue-error', async function () {
      const answer = await api('POST', '/api/nas/retry', body);
      UI.say('queue-ok', (answer.requeued || 0) + ' item(s) queued again.');
    }).then(function () { loadQueue(); loadStatus(); });
  }
  $('queue-table').addEventListener('click', function (event) {
    const button = event.target.closest('[data-retry]');
    if (button) retry(button, { ids: [button.dataset.retry] });
  });
  $('queue-retry-all').addEventListener('click', function () { retry($('queue-retry-all'), {}); });
  $('queue-state').addEventListener('change', function () { queueOffset = 0; loadQueue(); });
  $('queue-refresh').addEventListener('click', function () { UI.busy($('queue-refresh'), loadQueue); });
  $('queue-prev').addEventListener('click', function () { queueOffset = Math.max(0, queueOffset - PAGE); loadQueue(); });
  $('queue-next').addEventListener('click', function () { queueOffset += PAGE; loadQueue(); });

  // ---- share browser ----------------------------------------------------------------------
  function safeName(name) { return typeof name === 'string' && name !== '' && name !== '.' && name !== '..' && !/[/\\]/.test(name); }
  function folderButton(label, path) { return UI.el('button', { type: 'button', className: 'link', 'data-path': path }, label); }
  function showCrumbs(path) {
    const nav = $('browse-path');
    const parts = path ? path.split('/') : [];
    nav.textContent = '';
    nav.dataset.path = path;
    ['Share root'].concat(parts).forEach(function (label, i) {
      if (i) nav.appendChild(UI.el('span', { className: 'muted', 'aria-hidden': 'true' }, '/'));
      nav.appendChild(i === parts.length ? UI.el('strong', { 'aria-current': 'location' }, label)
        : folderButton(label, parts.slice(0, i).join('/')));
    });
  }
  async function browse(path) {
    if (path && !path.split('/').every(safeName)) return;  // never send "..", "." or empty parts
    const seq = ++browseSeq;
    showCrumbs(path);
    UI.say('browse-error', '');
    fill('browse-table', [], 'Loading…');
    let answer;
    try { answer = await api('POST', '/api/nas/browse', { path: path }); } catch (err) {
      if (seq !== browseSeq) return;
      if (err.status === 409) { fill('browse-table', [], 'The NAS is not configured: set its folder or SMB share above.'); return; }
      fill('browse-table', [], 'Cannot list this folder.'); UI.fail('browse-error', err);
      return;
    }
    if (seq !== browseSeq) return;  // a later click won
    const entries = (answer.entries || []).filter(function (e) { return e.name !== '.' && e.name !== '..'; });
    entries.sort(function (a, b) { return (b.is_dir - a.is_dir) || String(a.name).localeCompare(String(b.name)); });
    fill('browse-table', entries.map(function (e) {
      const name = e.is_dir && safeName(e.name) ? folderButton(e.name + '/', path ? path + '/' + e.name : e.name)
        : e.name + (e.is_dir ? '/' : '');
      return [name, e.is_dir ? '' : bytes(e.size), UI.time(e.mtime)];
    }), 'Empty folder.');
  }
  function descend(event) {
    const target = event.target.closest('button[data-path]');
    if (target) browse(target.dataset.path);
  }
  $('browse-path').addEventListener('click', descend);
  $('browse-table').addEventListener('click', descend);
  $('browse-refresh').addEventListener('click', function () { browse($('browse-path').dataset.path || ''); });

  start();
}());
