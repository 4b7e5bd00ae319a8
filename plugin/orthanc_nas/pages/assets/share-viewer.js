/* Orthanc NAS: share link viewer (/s/<token>/viewer): the image viewer (viewer.js), read-only, on what
   the link shares; every image comes through /s/<token>/..., which checks it belongs to the link. */
'use strict';
(function () {
  const $ = UI.byId;
  const token = location.pathname.split('/')[2] || '';
  const base = '/s/' + encodeURIComponent(token);
  const THUMBS = 200;  // thumbnails per series; Previous/Next still reach every image
  let series = [], viewer = null;

  function date(d) { return /^\d{8}$/.test(d || '') ? d.slice(0, 4) + '-' + d.slice(4, 6) + '-' + d.slice(6) : (d || '—'); }
  function set(id, text) { $(id).textContent = text === null || text === undefined || text === '' ? '—' : String(text); }
  function preview(id) { return base + '/preview/' + encodeURIComponent(id); }
  function title(s, index) {
    const t = s.tags || {};
    return ['Series ' + (t.SeriesNumber || index + 1), t.Modality, t.SeriesDescription].filter(Boolean).join(' — ');
  }
  function plural(n) { return n + (n === 1 ? ' image' : ' images'); }

  /** Shows an error; back: also offer the way back to the landing page (where View opens again). */
  function fail(text, back) {
    $('viewer-loading').hidden = true;
    $('viewer-error-text').textContent = text;
    $('viewer-back').href = base;
    $('viewer-back').hidden = !back;
    $('viewer-error').hidden = false;
  }

  async function load() {
    let c;
    try { c = await api('GET', base + '/content'); } catch (err) {
      if (err.status === 403) fail('Your viewing time is over, or the link was not opened in this browser. ' +
        'Go back to the link and press View to look again (this uses one more view, if any are left).', true);
      else if (err.status === 410) fail('These images are no longer available.', false);
      else fail(err.message, true);
      return;
    }
    $('viewer-loading').hidden = true;
    const p = c.patient || {}, st = c.study || {};
    set('patient-name', p.PatientName || 'Unnamed patient');
    set('patient-id', p.PatientID);
    set('patient-birth', p.PatientBirthDate ? date(p.PatientBirthDate) : '');
    set('patient-sex', p.PatientSex);
    set('study-date', date(st.StudyDate));
    set('study-description', st.StudyDescription);
    set('study-accession', st.AccessionNumber);
    set('share-expires', UI.time(c.expires_at));
    document.title = 'Shared images — ' + (st.StudyDescription || date(st.StudyDate));
    $('viewer-header').hidden = false;
    if (c.allow_download) {
      $('share-download').href = base + '/download';
      $('share-download').hidden = false;
    }
    series = (c.series || []).filter(function (s) { return (s.instances || []).length; });
    if (!series.length) { fail('There are no images to show.', false); return; }
    series.forEach(function (s, index) { $('series-list').appendChild(seriesCard(s, index)); });
    viewer = ImageViewer.mount({
      root: $('iv'),
      series: series.map(function (s, i) { return { id: s.id, label: ImageViewer.label(s, i) }; }),
      seriesUrl: function (id) { return base + '/series/' + encodeURIComponent(id); },
      frameUrl: function (instance, frame, kind, query) {
        return base + '/frames/' + encodeURIComponent(instance) + '/' + frame + '/' + kind + (query ? '?' + query : '');
      }
    });
    window.imageViewer = viewer;  // for the browser tests
    viewer.open(0);
    $('iv').scrollIntoView({ block: 'start' });  // the images first; the facts stay just above
  }

  function seriesCard(s, index) {
    const card = UI.el('section', { className: 'card', 'data-series': String(index) });
    card.appendChild(UI.el('h2', {}, title(s, index)));
    card.appendChild(UI.el('p', { className: 'muted small' }, plural(s.instances.length)));
    const thumbs = card.appendChild(UI.el('div', { className: 'thumbs' }));
    s.instances.slice(0, THUMBS).forEach(function (id, i) {
      const label = title(s, index) + ', image ' + (i + 1) + ' of ' + s.instances.length;
      const button = thumbs.appendChild(UI.el('button', { type: 'button', className: 'thumb', 'data-series': String(index),
        'data-index': String(i), 'aria-label': 'Show ' + label, 'aria-current': 'false' }));
      button.appendChild(UI.el('img', { className: 'preview', src: preview(id), alt: label, loading: 'lazy',
        width: '88', height: '88' }));
    });
    if (s.instances.length > THUMBS) {
      card.appendChild(UI.el('p', { className: 'muted small' }, 'Only the first ' + THUMBS + ' images are shown as ' +
        'thumbnails: the viewer above steps through all ' + s.instances.length + '.'));
    }
    return card;
  }

  $('series-list').addEventListener('click', function (event) {
    const thumb = event.target.closest('.thumb');
    if (!thumb) return;
    document.querySelectorAll('.thumb[aria-current="true"]').forEach(function (b) { b.setAttribute('aria-current', 'false'); });
    thumb.setAttribute('aria-current', 'true');
    const s = parseInt(thumb.dataset.series, 10);
    viewer.show(s, series[s].instances[parseInt(thumb.dataset.index, 10)]);
    $('iv').scrollIntoView({ block: 'start', behavior: 'smooth' });
  });
  load();
}());
