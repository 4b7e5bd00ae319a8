/* Orthanc NAS: share link landing page (/s/<token>): says what is shared; View uses one view.
 * Nothing but GET /api/shared/<token> runs by itself: link-preview bots use up nothing. */
'use strict';
(function () {
  const $ = UI.byId;
  const token = location.pathname.split('/')[2] || '';
  const LEVELS = { study: 'a whole study', series: 'one series of a study', instance: 'one image' };
  const REASONS = { expired: 'it has expired.', revoked: 'the sender revoked it.',
    'used up': 'all its views have been used.', 'locked after wrong PINs': 'it is locked after too many wrong PINs.' };
  let pinRequired = false;

  function date(d) { return /^\d{8}$/.test(d || '') ? d.slice(0, 4) + '-' + d.slice(4, 6) + '-' + d.slice(6) : (d || '—'); }
  function set(id, text) { $(id).textContent = text === null || text === undefined || text === '' ? '—' : String(text); }

  /** The link cannot be used any more: say why and stop. */
  function gone(err) {
    const reason = err.data && err.data.reason;
    UI.fail('share-error', 'This link is no longer valid: ' + (REASONS[reason] || (reason ? reason + '.' : 'it expired, ' +
      'was revoked or was used up.')) + ' Ask the person who sent it for a new link.');
    $('share-view').disabled = true;
    $('share-pin').disabled = true;
  }

  async function load() {
    let info;
    try { info = await api('GET', '/api/shared/' + encodeURIComponent(token)); } catch (err) {
      $('share-loading').hidden = true;
      if (err.status === 410) gone(err);
      else UI.fail('share-error', err.status === 404 ? 'This link is unknown: check that it was copied completely.' : err);
      return;
    }
    $('share-loading').hidden = true;
    set('info-level', LEVELS[info.level] || info.level);
    // Only what the server sent (shares.landing_fields): each row appears when its field does.
    const shown = { study_date: date(info.study_date), study_description: info.study_description,
      modalities: Array.isArray(info.modalities) ? info.modalities.join(', ') : '', instance_count: info.instance_count };
    Object.keys(shown).forEach(function (key) {
      if (!(key in info)) return;
      set('info-' + key, shown[key]);
      $('row-' + key).hidden = false;
    });
    set('info-expires', UI.time(info.expires_at));
    set('info-views', info.views_left);
    set('explain-views', info.views_left);
    set('info-download', info.allow_download ? 'allowed (after View)' : 'not allowed (viewing only)');
    pinRequired = Boolean(info.pin_required);
    $('share-pin-field').hidden = !pinRequired;
    $('share-info').hidden = false;
    if (info.views_left === 1) $('share-view').textContent = 'View (last view)';
  }

  $('share-form').addEventListener('submit', function (event) {
    event.preventDefault();
    UI.say('share-error', '');
    const pin = $('share-pin').value;
    if (pinRequired && !pin) { UI.fail('share-error', 'Enter the PIN you were given with the link.'); $('share-pin').focus(); return; }
    const body = pin ? { pin: pin } : {};
    UI.busy($('share-view'), async function () {
      let answer;
      try { answer = await api('POST', '/api/shared/' + encodeURIComponent(token) + '/open', body); } catch (err) {
        if (err.status === 410) { gone(err); return; }
        if (err.status === 403 && err.data && err.data.field === 'pin') {
          pinRequired = true;
          $('share-pin-field').hidden = false;
          UI.fail('share-error', pin ? 'Wrong PIN: check it and try again. After several wrong PINs the link is locked.'
            : 'Enter the PIN you were given with the link.');
          $('share-pin').value = '';
          $('share-pin').focus();
          return;
        }
        UI.fail('share-error', err);
        return;
      }
      const viewer = typeof answer.viewer === 'string' && answer.viewer.indexOf('/s/') === 0 ? answer.viewer
        : '/s/' + encodeURIComponent(token) + '/viewer';
      location.assign(viewer);
    }).finally(function () {
      if ($('share-pin').disabled) $('share-view').disabled = true;  // gone: keep it off after UI.busy
    });
  });

  load();
}());
