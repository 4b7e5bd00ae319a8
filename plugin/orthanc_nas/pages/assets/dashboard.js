/* Orthanc NAS: dashboard (figures, and small charts drawn as inline SVG without libraries). */
'use strict';
(function () {
  const $ = UI.byId;
  const SVG = 'http://www.w3.org/2000/svg';

  async function start() {
    let profile;
    try { profile = await api('GET', '/api/profile'); } catch (err) {
      if (err.status === 401 || err.status === 403) UI.toLogin(); else UI.fail('dash-error', err);
      return;
    }
    if (profile.user.must_change_pin || profile.must_enroll_totp) { location.replace('/ui/account'); return; }
    UI.header(profile);
    $('nav-nas').hidden = profile.user.role !== 'admin';
    await load();
  }

  async function load() {
    let s;
    try { s = await api('GET', '/api/dashboard/stats'); } catch (err) {
      if (err.status === 401) UI.toLogin(); else UI.fail('dash-error', err);
      return;
    }
    UI.say('dash-error', '');
    if (s.scope === 'all') showAll(s); else showMine(s);
  }

  // ---- formatting -------------------------------------------------------------------------
  function num(n) { return n === null || n === undefined || isNaN(Number(n)) ? '—' : Number(n).toLocaleString(); }
  const bytes = UI.bytes;

  /** Figure cards: [id of the value, label, value, optional second line]. */
  function stats(cards) {
    const box = $('stats');
    box.textContent = '';
    cards.forEach(function (c) {
      const card = box.appendChild(UI.el('div', { className: 'stat' }));
      card.appendChild(UI.el('span', { className: 'value', id: c[0] }, c[2]));
      card.appendChild(UI.el('span', { className: 'label' }, c[1]));
      if (c[3]) card.appendChild(UI.el('span', { className: 'sub' }, c[3]));
    });
  }

  // ---- charts -----------------------------------------------------------------------------
  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (name) { node.setAttribute(name, String(attrs[name])); });
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  /** A new empty chart (an <svg> with the given id) replacing the content of box. */
  function chart(boxId, id, width, height, label) {
    const box = $(boxId);
    box.textContent = '';
    return box.appendChild(svg('svg', { id: id, class: 'chart', viewBox: '0 0 ' + width + ' ' + height,
      width: width, height: height, role: 'img', 'aria-label': label }));
  }
  /** Horizontal bars; rows: {label, value, text, of?}: with "of", a track shows the whole the value is part of. */
  function hbars(boxId, id, rows, label) {
    const W = 520, ROW = 28, LABEL = 150, TEXT = 110, BAR = W - LABEL - TEXT;
    const max = Math.max(1, ...rows.map(function (r) { return r.of !== undefined ? r.of : r.value; }));
    const node = chart(boxId, id, W, Math.max(1, rows.length) * ROW + 4, label);
    if (!rows.length) { node.appendChild(svg('text', { class: 'axis', x: 0, y: 18 }, 'No data yet.')); return; }
    rows.forEach(function (r, i) {
      const y = i * ROW + 4, whole = r.of !== undefined ? r.of : r.value;
      const g = node.appendChild(svg('g', { 'data-label': r.label, 'data-value': r.value }));
      g.appendChild(svg('title', {}, r.label + ': ' + r.text));
      g.appendChild(svg('text', { x: LABEL - 8, y: y + 14, 'text-anchor': 'end' }, r.label));
      if (r.of !== undefined) g.appendChild(svg('rect', { class: 'track', x: LABEL, y: y, width: BAR * r.of / max, height: 18, rx: 3 }));
      g.appendChild(svg('rect', { class: 'bar' + (r.kind ? ' ' + r.kind : ''), x: LABEL, y: y, height: 18, rx: 3,
        width: r.value > 0 ? Math.max(2, BAR * r.value / max) : 0 }));
      g.appendChild(svg('text', { x: LABEL + BAR * whole / max + 6, y: y + 14 }, r.text));
    });
  }
  /** The last 30 days (UTC, as the server counts them) with their upload counts, zeros included. */
  function lastDays(list, count) {
    const counts = {};
    (list || []).forEach(function (d) { counts[d.day] = d.instances; });
    const now = new Date(), out = [];
    for (let i = count - 1; i >= 0; i--) {
      const day = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() - i)).toISOString().slice(0, 10);
      out.push({ day: day, n: counts[day] || 0 });
    }
    return out;
  }
  /** Columns, one per day, with the highest value and zero marked on the left. */
  function columns(boxId, id, days, label) {
    const W = 640, H = 170, TOP = 12, BOTTOM = 22, LEFT = 36, SLOT = (W - LEFT) / days.length, PLOT = H - TOP - BOTTOM;
    const max = Math.max(1, ...days.map(function (d) { return d.n; }));
    const node = chart(boxId, id, W, H, label);
    node.appendChild(svg('line', { class: 'grid-line', x1: LEFT, x2: W, y1: TOP, y2: TOP }));
    node.appendChild(svg('line', { class: 'grid-line', x1: LEFT, x2: W, y1: H - BOTTOM, y2: H - BOTTOM }));
    node.appendChild(svg('text', { class: 'axis', x: LEFT - 6, y: TOP + 4, 'text-anchor': 'end' }, num(max)));
    node.appendChild(svg('text', { class: 'axis', x: LEFT - 6, y: H - BOTTOM + 4, 'text-anchor': 'end' }, '0'));
    days.forEach(function (d, i) {
      const h = PLOT * d.n / max, x = LEFT + i * SLOT;
      const bar = node.appendChild(svg('rect', { class: 'bar', x: x + 1, y: H - BOTTOM - h, width: Math.max(1, SLOT - 2),
        height: h, 'data-day': d.day, 'data-value': d.n }));
      bar.appendChild(svg('title', {}, d.day + ': ' + d.n + (d.n === 1 ? ' image' : ' images')));
      if ((days.length - 1 - i) % 7 === 0) {
        const last = i === days.length - 1;  // today's label ends at the right edge
        node.appendChild(svg('text', { class: 'axis', x: last ? W : x + SLOT / 2, y: H - 6, 'text-anchor': last ? 'end' : 'middle' },
          d.day.slice(5)));
      }
    });
  }
  const SOURCES = { dicom: 'from modalities (DICOM)', upload: 'uploaded', stow: 'sent by DICOMweb (STOW)', other: 'made in Orthanc' };
  /** Everything received in 30 days: one column per day, the split by source under it. */
  function received(perDay, byOrigin) {
    const perDayTotal = {}, perSource = {};
    (perDay || []).forEach(function (d) {
      perDayTotal[d.day] = (perDayTotal[d.day] || 0) + d.instances;
      perSource[d.source] = (perSource[d.source] || 0) + d.instances;
    });
    const days = lastDays(Object.keys(perDayTotal).map(function (day) { return { day: day, instances: perDayTotal[day] }; }), 30);
    const total = days.reduce(function (sum, d) { return sum + d.n; }, 0);
    columns('chart-uploads-box', 'chart-uploads', days, total + ' images received in the last 30 days');
    const split = Object.keys(perSource).map(function (k) { return num(perSource[k]) + ' ' + (SOURCES[k] || k); });
    $('chart-uploads-box').appendChild(UI.el('p', { className: 'muted small', id: 'received-total' },
      num(total) + ' images received in 30 days' + (split.length ? ': ' + split.join(', ') + '.' : '.')));
    $('uploads-card').hidden = false;
    hbars('chart-origins-box', 'chart-origins', (byOrigin || []).slice(0, 12).map(function (o) {
      const who = o.source === 'dicom' ? 'AE ' + o.origin : o.source === 'other' ? 'Orthanc' : o.origin + ' (' + o.source + ')';
      return { label: who, value: o.instances, text: num(o.instances) };
    }), 'Images received per source, 30 days');
    $('origins-card').hidden = false;
    return total;
  }

  // ---- views ------------------------------------------------------------------------------
  function showAll(s) {
    const o = s.orthanc || {}, l = s.logins || {}, sh = s.shares || {}, nas = s.nas || {};
    $('dash-scope').textContent = 'The whole server.';
    const nasState = !nas.enabled ? 'mirroring is off' : nas.connected ? num(nas.failed) + ' failed' : 'not connected';
    stats([
      ['stat-studies', 'Studies', num(o.studies)],
      ['stat-series', 'Series', num(o.series)],
      ['stat-instances', 'Images (instances)', num(o.instances)],
      ['stat-received-30d', 'Images received, 30 days', num(sumOf(s.received_per_day)), 'modalities, uploads and STOW'],
      ['stat-disk', 'Storage used by Orthanc', bytes(Number(o.disk_bytes))],
      ['stat-logins-24h', 'Sign-ins, 24 h', num(l.logins_24h), num(l.logins_7d) + ' in 7 days'],
      ['stat-active-24h', 'Active users, 24 h', num(l.active_users_24h), num(l.active_users_7d) + ' in 7 days'],
      ['stat-lockouts-7d', 'Lockouts, 7 days', num(l.lockouts_7d), num(s.locked_now) + ' locked now'],
      ['stat-shares-active', 'Active share links', num(sh.active), num(sh.created) + ' created in all'],
      ['stat-shares-opened', 'Share link openings', num(sh.opened)],
      ['stat-nas-pending', 'NAS: waiting to be copied', num(nas.pending), nasState],
      ['stat-nas-free', 'NAS: free space', typeof nas.free_bytes === 'number' ? bytes(nas.free_bytes) : '—',
        nas.total_bytes ? 'of ' + bytes(nas.total_bytes) : nas.last_error ? 'last error: ' + nas.last_error : '']
    ]);
    received(s.received_per_day, s.received_by_origin);
    const modalities = s.modalities || {};
    hbars('chart-modalities-box', 'chart-modalities', Object.keys(modalities).map(function (m) {
      return { label: m, value: modalities[m], text: num(modalities[m]) };
    }), 'Series per modality');
    $('modalities-card').hidden = false;
    const tf = s.two_factor || {};
    hbars('chart-2fa-box', 'chart-2fa', ['admin', 'user', 'viewer'].filter(function (r) { return tf[r]; }).map(function (r) {
      const users = tf[r].users || 0, totp = tf[r].totp || 0, share = users ? totp / users : 0;
      return { label: r, value: share, of: 1, kind: 'good',
        text: totp + ' of ' + users + ' (' + Math.round(share * 100) + '%)' };
    }), 'Two-factor adoption per role');
    $('tf-card').hidden = false;
  }

  function sumOf(list) { return (list || []).reduce(function (sum, d) { return sum + d.instances; }, 0); }

  function showMine(s) {
    const l = s.logins || {}, sh = s.shares || {};
    $('dash-scope').textContent = 'Your own figures, and what the clinic received.';
    stats([
      ['stat-studies', 'Studies you can see', num(s.studies), num(s.own_studies) + ' yours or given to you'],
      ['stat-received-30d', 'Images received, 30 days', num(sumOf(s.received_per_day)), 'by the whole clinic'],
      ['stat-uploaded', 'Images you brought', num(s.uploaded_instances)],
      ['stat-logins-7d', 'Your sign-ins, 7 days', num(l.logins_7d), num(l.logins_24h) + ' in 24 h'],
      ['stat-shares-active', 'Your active share links', num(sh.active), num(sh.created) + ' created in all'],
      ['stat-shares-opened', 'Openings of your links', num(sh.opened)]
    ]);
    received(s.received_per_day, s.received_by_origin);
    $('modalities-card').hidden = true;
    $('tf-card').hidden = true;
  }

  $('dash-refresh').addEventListener('click', function () { UI.busy($('dash-refresh'), load); });

  start();
}());
