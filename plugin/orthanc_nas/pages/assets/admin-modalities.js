/* Orthanc NAS: administration page, DICOM modalities (who may send, who owns what they send, C-ECHO test). */
'use strict';
(function () {
  const $ = UI.byId;
  const FIELDS = ['name', 'aet', 'host', 'port', 'owner'];
  let editing = null;

  function clearErrors() {
    FIELDS.forEach(function (f) { UI.fieldError('mod-' + f, null); });
    UI.say('mod-error', '');
    UI.say('mod-ok', '');
  }
  function failed(err) {
    const field = err.data && err.data.field;
    if (field && $('mod-' + field)) UI.fieldError('mod-' + field, err); else UI.fail('mod-error', err);
  }

  async function loadOwners() {
    let answer;
    try { answer = await api('GET', '/api/admin/users'); } catch (err) { return; }
    const select = $('mod-owner');
    (answer.users || []).filter(function (u) { return u.role !== 'viewer' && u.enabled; }).forEach(function (u) {
      select.appendChild(UI.el('option', { value: u.username }, u.username + (u.display_name ? ' (' + u.display_name + ')' : '')));
    });
  }

  async function load() {
    let answer;
    try { answer = await api('GET', '/api/admin/modalities'); } catch (err) { UI.fail('mod-error', err); return; }
    $('orthanc-aet').textContent = answer.orthanc_aet;
    $('dicom-port').textContent = answer.dicom_port;
    const body = $('modalities-table').tBodies[0];
    body.textContent = '';
    const list = answer.modalities || [];
    if (!list.length) {
      body.insertRow().appendChild(UI.el('td', { colspan: '6', className: 'empty' },
        'No modality yet: Orthanc refuses images from every device until you add one below.'));
    }
    list.forEach(function (m) {
      const row = body.insertRow();
      row.dataset.name = m.name;
      const name = UI.cell(m.name);
      if (m.source !== 'screen') name.appendChild(UI.el('div', { className: 'muted small' }, 'from orthanc.json'));
      else if (m.overrides_file) name.appendChild(UI.el('div', { className: 'muted small' }, 'replaces the orthanc.json entry'));
      row.appendChild(name);
      row.appendChild(UI.cell(m.aet, 'mono'));
      row.appendChild(UI.cell(m.host + ':' + m.port, 'mono'));
      row.appendChild(UI.cell(m.owner || 'nobody'));
      const test = row.appendChild(UI.el('td'));
      test.appendChild(UI.el('button', { type: 'button', className: 'secondary sm', 'data-action': 'echo',
        'aria-label': 'Test ' + m.name + ' (C-ECHO)' }, 'Test'));
      test.appendChild(UI.el('div', { className: 'small echo-result', role: 'status', 'aria-live': 'polite' }));
      const actions = UI.el('div', { className: 'actions' });
      actions.appendChild(UI.el('button', { type: 'button', className: 'secondary sm', 'data-action': 'edit' }, 'Edit'));
      if (m.source === 'screen') {
        actions.appendChild(UI.el('button', { type: 'button', className: 'danger sm', 'data-action': 'delete' }, 'Delete'));
      }
      row.appendChild(UI.el('td')).appendChild(actions);
      row.dataset.modality = JSON.stringify(m);
    });
  }

  function edit(m) {
    editing = m.name;
    $('mod-form-title').textContent = 'Edit ' + m.name;
    $('mod-name').value = m.name;
    $('mod-name').readOnly = true;
    $('mod-aet').value = m.aet;
    $('mod-host').value = m.host;
    $('mod-port').value = m.port;
    $('mod-owner').value = m.owner || '';
    $('mod-cancel').hidden = false;
    $('mod-aet').focus();
  }
  function reset() {
    editing = null;
    $('mod-form').reset();
    $('mod-name').readOnly = false;
    $('mod-form-title').textContent = 'Add a modality';
    $('mod-cancel').hidden = true;
  }

  $('modalities-table').addEventListener('click', function (event) {
    const control = event.target.closest('[data-action]');
    if (!control) return;
    const row = control.closest('tr'), m = JSON.parse(row.dataset.modality);
    clearErrors();
    if (control.dataset.action === 'edit') { edit(m); return; }
    if (control.dataset.action === 'echo') {
      const out = row.querySelector('.echo-result');
      out.textContent = 'Testing…';
      out.className = 'small echo-result muted';
      UI.busy(control, async function () {
        try {
          const answer = await api('POST', '/api/admin/modalities/' + encodeURIComponent(m.name) + '/echo', {});
          out.textContent = answer.message;
          out.className = 'small echo-result ' + (answer.ok ? 'good-text' : 'bad-text');
        } catch (err) { out.textContent = err.message; out.className = 'small echo-result bad-text'; }
      });
      return;
    }
    if (control.dataset.action === 'delete') {
      UI.busy(control, async function () {
        try {
          await api('DELETE', '/api/admin/modalities/' + encodeURIComponent(m.name));
          UI.say('mod-ok', 'Modality ' + m.name + ' deleted: Orthanc no longer accepts images from ' + m.aet + '.');
          if (editing === m.name) reset();
          await load();
        } catch (err) { UI.fail('mod-error', err); }
      });
    }
  });
  $('mod-cancel').addEventListener('click', function () { clearErrors(); reset(); });
  $('mod-form').addEventListener('submit', function (event) {
    event.preventDefault();
    clearErrors();
    const name = $('mod-name').value.trim();
    if (!name) { UI.fieldError('mod-name', 'Give the modality a name.'); return; }
    const port = Number($('mod-port').value);
    const body = { aet: $('mod-aet').value.trim(), host: $('mod-host').value.trim(), port: port,
      owner: $('mod-owner').value || null };
    UI.busy($('mod-save'), async function () {
      try {
        const answer = await api('PUT', '/api/admin/modalities/' + encodeURIComponent(name), body);
        UI.say('mod-ok', 'Modality ' + answer.modality.name + ' saved: Orthanc now accepts images from ' + answer.modality.aet + '.');
        reset();
        await load();
      } catch (err) { failed(err); }
    });
  });

  loadOwners().then(load);
}());
