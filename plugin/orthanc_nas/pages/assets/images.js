/* Orthanc NAS: images page, part 2: search, study details and tags (helpers and share links: images-shares.js). */
'use strict';
(function () {
  const $ = UI.byId;
  const I = Images;
  const { canWrite, badge, td, date, clear, ok, fail, empty, explorer, table, field } = I;
  const PAGE = 25, COLS = 8;
  const FILTERS = ['patient_name', 'patient_id', 'modality', 'date_from', 'date_to', 'description', 'tag', 'uploader'];
  const NAS_KIND = { mirrored: 'good', pending: 'warn', failed: 'bad' };
  let offset = 0, query = {}, openId = null, detailSeq = 0;

  async function start() {
    let profile;
    try { profile = await api('GET', '/api/profile'); } catch (err) {
      if (err.status === 401 || err.status === 403) UI.toLogin(); else UI.fail('images-error', err);
      return;
    }
    if (profile.user.must_change_pin || profile.must_enroll_totp) { location.replace('/ui/account'); return; }
    UI.header(profile);
    const role = I.state.role = profile.user.role;
    $('nav-nas').hidden = role !== 'admin';
    $('shares-section').hidden = !canWrite();
    if (role === 'admin') $('shares-title').textContent = 'Share links (all users)';
    query = readForm();
    search(0);
    if (canWrite()) I.loadShares();
  }


  // ---- tags -------------------------------------------------------------------------------
  /** A study's tags as chips; for users and admins each has a × that removes it. */
  function chips(studyId, tags) {
    const box = UI.el('span', { className: 'chips', 'data-tags-of': studyId });
    if (!tags.length) box.appendChild(UI.el('span', { className: 'muted' }, '—'));
    tags.forEach(function (tag) {
      const chip = box.appendChild(UI.el('span', { className: 'chip', 'data-tag': tag }, tag));
      if (canWrite()) {
        chip.appendChild(UI.el('button', { type: 'button', className: 'chip-x', 'data-action': 'untag',
          'aria-label': 'Remove tag ' + tag, title: 'Remove tag' }, '×'));
      }
    });
    return box;
  }
  function showTags(studyId, tags) {
    document.querySelectorAll('[data-tags-of="' + studyId + '"]').forEach(function (old) { old.replaceWith(chips(studyId, tags)); });
  }
  function untag(button) {
    const studyId = button.closest('[data-tags-of]').dataset.tagsOf, tag = button.closest('.chip').dataset.tag;
    clear();
    UI.busy(button, async function () {
      try {
        const answer = await api('DELETE', '/api/images/' + studyId + '/tags/' + encodeURIComponent(tag));
        showTags(studyId, answer.tags || []);
        ok('Tag "' + tag + '" removed.');
      } catch (err) { fail(err); }
    });
  }
  function addTag() {
    const input = $('tag-input'), tag = input.value.trim(), studyId = $('detail').dataset.study;
    clear();
    if (!tag) { input.focus(); return; }
    UI.busy($('tag-add'), async function () {
      try {
        const answer = await api('POST', '/api/images/' + studyId + '/tags', { tag: tag });
        input.value = '';
        showTags(studyId, answer.tags || []);
        ok('Tag "' + tag + '" added.');
      } catch (err) { fail(err); input.focus(); }
    });
  }

  // ---- search -----------------------------------------------------------------------------
  function readForm() {
    const q = {};
    FILTERS.forEach(function (name) {
      let value = $('f-' + name).value.trim();
      if (name === 'date_from' || name === 'date_to') value = value.replace(/-/g, '');  // YYYYMMDD
      if (name === 'modality') value = value.toUpperCase();
      if (value) q[name] = value;
    });
    q.sort = $('f-sort').value || '-date';
    if ($('f-mine').checked) q.mine = true;
    return q;
  }
  async function search(at) {
    // POST: patient names and IDs stay out of URLs (and so out of proxy and server logs).
    const params = Object.assign({}, query, { limit: PAGE, offset: at });
    let answer;
    try { answer = await api('POST', '/api/images/search', params); } catch (err) { fail(err); return; }
    offset = at;
    openId = null;
    render(answer);
  }
  function render(answer) {
    const items = answer.items || [], total = answer.total || 0;
    const body = $('results').tBodies[0];
    body.textContent = '';
    if (!items.length) empty(body, COLS, emptyReason());
    items.forEach(function (s) {
      const row = body.insertRow();
      row.dataset.studyId = s.id;
      const name = UI.el('div', {});
      name.appendChild(UI.el('strong', {}, UI.personName(s.PatientName) || '(no name)'));
      if (s.PatientID) name.appendChild(UI.el('div', { className: 'muted small' }, s.PatientID));
      const who = UI.el('div', { className: 'with-thumb' });
      who.appendChild(thumbnail(s));
      who.appendChild(name);
      row.appendChild(td(who));
      row.appendChild(UI.cell(date(s.StudyDate)));
      const what = UI.cell(s.StudyDescription || '—');
      if (s.AccessionNumber) what.appendChild(UI.el('div', { className: 'muted small' }, 'Accession ' + s.AccessionNumber));
      row.appendChild(what);
      row.appendChild(UI.cell(s.series_count));
      const up = UI.cell((s.uploaded_by || []).join(', ') || '—');
      if (s.uploaded_at) up.appendChild(UI.el('div', { className: 'muted small' }, UI.time(s.uploaded_at)));
      row.appendChild(up);
      row.appendChild(td(chips(s.id, s.tags || [])));
      row.appendChild(td(badge(s.nas, NAS_KIND[s.nas])));
      const actions = UI.el('div', { className: 'actions' });
      actions.appendChild(UI.el('a', { href: viewer(s.id), className: 'viewer-link' }, 'View images'));
      actions.appendChild(UI.el('a', { href: explorer(s.id), className: 'explorer-link' }, 'Open in Explorer'));
      actions.appendChild(UI.el('button', { type: 'button', className: 'secondary sm', 'data-action': 'details',
        'aria-expanded': 'false', 'aria-label': 'Details of ' + (s.PatientName || s.id) }, 'Details'));
      row.appendChild(td(actions));
    });
    $('page-info').textContent = total ? (offset + 1) + '–' + (offset + items.length) + ' of ' + total : '';
    $('page-prev').disabled = offset === 0;
    $('page-next').disabled = offset + items.length >= total;
  }

  // ---- thumbnails and the viewer ----------------------------------------------------------
  function viewer(id) { return '/ui/viewer#study=' + encodeURIComponent(id); }
  /** The study's middle image of its first series, linking to the viewer (empty if none). */
  function thumbnail(s) {
    const link = UI.el('a', { href: viewer(s.id), className: 'thumb-link', 'aria-label': 'View images of ' + (s.PatientName || s.id) });
    const img = link.appendChild(UI.el('img', { className: 'study-thumb', src: '/api/viewer/thumbnail/' + encodeURIComponent(s.id),
      alt: '', loading: 'lazy', width: '64', height: '64' }));
    img.addEventListener('error', function () { img.hidden = true; });
    return link;
  }

  /** Why the list is empty, and what would fill it. */
  function emptyReason() {
    const filters = Object.keys(query).filter(function (k) { return k !== 'sort' && k !== 'mine'; });
    if (filters.length) return 'No study matches these filters: try part of a name, or clear the filters.';
    if (query.mine) {
      return 'No study of yours yet: you own what you upload and what a modality you own sends, ' +
        'and others can give you theirs. Clear "Only mine" to see every study.';
    }
    return 'No study in Orthanc yet: images arrive from modalities (an admin adds them under ' +
      'Administration, DICOM modalities) or from Orthanc Explorer\'s Upload page.';
  }

  // ---- details ----------------------------------------------------------------------------
  function closeDetail() {
    const old = document.querySelector('#results tr.detail-row');
    if (old) old.remove();
    document.querySelectorAll('#results [data-action="details"]').forEach(function (b) {
      b.setAttribute('aria-expanded', 'false');
      b.textContent = 'Details';
    });
    openId = null;
  }
  function toggleDetail(button) {
    const row = button.closest('tr'), id = row.dataset.studyId, same = openId === id;
    closeDetail();
    if (same) return;
    openId = id;
    button.setAttribute('aria-expanded', 'true');
    button.setAttribute('aria-controls', 'detail');
    button.textContent = 'Hide details';
    const holder = UI.el('tr', { className: 'detail-row' });
    holder.appendChild(UI.el('td', { colspan: String(COLS) })).appendChild(UI.el('div', { id: 'detail', className: 'detail' }, 'Loading…'));
    row.after(holder);
    loadDetail(id);
  }
  async function loadDetail(id) {
    const seq = ++detailSeq;
    let d;
    try { d = await api('GET', '/api/images/' + encodeURIComponent(id)); } catch (err) {
      if (seq === detailSeq && $('detail')) { $('detail').textContent = 'The details could not be loaded.'; fail(err); }
      return;
    }
    if (seq === detailSeq && openId === id && $('detail')) renderDetail(d);
  }
  function renderDetail(d) {
    const box = $('detail'), patient = d.patient || {}, study = d.study || {}, states = (d.nas || {}).instances || {};
    box.textContent = '';
    box.dataset.study = d.study_id;
    box.dataset.resource = d.id;
    box.appendChild(UI.el('h3', {}, 'Study'));
    const facts = box.appendChild(UI.el('dl', { className: 'facts' }));
    [['Patient', [UI.personName(patient.PatientName), patient.PatientID].filter(Boolean).join(' — ')],
      ['Birth date, sex', [date(patient.PatientBirthDate), patient.PatientSex || '—'].join(', ')],
      ['Study', [date(study.StudyDate), study.StudyDescription].filter(Boolean).join(' — ')],
      ['Study instance UID', study.StudyInstanceUID], ['Uploaded by', (d.uploaded_by || []).join(', ')],
      ['NAS copy', (d.nas || {}).summary]].forEach(function (f) {
      facts.appendChild(UI.el('dt', {}, f[0]));
      facts.appendChild(UI.el('dd', {}, f[1] || '—'));
    });

    box.appendChild(UI.el('h3', {}, 'Series'));
    const series = table(['#', 'Modality', 'Description', 'Images', 'On the NAS']);
    (d.series || []).forEach(function (s) {
      const tags = s.tags || {}, instances = s.instances || [], row = series.body.insertRow();
      const done = instances.filter(function (i) { return states[i] === 'done'; }).length;
      [tags.SeriesNumber || '—', tags.Modality || '—', tags.SeriesDescription || '—', instances.length,
        done + ' of ' + instances.length].forEach(function (v) { row.appendChild(UI.cell(v)); });
    });
    if (!(d.series || []).length) empty(series.body, 5, 'No series.');
    box.appendChild(series.wrap);

    box.appendChild(UI.el('h3', {}, 'Tags'));
    box.appendChild(chips(d.study_id, d.tags || []));
    if (canWrite()) {
      const form = box.appendChild(UI.el('form', { id: 'tag-form', className: 'inline-form', novalidate: '' }));
      form.appendChild(field('Add a tag', UI.el('input', { type: 'text', id: 'tag-input', maxlength: '40', autocomplete: 'off' }),
        'Letters, digits, spaces and . _ : -'));
      form.appendChild(UI.el('button', { type: 'submit', id: 'tag-add', className: 'secondary' }, 'Add tag'));
    }

    box.appendChild(UI.el('h3', {}, 'Share links of this study'));
    const shares = table(['Level', 'Created', 'Expires', 'Views', 'Options', 'State', 'Actions'], 'detail-shares');
    box.appendChild(shares.wrap);
    I.fillShares(shares.body, d.shares || [], false);
    if (canWrite()) box.appendChild(I.shareForm());
  }

  // ---- wiring -----------------------------------------------------------------------------
  function click(event) {
    const control = event.target.closest('[data-action]');
    if (!control) return;
    if (control.dataset.action === 'details') toggleDetail(control);
    else if (control.dataset.action === 'untag') untag(control);
    else if (control.dataset.action === 'revoke') I.revoke(control);
  }
  $('results').addEventListener('click', click);
  $('shares-table').addEventListener('click', click);
  $('results').addEventListener('submit', function (event) {
    event.preventDefault();
    if (event.target.id === 'tag-form') addTag();
    else if (event.target.id === 'share-form') I.createShare();
  });
  $('search-form').addEventListener('submit', function (event) {
    event.preventDefault();
    clear();
    query = readForm();
    UI.busy($('search-submit'), function () { return search(0); });
  });
  $('page-prev').addEventListener('click', function () { search(Math.max(0, offset - PAGE)); });
  $('page-next').addEventListener('click', function () { search(offset + PAGE); });

  start();
}());
