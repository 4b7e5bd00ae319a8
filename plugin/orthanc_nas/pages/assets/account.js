/* Orthanc NAS: the signed-in user's own account page. */
'use strict';
(function () {
  const $ = UI.byId;
  let profile = null;
  let firstLoad = true;

  async function load() {
    let answer;
    try {
      answer = await api('GET', '/api/profile');
    } catch (err) {
      if (err.status === 401 || err.status === 403) { UI.toLogin(); return; }
      UI.fail('page-error', err);
      return;
    }
    profile = answer;
    render(answer);
  }

  function render(p) {
    const user = p.user;
    const tf = p.two_factor || {};
    const methods = tf.allowed_methods || [];
    const restricted = Boolean(user.must_change_pin || p.must_enroll_totp);
    UI.header(p);
    UI.say('page-error', '');

    $('setup-banner').hidden = !restricted;
    $('setup-step-pin').hidden = !user.must_change_pin;
    $('setup-step-totp').hidden = !p.must_enroll_totp;

    $('profile-username').textContent = user.username;
    $('profile-role').textContent = user.role;
    document.querySelectorAll('.js-username').forEach(function (input) { input.value = user.username; });
    if (firstLoad) {
      $('display-name').value = user.display_name || '';
      $('email').value = user.email || '';
    }

    let state;
    if (user.totp_enabled) {
      state = 'On: sign-in asks for a code from your authenticator app.';
      if (methods.indexOf('backup_codes') >= 0) state += ' Backup codes left: ' + (tf.backup_codes_left || 0) + '.';
      if (!tf.enabled) state += ' (Two-factor authentication is currently turned off on this server.)';
    } else {
      state = p.must_enroll_totp ? 'Off: you must set up an authenticator app to continue.'
        : 'Off: sign-in asks only for your PIN. An authenticator app makes your account much safer.';
    }
    const totpAllowed = methods.indexOf('totp') >= 0;
    if (!totpAllowed && !user.totp_enabled) state += ' Authenticator apps are not allowed on this server.';
    $('tf-state').textContent = state;
    $('totp-start-box').hidden = !totpAllowed;
    $('totp-pin-field').hidden = !user.totp_enabled;
    $('totp-start').textContent = user.totp_enabled ? 'Replace authenticator app' : 'Set up authenticator app';
    $('backup-section').hidden = !(user.totp_enabled && methods.indexOf('backup_codes') >= 0);

    $('tokens-section').hidden = restricted;
    if (!restricted) loadTokens();

    const s = p.session;
    $('session-none').hidden = Boolean(s);
    $('session-info').hidden = !s;
    if (s) {
      $('session-created').textContent = UI.time(s.created_at);
      $('session-last-seen').textContent = UI.time(s.last_seen);
      $('session-idle').textContent = UI.time(s.idle_expires_at);
      $('session-expires').textContent = UI.time(s.expires_at);
      $('session-ip').textContent = s.ip || '—';
      $('session-agent').textContent = s.user_agent || '—';
    }

    if (firstLoad && user.must_change_pin) $('current-pin').focus();
    firstLoad = false;
  }

  function showCodes(codes) {
    const list = $('backup-codes');
    list.textContent = '';
    codes.forEach(function (code) { list.appendChild(UI.el('li', {}, code)); });
    $('backup-codes-box').hidden = false;
  }

  // ---- profile and PIN ------------------------------------------------------------------

  $('profile-form').addEventListener('submit', function (event) {
    event.preventDefault();
    UI.say('profile-error', '');
    UI.say('profile-ok', '');
    UI.busy($('profile-save'), async function () {
      try {
        await api('PUT', '/api/profile', { display_name: $('display-name').value.trim(), email: $('email').value.trim() });
        UI.say('profile-ok', 'Profile saved.');
        await load();
      } catch (err) { UI.fail('profile-error', err); }
    });
  });

  $('pin-form').addEventListener('submit', function (event) {
    event.preventDefault();
    UI.say('pin-error', '');
    UI.say('pin-ok', '');
    const current = $('current-pin').value;
    const pin = $('new-pin').value;
    if (!current || !pin) { UI.fail('pin-error', 'Enter your current PIN and a new PIN.'); return; }
    if (pin !== $('new-pin-2').value) {
      UI.fail('pin-error', 'The two new PINs do not match.');
      $('new-pin-2').focus();
      return;
    }
    UI.busy($('pin-save'), async function () {
      try {
        const answer = await api('PUT', '/api/profile', { current_pin: current, new_pin: pin });
        $('pin-form').reset();
        let text = 'Your PIN has been changed.';
        if (answer.sessions_ended) text += ' Other sessions signed out: ' + answer.sessions_ended + '.';
        UI.say('pin-ok', text);
        await load();
      } catch (err) { UI.fail('pin-error', err); }
    });
  });

  // ---- two-factor authentication ----------------------------------------------------------

  $('totp-start-box').addEventListener('submit', function (event) {
    event.preventDefault();
    UI.say('totp-error', '');
    UI.say('totp-ok', '');
    $('totp-done').hidden = true;
    const replacing = Boolean(profile && profile.user.totp_enabled);
    const body = replacing ? { pin: $('totp-pin').value } : {};
    if (replacing && !body.pin) { UI.fail('totp-error', 'Enter your current PIN first.'); $('totp-pin').focus(); return; }
    UI.busy($('totp-start'), async function () {
      try {
        const answer = await api('POST', '/api/2fa/setup/totp', body);
        $('totp-pin').value = '';
        const box = $('totp-qr-box');
        box.textContent = '';
        if (typeof answer.qr_png === 'string' && answer.qr_png.indexOf('data:image/png;base64,') === 0) {
          const img = UI.el('img', { id: 'totp-qr', className: 'qr', width: '200', height: '200',
            alt: 'QR code to scan with your authenticator app (the key below holds the same secret)' });
          img.src = answer.qr_png;
          box.appendChild(img);
        }
        $('totp-secret').textContent = answer.secret || '';
        const link = $('totp-link');
        const uri = typeof answer.otpauth_uri === 'string' ? answer.otpauth_uri : '';
        link.hidden = uri.indexOf('otpauth://') !== 0;
        if (!link.hidden) link.href = uri;
        $('totp-setup').hidden = false;
        $('totp-code').value = '';
        $('totp-code').focus();
      } catch (err) { UI.fail('totp-error', err); }
    });
  });

  $('totp-form').addEventListener('submit', function (event) {
    event.preventDefault();
    UI.say('totp-error', '');
    const code = $('totp-code').value.trim();
    if (!code) { UI.fail('totp-error', 'Enter the code shown by your authenticator app.'); return; }
    UI.busy($('totp-verify'), async function () {
      try {
        const answer = await api('POST', '/api/2fa/setup/totp/verify', { code: code });
        $('totp-setup').hidden = true;
        $('totp-qr-box').textContent = '';
        $('totp-secret').textContent = '';
        $('totp-code').value = '';
        $('totp-done').hidden = false;
        if (Array.isArray(answer.backup_codes)) showCodes(answer.backup_codes);
        await load();
      } catch (err) {
        $('totp-code').value = '';
        UI.fail('totp-error', err);
        $('totp-code').focus();
      }
    });
  });

  $('backup-form').addEventListener('submit', function (event) {
    event.preventDefault();
    UI.say('totp-error', '');
    const pin = $('backup-pin').value;
    if (!pin) { UI.fail('totp-error', 'Enter your current PIN to generate new backup codes.'); return; }
    UI.busy($('backup-generate'), async function () {
      try {
        const answer = await api('POST', '/api/2fa/backup-codes/generate', { pin: pin });
        $('backup-pin').value = '';
        showCodes(answer.backup_codes || []);
        await load();
      } catch (err) { UI.fail('totp-error', err); }
    });
  });

  UI.copy($('backup-copy'), function () {
    return Array.prototype.map.call($('backup-codes').children, function (li) { return li.textContent; }).join('\n');
  });

  // ---- API tokens -------------------------------------------------------------------------

  async function loadTokens() {
    let answer;
    try { answer = await api('GET', '/api/tokens'); } catch (err) { UI.fail('tokens-error', err); return; }
    const body = $('tokens-table').tBodies[0];
    body.textContent = '';
    const tokens = answer.tokens || [];
    if (answer.default_days && answer.max_days) {
      $('token-days-hint').textContent = 'Empty: ' + answer.default_days + ' days. At most ' + answer.max_days + '.';
      $('token-days').max = String(answer.max_days);
    }
    if (!tokens.length) {
      const row = body.insertRow();
      row.appendChild(UI.el('td', { colspan: '5', className: 'empty' }, 'No tokens yet.'));
    }
    tokens.forEach(function (t) {
      const row = body.insertRow();
      row.dataset.tokenId = String(t.id);
      row.appendChild(UI.cell(t.name));
      row.appendChild(UI.cell(UI.time(t.created_at)));
      const expires = UI.cell(UI.time(t.expires_at));
      if (t.expired) expires.appendChild(UI.el('span', { className: 'badge bad' }, 'expired'));
      row.appendChild(expires);
      row.appendChild(UI.cell(t.last_used_at ? UI.time(t.last_used_at) : 'Never'));
      const button = UI.el('button', { type: 'button', className: 'danger sm token-revoke',
        'data-id': String(t.id), 'aria-label': 'Revoke token ' + t.name }, 'Revoke');
      const cell = UI.el('td');
      cell.appendChild(button);
      row.appendChild(cell);
    });
  }

  $('tokens-table').addEventListener('click', function (event) {
    const button = event.target.closest('button.token-revoke');
    if (!button) return;
    UI.say('tokens-error', '');
    UI.busy(button, async function () {
      try {
        await api('DELETE', '/api/tokens/' + encodeURIComponent(button.dataset.id));
      } catch (err) { UI.fail('tokens-error', err); }
      await loadTokens();
    });
  });

  $('token-form').addEventListener('submit', function (event) {
    event.preventDefault();
    UI.say('tokens-error', '');
    UI.fieldError('token-days', null);
    UI.fieldError('token-pin', null);
    const name = $('token-name').value.trim();
    const days = $('token-days').value.trim();
    const body = { name: name, pin: $('token-pin').value };
    if (!name) { UI.fail('tokens-error', 'Give the token a name.'); $('token-name').focus(); return; }
    if (days) {
      if (!/^[0-9]+$/.test(days) || Number(days) < 1) { UI.fieldError('token-days', 'Days must be a whole number, 1 or more.'); return; }
      body.expires_in_days = Number(days);
    }
    if (!body.pin) { UI.fieldError('token-pin', 'Enter your current PIN.'); return; }
    UI.busy($('token-create'), async function () {
      try {
        const answer = await api('POST', '/api/tokens', body);
        $('token-form').reset();
        $('token-value').textContent = answer.token;
        $('token-result').hidden = false;
        await loadTokens();
      } catch (err) {
        $('token-pin').value = '';
        const field = err.data && err.data.field;
        if (field === 'pin') UI.fieldError('token-pin', err);
        else if (field === 'expires_in_days') UI.fieldError('token-days', err);
        else UI.fail('tokens-error', err);
      }
    });
  });

  UI.copy($('token-copy'), function () { return $('token-value').textContent; });

  load();
}());
