/* Orthanc NAS: the viewer behind the login (/ui/viewer#study=<id>[&series=<id>]). Orthanc's IDs
   go in the fragment, which never reaches a server log. */
'use strict';
(function () {
  const $ = UI.byId;
  function hashParam(name) {
    const m = new RegExp('(?:^|[#&])' + name + '=([0-9a-f-]{44})(?:&|$)').exec(location.hash);
    return m ? m[1] : '';
  }
  function date(d) { return /^\d{8}$/.test(d || '') ? d.slice(0, 4) + '-' + d.slice(4, 6) + '-' + d.slice(6) : (d || ''); }
  function fail(text) { $('viewer-error').textContent = text; $('viewer-error').hidden = false; }

  async function start() {
    let profile;
    try { profile = await api('GET', '/api/profile'); } catch (err) {
      if (err.status === 401 || err.status === 403) UI.toLogin(); else fail(err.message);
      return;
    }
    if (profile.user.must_change_pin || profile.must_enroll_totp) { location.replace('/ui/account'); return; }
    UI.header(profile);
    let study = hashParam('study');
    const wanted = hashParam('series');
    if (!study && wanted) {
      try { study = (await api('GET', '/api/viewer/series/' + wanted)).study_id; } catch (err) { fail(err.message); return; }
    }
    if (!study) { fail('No study chosen: open the viewer from the Images page or Orthanc Explorer.'); return; }
    let d;
    try { d = await api('GET', '/api/images/' + study); } catch (err) { fail(err.message); return; }
    const p = d.patient || {}, st = d.study || {};
    $('viewer-patient').textContent = p.PatientName || 'Unnamed patient';
    $('viewer-study').textContent = [p.PatientID, date(st.StudyDate), st.StudyDescription].filter(Boolean).join(' · ');
    document.title = 'Viewer — ' + (st.StudyDescription || date(st.StudyDate) || 'study');
    const series = (d.series || []).filter(function (s) { return (s.instances || []).length; });
    if (!series.length) { fail('This study has no images.'); return; }
    const viewer = ImageViewer.mount({
      root: $('iv'),
      series: series.map(function (s, i) { return { id: s.id, label: ImageViewer.label(s, i) }; }),
      seriesUrl: function (id) { return '/api/viewer/series/' + encodeURIComponent(id); },
      frameUrl: function (instance, frame, kind, query) {
        return '/instances/' + encodeURIComponent(instance) + '/frames/' + frame + '/' + kind + (query ? '?' + query : '');
      }
    });
    const at = Math.max(0, series.findIndex(function (s) { return s.id === wanted; }));
    viewer.open(at);
    window.imageViewer = viewer;  // for the browser tests
    $('iv').focus();
  }
  start();
}());
