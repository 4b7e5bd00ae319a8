/* Orthanc NAS: sign-in page (PIN, then the second factor when due). */
'use strict';
(function () {
  const $ = UI.byId;
  const loginForm = $('login-form');
  const codeForm = $('code-form');
  const errorBox = $('login-error');

  /** A same-site URL (never another origin), or null. The whole URL is returned, not its
   *  path: "/.//evil.example" resolves to the path "//evil.example", another host. */
  function safePath(value) {
    if (typeof value !== 'string' || value.charAt(0) !== '/' || value.charAt(1) === '/' ||
        value.charAt(1) === '\\' || /[\u0000-\u001f\\]/.test(value)) {
      return null;
    }
    try {
      const url = new URL(value, location.origin);
      return url.origin === location.origin && !url.pathname.startsWith('//') ? url.href : null;
    } catch (ignored) {
      return null;
    }
  }

  function done(answer) {
    // Users who must first change their PIN or enroll TOTP go where the server says.
    const restricted = answer.must_change_pin || answer.must_enroll_totp;
    const wanted = restricted ? null : safePath(new URLSearchParams(location.search).get('next'));
    location.assign(wanted || safePath(answer.next) || '/');
  }

  function showStep(step) {
    loginForm.hidden = step !== 1;
    codeForm.hidden = step !== 2;
    (step === 1 ? $('username') : $('code')).focus();
  }

  function backupMode(on) {
    const input = $('code');
    input.setAttribute('inputmode', on ? 'text' : 'numeric');
    $('code-label').textContent = on ? 'Backup code' : 'Verification code';
    $('code-backup').textContent = on ? 'Use the authenticator app' : 'Use a backup code';
    input.focus();
  }

  loginForm.addEventListener('submit', function (event) {
    event.preventDefault();
    const username = $('username').value.trim();
    const pin = $('pin').value;
    if (!username || !pin) {
      UI.say(errorBox, 'Enter your username and PIN.');
      (username ? $('pin') : $('username')).focus();
      return;
    }
    UI.say(errorBox, '');
    UI.busy($('login-submit'), async function () {
      try {
        const answer = await api('POST', '/api/login', { username: username, pin: pin });
        $('pin').value = '';
        if (answer.status === '2fa_required') {
          backupMode(false);
          showStep(2);
        } else {
          done(answer);
        }
      } catch (err) {
        $('pin').value = '';
        UI.say(errorBox, err.message);
        $('pin').focus();
      }
    });
  });

  codeForm.addEventListener('submit', function (event) {
    event.preventDefault();
    const code = $('code').value.trim();
    if (!code) {
      UI.say(errorBox, 'Enter the code.');
      $('code').focus();
      return;
    }
    UI.say(errorBox, '');
    UI.busy($('code-submit'), async function () {
      try {
        done(await api('POST', '/api/2fa/verify', { code: code }));
      } catch (err) {
        $('code').value = '';
        if (err.status === 403) {  // the pending login expired or was ended
          showStep(1);
          UI.say(errorBox, 'Your sign-in expired: enter your username and PIN again.');
        } else {
          UI.say(errorBox, err.message);
          $('code').focus();
        }
      }
    });
  });

  $('code-backup').addEventListener('click', function () {
    backupMode($('code').getAttribute('inputmode') === 'numeric');
  });

  $('code-cancel').addEventListener('click', async function () {
    try { await api('POST', '/api/logout', {}); } catch (ignored) { /* nothing to end */ }
    $('code').value = '';
    UI.say(errorBox, '');
    showStep(1);
  });
}());
