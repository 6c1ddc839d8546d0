// Passkeys: the only page script WebAuthn needs. A form with data-passkey="get" or "create"
// stays hidden unless this browser has WebAuthn; on submit, the script asks the form's
// data-options URL for the options (posting the form's fields: flow or csrf, name), runs
// navigator.credentials, writes the answer into the form's "credential" field as JSON with
// base64url fields, and submits the form like any other: the server answers with a page or a
// redirect. An input with autocomplete="username webauthn" and data-passkey-form="<form id>"
// also offers passkeys in the browser's autofill (conditional mediation). Every other way to
// sign in works without this script.
(function () {
  'use strict';
  if (!window.PublicKeyCredential || !navigator.credentials) return;

  function b64u(buf) {
    var bytes = new Uint8Array(buf), s = '';
    for (var i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
    return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }
  function unb64u(s) {
    var bin = atob(s.replace(/-/g, '+').replace(/_/g, '/'));
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  function decodeList(list) {
    (list || []).forEach(function (c) { c.id = unb64u(c.id); });
  }
  function show(form, text) {
    var status = document.getElementById(form.dataset.status || 'status');
    if (!status) {
      status = document.createElement('p');
      status.id = form.dataset.status || 'status';
      form.parentNode.insertBefore(status, form);
    }
    status.hidden = !text;
    status.className = 'error';
    status.setAttribute('role', 'alert');
    status.textContent = text || '';
  }
  function fields(form) {
    var body = new URLSearchParams();
    Array.prototype.forEach.call(form.elements, function (el) {
      if (el.name && el.name !== 'credential') body.append(el.name, el.value);
    });
    return body;
  }
  function options(form) {
    return fetch(form.dataset.options, {
      method: 'POST', body: fields(form), credentials: 'same-origin',
      headers: { Accept: 'application/json' }
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (j) {
        if (r.ok && j.publicKey) return j.publicKey;
        throw new Error(j.error || (r.status === 404 ? 'Passkeys are not available here.' : 'This page has expired: reload it and try again.'));
      });
    });
  }
  function registration(cred) {
    var r = cred.response;
    return {
      id: cred.id, rawId: b64u(cred.rawId), type: cred.type,
      clientDataJSON: b64u(r.clientDataJSON), attestationObject: b64u(r.attestationObject),
      transports: typeof r.getTransports === 'function' ? r.getTransports() : []
    };
  }
  function assertion(cred) {
    var r = cred.response;
    return {
      id: cred.id, rawId: b64u(cred.rawId), type: cred.type,
      clientDataJSON: b64u(r.clientDataJSON), authenticatorData: b64u(r.authenticatorData),
      signature: b64u(r.signature), userHandle: r.userHandle ? b64u(r.userHandle) : null
    };
  }
  function send(form, answer) {
    // What the options request needed (a password, a code) is not sent again.
    Array.prototype.forEach.call(form.querySelectorAll('input[type=password], input[name=code]'), function (el) { el.value = ''; });
    form.elements.credential.value = JSON.stringify(answer);
    HTMLFormElement.prototype.submit.call(form);
  }
  function message(e) {
    if (e && e.name === 'NotAllowedError') return 'The passkey request was cancelled or timed out. Try again, or use another way.';
    if (e && e.name === 'InvalidStateError') return 'This passkey is registered already.';
    return (e && e.message) || 'The passkey did not work. Try again, or use another way.';
  }

  var conditional = null; // the AbortController of a pending autofill request
  function abortConditional() {
    if (conditional) { conditional.abort(); conditional = null; }
  }

  function run(form) {
    abortConditional();
    show(form, '');
    var button = form.querySelector('button');
    if (button) button.disabled = true;
    options(form).then(function (o) {
      o.challenge = unb64u(o.challenge);
      if (form.dataset.passkey === 'create') {
        o.user.id = unb64u(o.user.id);
        decodeList(o.excludeCredentials);
        return navigator.credentials.create({ publicKey: o }).then(function (c) { send(form, registration(c)); });
      }
      decodeList(o.allowCredentials);
      return navigator.credentials.get({ publicKey: o }).then(function (c) { send(form, assertion(c)); });
    }).catch(function (e) {
      if (button) button.disabled = false;
      show(form, message(e));
    });
  }

  Array.prototype.forEach.call(document.querySelectorAll('form[data-passkey]'), function (form) {
    form.hidden = false;
    form.addEventListener('submit', function (ev) { ev.preventDefault(); run(form); });
  });

  var input = document.querySelector('input[data-passkey-form]');
  var autofillForm = input && document.getElementById(input.dataset.passkeyForm);
  if (autofillForm && typeof PublicKeyCredential.isConditionalMediationAvailable === 'function') {
    PublicKeyCredential.isConditionalMediationAvailable().then(function (ok) {
      if (!ok) return;
      var controller = new AbortController();
      conditional = controller;
      return options(autofillForm).then(function (o) {
        o.challenge = unb64u(o.challenge);
        decodeList(o.allowCredentials);
        return navigator.credentials.get({ publicKey: o, mediation: 'conditional', signal: controller.signal });
      }).then(function (c) {
        if (c && conditional === controller) send(autofillForm, assertion(c));
      });
    }).catch(function () { /* aborted for the button, or no autofill: nothing to say */ });
  }
})();
