/* Admin page, Backups: status, the list on the NAS, back up now, set the passphrase. */
(function () {
  'use strict';
  const $ = function (id) { return document.getElementById(id); };

  function age(seconds) {
    if (seconds < 3600) return Math.max(1, Math.round(seconds / 60)) + ' min';
    if (seconds < 172800) return Math.round(seconds / 3600) + ' h';
    return Math.round(seconds / 86400) + ' days';
  }

  async function loadStatus() {
    let s;
    try { s = await api('GET', '/api/admin/backup'); } catch (err) { UI.fail('bk-error', err); return; }
    const last = s.last || {};
    let text = s.configured ? 'Key ' + s.key_fingerprint + '. ' : 'No backup passphrase yet: set one below. ';
    text += s.schedule.enabled ? 'Every ' + s.schedule.every_hours + ' h from ' + s.schedule.start_time + '; ' : 'Schedule off; ';
    text += 'keeps ' + s.retention.keep_daily + ' daily and ' + s.retention.keep_weekly + ' weekly. ';
    if (last.last_success) text += 'Last success: ' + UI.time(last.last_success) + '. ';
    $('bk-state').textContent = text;
    UI.say('bk-error', last.last_ok === false ? 'The last backup failed: ' + last.last_error : '');
    $('bk-run').disabled = !s.configured;
  }

  async function loadList() {
    const body = $('bk-table').tBodies[0];
    let answer;
    try { answer = await api('GET', '/api/admin/backups'); } catch (err) { body.replaceChildren(); return; }
    body.replaceChildren();
    (answer.backups || []).forEach(function (b) {
      const row = UI.el('tr');
      row.appendChild(UI.el('td', {}, b.name));
      row.appendChild(UI.el('td', {}, UI.bytes(b.size)));
      row.appendChild(UI.el('td', {}, age(b.age_seconds)));
      body.appendChild(row);
    });
    if (!body.rows.length) body.appendChild(UI.el('tr', {}, '')).appendChild(UI.el('td', { colSpan: 3 }, 'No backup on the NAS yet.'));
  }

  $('bk-run').addEventListener('click', function () {
    UI.say('bk-ok', '');
    UI.busy($('bk-run'), async function () {
      try {
        const r = await api('POST', '/api/admin/backup');
        UI.say('bk-ok', 'Backed up: ' + r.name + ' (' + UI.bytes(r.size) + ').');
      } catch (err) { UI.fail('bk-error', err); }
      await loadStatus();
      await loadList();
    });
  });

  $('bk-form').addEventListener('submit', function (event) {
    event.preventDefault();
    UI.say('bk-ok', '');
    UI.busy($('bk-save'), async function () {
      try {
        await api('PUT', '/api/admin/backup/passphrase', { passphrase: $('bk-passphrase').value });
        $('bk-passphrase').value = '';
        UI.say('bk-ok', 'Passphrase set. Write it down: restoring needs it.');
      } catch (err) { UI.fail('bk-error', err); }
      await loadStatus();
    });
  });

  loadStatus().then(loadList);
})();
