/* Orthanc NAS: administration page (users, two-factor settings, audit log). */
'use strict';
(function () {
  const $ = UI.byId;
  const ROLES = ['admin', 'user', 'viewer'];
  const FLAGS = ['enabled', 'required_for_admin', 'required_for_users', 'required_for_viewers'];
  const NUMBERS = ['backup_codes_count', 'max_failed_attempts', 'lockout_duration_minutes'];
  const METHODS = ['totp', 'backup_codes'];
  const PAGE = 50;
  let users = [];
  let config = null;
  let auditOffset = 0;
  let tokensOf = null;  // the user whose tokens are shown

  async function start() {
    let profile;
    try {
      profile = await api('GET', '/api/profile');
    } catch (err) {
      if (err.status === 401 || err.status === 403) { UI.toLogin(); return; }
      UI.fail('admin-error', err);
      return;
    }
    UI.header(profile);
    if (profile.user.role !== 'admin') { location.replace('/ui/account'); return; }
    loadUsers();
    loadConfig();
    loadAudit();
    loadForwarding();
  }

  async function loadForwarding() {
    let health;
    try { health = await api('GET', '/api/health'); } catch (err) { health = err.data || {}; }
    const status = (health.checks || {}).audit_forwarding;
    if (!status || !status.enabled) return;
    const out = $('audit-forwarding');
    out.hidden = false;
    out.className = status.failing ? 'alert' : 'muted';
    out.textContent = status.failing
      ? 'Forwarding to the audit repository is failing (' + (status.last_error || 'unknown error') + '); ' + status.pending + ' rows wait and will be sent.'
      : 'Forwarded to the audit repository: ' + status.pending + ' rows waiting.';
  }

  // ---- users ------------------------------------------------------------------------------

  function badge(text, kind) { return UI.el('span', { className: 'badge ' + (kind || '') }, text); }
  function addBadge(cell, text, kind) { cell.appendChild(badge(text, kind)); cell.appendChild(document.createTextNode(' ')); }

  function button(action, label, name, className) {
    return UI.el('button', { type: 'button', 'data-action': action, className: 'sm ' + (className || 'secondary'),
      'aria-label': label + ' ' + name }, label);
  }

  async function loadUsers() {
    try {
      users = (await api('GET', '/api/admin/users')).users || [];
    } catch (err) { UI.fail('admin-error', err); return; }
    const body = $('users-table').tBodies[0];
    body.textContent = '';
    users.forEach(function (u) {
      const row = body.insertRow();
      row.dataset.username = u.username;
      row.dataset.userId = String(u.id);

      const who = UI.el('td');
      who.appendChild(UI.el('strong', {}, u.username));
      if (u.display_name) who.appendChild(UI.el('div', {}, u.display_name));
      if (u.email) who.appendChild(UI.el('div', { className: 'muted small' }, u.email));
      row.appendChild(who);

      const roleCell = UI.el('td');
      const select = UI.el('select', { 'data-action': 'role', className: 'sm', 'aria-label': 'Role of ' + u.username });
      ROLES.forEach(function (r) { select.appendChild(UI.el('option', { value: r }, r)); });
      select.value = u.role;
      roleCell.appendChild(select);
      row.appendChild(roleCell);

      const status = UI.el('td');
      addBadge(status, u.enabled ? 'enabled' : 'disabled', u.enabled ? 'good' : 'bad');
      if (u.locked_out) addBadge(status, 'locked until unlocked', 'bad');
      else if (u.locked_until) addBadge(status, 'locked until ' + UI.time(u.locked_until), 'bad');
      if (u.locked_sources) {
        addBadge(status, 'locked for ' + u.locked_sources + (u.locked_sources === 1 ? ' address' : ' addresses') +
          ' until ' + UI.time(u.source_locked_until), 'warn');
      }
      if (u.must_change_pin) addBadge(status, 'must change PIN', 'warn');
      addBadge(status, u.totp_enabled ? '2FA on' : '2FA off', u.totp_enabled ? 'good' : '');
      row.appendChild(status);

      const last = UI.cell(u.last_login_at ? UI.time(u.last_login_at) : 'Never');
      last.appendChild(UI.el('div', { className: 'muted small' }, 'created ' + UI.time(u.created_at)));
      row.appendChild(last);

      const actions = UI.el('div', { className: 'actions' });
      actions.appendChild(button('toggle', u.enabled ? 'Disable' : 'Enable', u.username));
      if (u.locked) actions.appendChild(button('unlock', 'Unlock', u.username));
      actions.appendChild(button('reset-2fa', 'Reset 2FA', u.username));
      actions.appendChild(button('reset-pin', 'Reset PIN', u.username));
      actions.appendChild(button('tokens', 'API tokens', u.username));
      actions.appendChild(button('delete', 'Delete', u.username, 'danger'));
      const cell = UI.el('td');
      cell.appendChild(actions);
      row.appendChild(cell);
    });
  }

  /** What an action sends (null: cancelled by the admin). */
  function request(action, u, control) {
    switch (action) {
      case 'role': return { method: 'PUT', body: { role: control.value }, done: u.username + ' is now ' + control.value + '.' };
      case 'toggle': return { method: 'PUT', body: { enabled: !u.enabled }, done: u.username + (u.enabled ? ' disabled.' : ' enabled.') };
      case 'unlock': return { method: 'PUT', body: { unlock: true }, done: u.username + ' unlocked.' };
      case 'reset-2fa':
        if (!window.confirm('Reset two-factor authentication of ' + u.username + '? Their authenticator ' +
            'and backup codes stop working and their sessions end.')) return null;
        return { method: 'PUT', body: { reset_2fa: true }, done: 'Two-factor authentication of ' + u.username + ' reset.' };
      case 'reset-pin': {
        const pin = window.prompt('New temporary PIN for ' + u.username + ' (they must change it at next sign-in):');
        if (!pin) return null;
        return { method: 'PUT', body: { pin: pin }, done: 'PIN of ' + u.username + ' reset: they must change it at next sign-in.' };
      }
      case 'delete':
        if (!window.confirm('Delete user ' + u.username + '? This cannot be undone.')) return null;
        return { method: 'DELETE', body: undefined, done: u.username + ' deleted.' };
      default: return null;
    }
  }

  function act(event) {
    const control = event.target.closest('[data-action]');
    if (!control || (event.type === 'click' && control.tagName === 'SELECT')) return;
    const row = control.closest('tr');
    const user = users.find(function (u) { return String(u.id) === row.dataset.userId; });
    if (!user) return;
    UI.say('admin-error', '');
    UI.say('admin-ok', '');
    if (control.dataset.action === 'tokens') { showTokens(user); return; }
    const req = request(control.dataset.action, user, control);
    if (!req) return;
    UI.busy(control, async function () {
      try {
        await api(req.method, '/api/admin/users/' + encodeURIComponent(user.id), req.body);
        UI.say('admin-ok', req.done);
      } catch (err) { UI.fail('admin-error', err); }
      await loadUsers();
      if (tokensOf) {  // disabling, a reset or a deletion revoked them
        const id = tokensOf.id;
        tokensOf = users.find(function (u) { return u.id === id; }) || null;
        if (tokensOf) loadTokens(); else $('user-tokens').hidden = true;
      }
    });
  }

  $('users-table').addEventListener('click', act);

  // ---- a user's API tokens ------------------------------------------------------------------

  function showTokens(user) {
    tokensOf = user;
    $('user-tokens-name').textContent = user.username;
    $('user-tokens').hidden = false;
    UI.say('user-tokens-ok', '');
    loadTokens().then(function () { $('user-tokens').scrollIntoView({ block: 'start' }); });
  }

  async function loadTokens() {
    UI.say('user-tokens-error', '');
    let answer;
    try {
      answer = await api('GET', '/api/admin/users/' + encodeURIComponent(tokensOf.id) + '/tokens');
    } catch (err) { UI.fail('user-tokens-error', err); return; }
    const body = $('user-tokens-table').tBodies[0];
    body.textContent = '';
    const tokens = answer.tokens || [];
    if (!tokens.length) body.insertRow().appendChild(UI.el('td', { colspan: '5', className: 'empty' }, 'No tokens.'));
    tokens.forEach(function (t) {
      const row = body.insertRow();
      row.dataset.tokenId = String(t.id);
      row.appendChild(UI.cell(t.name));
      row.appendChild(UI.cell(UI.time(t.created_at)));
      const expires = UI.cell(UI.time(t.expires_at));
      if (t.expired) { expires.appendChild(document.createTextNode(' ')); expires.appendChild(badge('expired', 'bad')); }
      row.appendChild(expires);
      row.appendChild(UI.cell(t.last_used_at ? UI.time(t.last_used_at) : 'Never'));
      const cell = UI.el('td');
      cell.appendChild(UI.el('button', { type: 'button', className: 'danger sm token-revoke', 'data-id': String(t.id),
        'aria-label': 'Revoke token ' + t.name + ' of ' + tokensOf.username }, 'Revoke'));
      row.appendChild(cell);
    });
  }

  $('user-tokens-table').addEventListener('click', function (event) {
    const control = event.target.closest('button.token-revoke');
    if (!control || !tokensOf) return;
    const name = control.closest('tr').cells[0].textContent;
    if (!window.confirm('Revoke the token "' + name + '" of ' + tokensOf.username + '? Scripts using it stop working.')) return;
    UI.busy(control, async function () {
      try {
        await api('DELETE', '/api/admin/users/' + encodeURIComponent(tokensOf.id) + '/tokens/' +
          encodeURIComponent(control.dataset.id));
        UI.say('user-tokens-ok', 'Token "' + name + '" of ' + tokensOf.username + ' revoked.');
      } catch (err) { UI.fail('user-tokens-error', err); }
      await loadTokens();
    });
  });
  $('users-table').addEventListener('change', act);

  $('user-form').addEventListener('submit', function (event) {
    event.preventDefault();
    UI.say('admin-error', '');
    UI.say('admin-ok', '');
    const body = { username: $('new-username').value.trim(), role: $('new-role').value, pin: $('new-user-pin').value,
      display_name: $('new-display-name').value.trim(), email: $('new-email').value.trim() };
    if (!body.username || !body.pin) { UI.fail('admin-error', 'Enter a username and a temporary PIN.'); return; }
    UI.busy($('user-create'), async function () {
      try {
        await api('POST', '/api/admin/users', body);
        $('user-form').reset();
        UI.say('admin-ok', 'User ' + body.username + ' created. Give them the temporary PIN: ' +
          'they must change it at first sign-in.');
        await loadUsers();
      } catch (err) { UI.fail('admin-error', err); }
    });
  });

  // ---- two-factor settings ----------------------------------------------------------------

  function showConfig(answer) {
    config = answer.config;
    FLAGS.forEach(function (k) { $('tf-' + k).checked = Boolean(config[k]); });
    METHODS.forEach(function (m) { $('tf-method-' + m).checked = (config.allowed_methods || []).indexOf(m) >= 0; });
    $('tf-totp_issuer').value = config.totp_issuer || '';
    NUMBERS.forEach(function (k) { $('tf-' + k).value = String(config[k]); });
    let source = answer.source === 'runtime' ? 'Source: saved on this page (overrides orthanc.json)'
      : 'Source: orthanc.json (no change saved on this page)';
    if (answer.updated && answer.updated.updated_at) {
      source += ', last saved ' + UI.time(answer.updated.updated_at) + ' by ' + (answer.updated.updated_by || '?');
    }
    $('tf-source').textContent = source + '.';
  }

  async function loadConfig() {
    try { showConfig(await api('GET', '/api/2fa/config')); } catch (err) { UI.fail('tf-error', err); }
  }

  $('tf-form').addEventListener('submit', function (event) {
    event.preventDefault();
    UI.say('tf-error', '');
    UI.say('tf-ok', '');
    const body = { totp_issuer: $('tf-totp_issuer').value.trim() };
    FLAGS.forEach(function (k) { body[k] = $('tf-' + k).checked; });
    body.allowed_methods = METHODS.filter(function (m) { return $('tf-method-' + m).checked; });
    for (const k of NUMBERS) {
      const raw = $('tf-' + k).value.trim();
      if (!/^[0-9]+$/.test(raw)) { UI.fail('tf-error', 'Enter whole numbers in every number field.'); $('tf-' + k).focus(); return; }
      body[k] = parseInt(raw, 10);
    }
    if (config && config.enabled && !body.enabled && !window.confirm('Turn off two-factor authentication ' +
        'for everyone? This weakens security and is recorded in the audit log.')) return;
    UI.busy($('tf-save'), async function () {
      try {
        await api('POST', '/api/2fa/config', body);
        await loadConfig();
        UI.say('tf-ok', 'Settings saved.');
        loadAudit();
      } catch (err) { UI.fail('tf-error', err); }
    });
  });

  // ---- audit log --------------------------------------------------------------------------

  // Filters travel in POST bodies: patient IDs and study UIDs stay out of URLs (and logs).
  function auditFilters() {
    const query = {};
    [['user', 'audit-user'], ['event', 'audit-event'], ['outcome', 'audit-outcome'],
      ['patient', 'audit-patient'], ['study', 'audit-study']].forEach(function (p) {
      const value = $(p[1]).value.trim();
      if (value) query[p[0]] = value;
    });
    [['since', 'audit-since'], ['until', 'audit-until']].forEach(function (p) {
      const value = $(p[1]).value;  // local time, as the admin reads it
      if (value) query[p[0]] = new Date(value).getTime() / 1000;
    });
    return query;
  }

  async function exportAudit(format) {
    const body = Object.assign(auditFilters(), { format: format, limit: 100000 });
    let response;
    try {
      response = await fetch('/api/audit/search', {
        method: 'POST', credentials: 'same-origin', cache: 'no-store', referrerPolicy: 'same-origin',
        headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body)
      });
    } catch (err) { UI.fail('audit-error', new Error('Cannot reach the server.')); return; }
    if (!response.ok) { UI.fail('audit-error', new Error('Export failed (' + response.status + ').')); return; }
    const link = UI.el('a', { href: URL.createObjectURL(await response.blob()), download: 'audit.' + format });
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(function () { URL.revokeObjectURL(link.href); }, 60000);
  }

  // Events whose generic wording would mislead; the others read well as words.
  const EVENT_WORDS = { login: 'Signed in', login_pin_accepted: 'PIN accepted', login_2fa: 'Second factor accepted',
    logout: 'Signed out', lockout: 'Locked out', instances_accessed: 'Study viewed', study_downloaded: 'Study downloaded',
    instances_imported: 'Images received (DICOM)', instance_uploaded: 'Image uploaded', instances_sent: 'Images sent',
    nas_mirrored: 'Copied to the NAS', nas_mirror_failed: 'NAS copy failed', modality_saved: 'Modality saved',
    modality_deleted: 'Modality deleted', share_created: 'Share link created', share_opened: 'Share link opened' };
  const HIDDEN_DETAILS = ['instance'];  // Orthanc IDs: noise for a reader, still in the exports

  function detailValue(value) {
    if (value === true) return 'yes';
    if (value === false) return 'no';
    if (value !== null && typeof value === 'object') {
      return Object.keys(value).map(function (k) { return k + ' ' + detailValue(value[k]); }).join(', ');
    }
    return String(value);
  }

  async function loadAudit() {
    const query = Object.assign(auditFilters(), { limit: PAGE, offset: auditOffset });
    let answer;
    try { answer = await api('POST', '/api/audit/search', query); } catch (err) { UI.fail('audit-error', err); return; }
    UI.say('audit-error', '');
    const items = answer.items || [], studies = answer.studies || {};
    const body = $('audit-table').tBodies[0];
    body.textContent = '';
    if (!items.length) {
      const filtered = Object.keys(auditFilters()).length > 0;
      body.insertRow().appendChild(UI.el('td', { colspan: '5', className: 'empty' },
        filtered ? 'No entry matches these filters.' : 'No entries yet.'));
    }
    items.forEach(function (e) {
      const row = body.insertRow();
      const when = UI.cell(UI.shortTime(e.ts), 'nowrap');
      when.title = UI.time(e.ts);
      row.appendChild(when);
      const who = UI.cell(e.actor || '—');
      if (e.ip) who.appendChild(UI.el('div', { className: 'muted small mono' }, e.ip));
      row.appendChild(who);
      const event = UI.el('td');
      event.appendChild(UI.el('span', { className: 'event-name' }, EVENT_WORDS[e.event] || UI.words(e.event)));
      if (e.outcome !== 'success') { event.appendChild(document.createTextNode(' ')); event.appendChild(badge(e.outcome || '—', 'bad')); }
      event.title = e.event + ': ' + (e.event_name || '') + ' (DCM ' + e.event_code + ')';
      row.appendChild(event);
      const study = studies[e.target] || null, subject = UI.el('td');
      if (study) {
        subject.appendChild(UI.el('strong', {}, UI.personName(study.PatientName) || '(no name)'));
        subject.appendChild(UI.el('div', { className: 'muted small' },
          [study.PatientID, study.StudyDescription, study.StudyDate].filter(Boolean).join(' · ')));
      } else if (e.patient_id || e.study_uid) {
        subject.appendChild(UI.el('span', { className: 'small' }, e.patient_id ? 'Patient ' + e.patient_id : ''));
        if (e.study_uid) subject.appendChild(UI.el('div', { className: 'muted small clip', title: e.study_uid }, 'Study ' + e.study_uid));
      } else if (e.target) subject.appendChild(UI.el('span', { className: 'small clip', title: e.target }, e.target));
      else subject.textContent = '—';
      row.appendChild(subject);
      const details = UI.el('td', { className: 'details small' });
      Object.keys(e.details || {}).filter(function (k) { return HIDDEN_DETAILS.indexOf(k) < 0; }).forEach(function (k) {
        const line = details.appendChild(UI.el('span', { className: 'kv' }));
        line.appendChild(UI.el('b', {}, UI.words(k) + ': '));
        line.appendChild(document.createTextNode(detailValue(e.details[k])));
      });
      if (!details.childNodes.length) details.textContent = '—';
      row.appendChild(details);
    });
    const total = answer.total || 0;
    $('audit-info').textContent = total ? (auditOffset + 1) + '–' + (auditOffset + items.length) + ' of ' + total : '';
    $('audit-prev').disabled = auditOffset === 0;
    $('audit-next').disabled = auditOffset + items.length >= total;
  }

  $('audit-form').addEventListener('submit', function (event) {
    event.preventDefault();
    auditOffset = 0;
    UI.busy($('audit-search'), loadAudit);
  });
  $('audit-csv').addEventListener('click', function () { exportAudit('csv'); });
  $('audit-json').addEventListener('click', function () { exportAudit('json'); });
  $('audit-verify').addEventListener('click', function () {
    UI.busy($('audit-verify'), async function () {
      const out = $('audit-verify-result');
      let result;
      try { result = await api('GET', '/api/audit/verify'); } catch (err) { UI.fail('audit-error', err); return; }
      out.hidden = false;
      out.className = result.ok ? 'ok' : 'alert';
      out.textContent = result.ok
        ? 'The chain verifies: ' + result.rows + ' rows, head #' + result.head.id + '.'
        : 'The chain is broken at row #' + result.first_bad_id + ': ' + result.problem;
    });
  });
  $('audit-prev').addEventListener('click', function () { auditOffset = Math.max(0, auditOffset - PAGE); loadAudit(); });
  $('audit-next').addEventListener('click', function () { auditOffset += PAGE; loadAudit(); });

  start();
}());
