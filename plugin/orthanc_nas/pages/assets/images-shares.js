/* Orthanc NAS: images page, part 1: helpers and share links (images.js, loaded after, uses them). */
'use strict';
const Images = (function () {
  const $ = UI.byId;
  const STATE_KIND = { active: 'good', revoked: 'bad' };
  const state = { role: 'viewer' };

  function canWrite() { return state.role === 'user' || state.role === 'admin'; }
  function badge(text, kind) { return UI.el('span', { className: 'badge ' + (kind || '') }, text); }
  function td(node) { const cell = UI.el('td'); if (node) cell.appendChild(node); return cell; }
  function date(d) { return /^\d{8}$/.test(d || '') ? d.slice(0, 4) + '-' + d.slice(4, 6) + '-' + d.slice(6) : (d || '—'); }
  function clear() { UI.say('images-error', ''); UI.say('images-ok', ''); }
  function ok(text) { UI.say('images-error', ''); UI.say('images-ok', text); }
  function fail(err) { UI.say('images-ok', ''); if (err.status === 401) UI.toLogin(); else UI.fail('images-error', err); }
  function empty(body, cols, text) { body.insertRow().appendChild(UI.el('td', { colspan: String(cols), className: 'empty' }, text)); }
  function explorer(id) { return '/app/explorer.html#study?uuid=' + encodeURIComponent(id); }
  /** A table in a scrolling wrapper: {wrap, body}. */
  function table(headers, id) {
    const wrap = UI.el('div', { className: 'table-wrap' });
    const t = wrap.appendChild(UI.el('table', id ? { id: id } : {}));
    const tr = t.createTHead().insertRow();
    headers.forEach(function (h) { tr.appendChild(UI.el('th', { scope: 'col' }, h)); });
    return { wrap: wrap, body: t.createTBody() };
  }
  function field(label, input, hint) {
    const box = UI.el('div', { className: 'field' });
    box.appendChild(UI.el('label', { for: input.id }, label));
    box.appendChild(input);
    if (hint) box.appendChild(UI.el('span', { className: 'hint' }, hint));
    return box;
  }

  // ---- share links ------------------------------------------------------------------------
  function shareForm() {
    const form = UI.el('form', { id: 'share-form', novalidate: '' });
    form.appendChild(UI.el('h3', {}, 'Share with an outside doctor'));
    const grid = form.appendChild(UI.el('div', { className: 'grid' }));
    grid.appendChild(field('Valid for (hours)', UI.el('input', { type: 'number', id: 'share-hours', min: '1', step: '1',
      inputmode: 'numeric', placeholder: 'server default' }), 'Empty: the server default (usually 72 h).'));
    grid.appendChild(field('Number of views', UI.el('input', { type: 'number', id: 'share-views', min: '1', step: '1',
      inputmode: 'numeric', placeholder: 'server default' }), 'Each press of View on the link uses one.'));
    grid.appendChild(field('PIN (optional)', UI.el('input', { type: 'text', id: 'share-pin', maxlength: '128',
      autocomplete: 'off', spellcheck: 'false' }), 'At least 4 characters; send it separately from the link.'));
    const check = form.appendChild(UI.el('label', { className: 'check' }));
    check.appendChild(UI.el('input', { type: 'checkbox', id: 'share-download' }));
    check.appendChild(document.createTextNode(' Allow downloading the DICOM files'));
    form.appendChild(UI.el('button', { type: 'submit', id: 'share-create' }, 'Create share link'));
    const result = form.appendChild(UI.el('div', { id: 'share-result', hidden: '' }));
    result.appendChild(UI.el('p', { className: 'note' }, 'Copy this link now: it is shown only once and cannot be ' +
      'displayed again. Anyone who has it (and the PIN, if set) can see these images until it expires, is used up or is revoked.'));
    result.appendChild(UI.el('code', { id: 'share-url', className: 'secret' }));
    const copy = result.appendChild(UI.el('div', { className: 'actions' }))
      .appendChild(UI.el('button', { type: 'button', id: 'share-copy', className: 'secondary sm' }, 'Copy link'));
    UI.copy(copy, function () { return $('share-url').textContent; });
    return form;
  }
  function createShare() {
    clear();
    const body = { allow_download: $('share-download').checked };
    for (const [key, id] of [['expires_in_hours', 'share-hours'], ['max_views', 'share-views']]) {
      const raw = $(id).value.trim();
      if (!raw) continue;
      if (!/^[0-9]+$/.test(raw)) { UI.fail('images-error', 'Enter whole numbers for the hours and the views.'); $(id).focus(); return; }
      body[key] = parseInt(raw, 10);
    }
    if ($('share-pin').value) body.pin = $('share-pin').value;
    const id = $('detail').dataset.resource;
    UI.busy($('share-create'), async function () {
      try {
        const answer = await api('POST', '/api/images/' + encodeURIComponent(id) + '/share', body);
        ['share-hours', 'share-views', 'share-pin'].forEach(function (f) { $(f).value = ''; });
        $('share-download').checked = false;
        $('share-url').textContent = answer.url;
        $('share-result').hidden = false;
        ok('Share link created.');
        loadShares();
      } catch (err) { fail(err); }
    });
  }
  function fillShares(body, list, withStudy) {
    body.textContent = '';
    if (!list.length) empty(body, 7, 'No share links.');
    list.forEach(function (s) {
      const row = body.insertRow();
      row.dataset.shareId = String(s.id);
      const first = withStudy ? td(UI.el('a', { href: explorer(s.study_id) }, s.study_id.slice(0, 8) + '…')) : UI.cell(s.level);
      if (withStudy) first.appendChild(UI.el('div', { className: 'muted small' }, s.level));
      row.appendChild(first);
      const created = UI.cell(UI.time(s.created_at));
      if (s.creator && state.role === 'admin') created.appendChild(UI.el('div', { className: 'muted small' }, 'by ' + s.creator));
      row.appendChild(created);
      row.appendChild(UI.cell(UI.time(s.expires_at)));
      row.appendChild(UI.cell(s.views + ' of ' + s.max_views));
      row.appendChild(UI.cell([s.has_pin ? 'PIN' : '', s.allow_download ? 'download' : ''].filter(Boolean).join(', ') || '—'));
      row.appendChild(td(badge(s.state, STATE_KIND[s.state])));
      row.appendChild(s.state !== 'active' ? UI.cell('') : td(UI.el('button', { type: 'button', className: 'danger sm',
        'data-action': 'revoke', 'aria-label': 'Revoke share link ' + s.id }, 'Revoke')));
    });
  }
  async function loadShares() {
    let list;
    try { list = (await api('GET', '/api/shares')).shares || []; } catch (err) { fail(err); return; }
    fillShares($('shares-table').tBodies[0], list, true);
    const detail = $('detail-shares');
    if (detail && $('detail')) {
      const study = $('detail').dataset.study;
      fillShares(detail.tBodies[0], list.filter(function (s) { return s.study_id === study; }), false);
    }
  }
  function revoke(button) {
    clear();
    UI.busy(button, async function () {
      try {
        await api('DELETE', '/api/shares/' + encodeURIComponent(button.closest('tr').dataset.shareId));
        ok('Share link revoked: it no longer opens, also for anyone viewing it now.');
      } catch (err) { fail(err); }
      await loadShares();
    });
  }

  return { state: state, canWrite: canWrite, badge: badge, td: td, date: date, clear: clear, ok: ok, fail: fail,
    empty: empty, explorer: explorer, table: table, field: field, shareForm: shareForm, createShare: createShare,
    fillShares: fillShares, loadShares: loadShares, revoke: revoke };
}());
