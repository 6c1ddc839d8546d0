// Sign in with Plex: open the popup synchronously on click (so no popup blocker objects), let
// the server create the PIN, point the popup at Plex, and poll until the server says where to
// go. The Plex token never passes through this page.
(function () {
  'use strict';
  var button = document.getElementById('plex-button');
  if (!button) return;
  var base = button.dataset.base, flow = button.dataset.flow, csrf = button.dataset.csrf;
  var status = document.getElementById('status');
  var tabForm = document.getElementById('plex-tab-form');
  var popup = null, polling = false;

  function show(text, isError) {
    status.hidden = !text;
    status.textContent = text || '';
    status.className = isError ? 'error' : 'muted';
  }
  function form() { return new URLSearchParams({ flow: flow, csrf: csrf }); }
  function post(path) {
    return fetch(base + path, { method: 'POST', body: form(), credentials: 'same-origin', headers: { Accept: 'application/json' } })
      .then(function (r) { return r.json().catch(function () { return { status: 'error', message: 'Unexpected answer (' + r.status + ').' }; }); });
  }
  function closePopup() { try { if (popup && !popup.closed) popup.close(); } catch (e) { /* cross-origin: leave it */ } }
  function fail(message) {
    polling = false;
    closePopup();
    button.disabled = false;
    button.textContent = 'Try again with Plex';
    show(message, true);
  }
  function poll() {
    if (!polling) return;
    post('/login/plex/poll').then(function (j) {
      if (!polling) return;
      if (j.status === 'done') {
        polling = false;
        closePopup();
        window.location.assign(j.redirect);
      } else if (j.status === 'pending') {
        show(j.message || 'Waiting for Plex…', false);
        setTimeout(poll, 1000);
      } else {
        fail(j.message || 'Sign-in with Plex failed.');
      }
    }, function () { setTimeout(poll, 2000); });
  }
  button.addEventListener('click', function () {
    popup = window.open(base + '/login/plex/popup', 'doorman-plex', 'width=600,height=720');
    if (!popup) { tabForm.submit(); return; }
    button.disabled = true;
    show('Opening Plex…', false);
    post('/login/plex/start').then(function (j) {
      if (j.status !== 'started') { fail(j.message || 'Could not start sign-in with Plex.'); return; }
      popup.location.href = j.auth_url;
      polling = true;
      setTimeout(poll, 1000);
    }, function () { fail('Could not start sign-in with Plex.'); });
  });
})();
