/* Orthanc NAS: added by Orthanc to Orthanc Explorer (/plugins/explorer.js).
 * Sends the browser to the sign-in page when the session is gone, to the account page when
 * the PIN must be changed or TOTP enrolled, and adds the way back to the plugin's pages (Images,
 * Dashboard, NAS mirror for admins, Account) and "Log out" to every header.
 * Written for old browsers' sake in ES5; never throws; works without jQuery (checks only). */
(function () {
  'use strict';
  var redirecting = false;
  var checking = false;
  var noticeTimer = null;

  function loginUrl() {
    return '/ui/login?next=' + encodeURIComponent('/app/explorer.html' + window.location.hash);
  }

  function go(url) {
    if (redirecting) return;
    redirecting = true;
    window.location.replace(url);
  }

  /** Asks who we are; signs in again when the session is gone. Calls whenFine(profile) when
   *  the session is valid and unrestricted. */
  function checkSession(whenFine) {
    if (!window.fetch) return;
    checking = true;
    window.fetch('/api/profile', { credentials: 'same-origin', cache: 'no-store',
                                   headers: { Accept: 'application/json' } })
      .then(function (response) {
        if (response.status === 401 || response.status === 403) { go(loginUrl()); return null; }
        return response.ok ? response.json() : null;
      })
      .then(function (profile) {
        checking = false;
        if (!profile || !profile.user) return;
        if (profile.user.must_change_pin || profile.must_enroll_totp) { go('/ui/account'); return; }
        if (whenFine) whenFine(profile);
      })['catch'](function () { checking = false; });
  }

  function logout(event) {
    if (event) { event.preventDefault(); event.stopPropagation(); }
    var leave = function () { go('/ui/login'); };
    if (!window.fetch) { leave(); return; }
    window.fetch('/api/logout', { method: 'POST', credentials: 'same-origin', referrerPolicy: 'same-origin',
                                  headers: { 'Content-Type': 'application/json' }, body: '{}' })
      .then(leave, leave);
  }

  var isAdmin = false;
  try {
    checkSession(function (profile) {
      isAdmin = profile.user.role === 'admin';
      if (isAdmin && window.jQuery) window.jQuery('.onas-nas').show();
    });
  } catch (ignored) { /* never break Orthanc Explorer */ }

  var $ = window.jQuery;
  if (typeof $ !== 'function') return;

  /** A short message at the bottom of the window (e.g. an action the user's role forbids). */
  function notice(text) {
    var box = $('#onas-notice');
    if (!box.length) {
      box = $('<div id="onas-notice" role="alert"></div>').css({
        position: 'fixed', left: '50%', bottom: '16px', transform: 'translateX(-50%)',
        zIndex: 100000, maxWidth: '90%', padding: '8px 14px', borderRadius: '6px',
        background: '#b3261e', color: '#fff', font: '14px/1.4 sans-serif', textShadow: 'none',
        boxShadow: '0 2px 8px rgba(0,0,0,.3)'
      }).appendTo(document.body);
    }
    box.text(text).show();
    if (noticeTimer) window.clearTimeout(noticeTimer);
    noticeTimer = window.setTimeout(function () { box.fadeOut(400); }, 5000);
  }

  var linkCss = { font: 'inherit', fontWeight: 'normal', color: 'inherit', textDecoration: 'underline',
                  textShadow: 'none', background: 'none', border: '0', padding: '0',
                  margin: '0 0 0 14px', cursor: 'pointer' };

  function decorateHeader(header) {
    var $header = $(header);
    if (!$header.children('.onas-bar').length) {
      var links = [['/ui/images', 'onas-images', 'Images'], ['/ui/dashboard', 'onas-dashboard', 'Dashboard'],
        ['/ui/nas', 'onas-nas', 'NAS mirror']].map(function (l) {
        var link = $('<a rel="external" data-ajax="false"></a>').attr('href', l[0]).addClass(l[1])
          .text(l[2]).css(linkCss);
        if (l[1] === 'onas-nas' && !isAdmin) link.hide();
        return link;
      });
      var account = $('<a href="/ui/account" class="onas-account" rel="external" data-ajax="false"></a>')
        .text('Account').css(linkCss);
      var out = $('<button type="button" class="onas-logout" data-role="none"></button>')
        .text('Log out').css(linkCss).bind('click', logout);
      $('<div class="onas-bar"></div>').css({
        textAlign: 'right', height: '20px', padding: '3px 12px 0', boxSizing: 'border-box',
        fontSize: '12px', lineHeight: '16px', fontWeight: 'normal', textShadow: 'none'
      }).append(links[0], links[1], links[2], account, out).prependTo($header);
    }
    // The header's own buttons are positioned absolutely at its top: move them below the bar.
    $header.children('.ui-btn-left, .ui-btn-right').css('top', 'calc(.4em + 20px)');
  }

  /** Ids must be unique: they go to the links of the page on show (stable for tests). */
  function markActive(page) {
    var bar = $(page).find('.onas-bar').first();
    if (!bar.length) bar = $('.onas-bar').first();
    $('#onas-account-link').removeAttr('id');
    $('#onas-logout-button').removeAttr('id');
    bar.find('.onas-account').attr('id', 'onas-account-link');
    bar.find('.onas-logout').attr('id', 'onas-logout-button');
  }

  function decorate(root) {
    try {
      var selector = 'div[data-role="header"]';
      var $root = $(root || document);
      var headers = $root.is(selector) ? $root : $root.find(selector);
      headers.each(function () { decorateHeader(this); });
    } catch (ignored) { /* never break Orthanc Explorer */ }
  }

  /** A study's or series' page gets "Open in viewer" (zoom, window/level, scrolling, cine). */
  function viewerLink(page) {
    var kind = page && page.id;
    if (kind !== 'study' && kind !== 'series') return;
    var m = /uuid=([0-9a-f-]{44})/.exec(window.location.hash);
    var $content = $(page).find('div[data-role="content"]').first();
    $content.children('.onas-viewer').remove();
    if (!m) return;
    var link = $('<a class="onas-viewer" id="onas-viewer-link" rel="external" data-ajax="false"></a>')
      .attr('href', '/ui/viewer#' + kind + '=' + m[1]).text('Open in viewer')
      .css({ display: 'inline-block', margin: '0 0 8px', fontWeight: 'bold' });
    $content.prepend(link);
  }

  try {
    $(document).bind('pagebeforeshow', function (event) {
      try { viewerLink(event.target); } catch (ignored) { /* never break Orthanc Explorer */ }
    });
    $(document).ajaxError(function (event, xhr) {
      if (!xhr || (xhr.status !== 401 && xhr.status !== 403) || redirecting || checking) return;
      // 403 is also how the role policy refuses an action: only a gone session signs out.
      checkSession(function (profile) {
        notice('Not allowed for your role (' + profile.user.role + ').');
      });
    });
    $(document).bind('pagebeforecreate pagecreate pagebeforeshow pageshow', function (event) {
      decorate(event.target);
      if (event.type === 'pagebeforeshow') markActive(event.target);
    });
    $(function () {
      // Orthanc warns of an "insecure setup" because its own Basic auth is off; here every
      // request passes the plugin's two-factor login instead, so the warning is wrong.
      $('<style>.warning-insecure{display:none !important}</style>').appendTo('head');
      decorate(document);
      if (!$('#onas-account-link').length) {
        markActive($.mobile && $.mobile.activePage ? $.mobile.activePage : document);
      }
    });
  } catch (ignored) { /* never break Orthanc Explorer */ }
}());
