/*
 * Projectrak Outgoing Webhooks: the administration page (Projectrak Administration -> Outgoing webhooks).
 *
 * One page behind two doors. Under Connect it is served as is, plain JavaScript with no build step; its only
 * outside dependency is Atlassian's `AP` (all.js), used for context tokens (AP.context.getToken) and iframe sizing
 * (AP.resize). Under Forge the same file is bundled by ui/ (esbuild) behind ui/src/forge-entry.js, which sets
 * `window.projectrakAdminTransport` (calls through `invokeRemote` of @forge/bridge) before this script runs.
 * Every piece of data is put in the page with document.createElement + textContent: nothing from the API is ever
 * parsed as HTML.
 *
 * The page talks to the JSON API of CONTRACT.md section 7 through one transport, `send(method, path, body)`,
 * chosen at start: Connect's sends `Authorization: JWT <context token>` with fetch.
 */
(function () {
  'use strict';

  var REFRESH_MS = 15000;
  var HOUR_MS = 3600 * 1000;
  var CHART_LIMIT = 200;
  var CHART_MAX_PAGES = 5;
  var CHART_MAX_AGE_MS = 5 * 60 * 1000;
  var DELIVERY_PAGE = 20;
  var TOKEN_TIMEOUT_MS = 15000;
  var SVG_NS = 'http://www.w3.org/2000/svg';

  var HTTP_REASONS = {
    200: 'OK', 201: 'Created', 202: 'Accepted', 204: 'No Content',
    301: 'Moved Permanently', 302: 'Found', 303: 'See Other', 307: 'Temporary Redirect', 308: 'Permanent Redirect',
    400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed',
    408: 'Request Timeout', 409: 'Conflict', 410: 'Gone', 413: 'Payload Too Large', 415: 'Unsupported Media Type',
    422: 'Unprocessable Content', 429: 'Too Many Requests',
    500: 'Internal Server Error', 501: 'Not Implemented', 502: 'Bad Gateway', 503: 'Service Unavailable',
    504: 'Gateway Timeout'
  };

  /* ------------------------------------------------------------------ small DOM helpers */

  function el(tag, opts) {
    var node = document.createElement(tag);
    if (opts) {
      if (opts.cls) node.className = opts.cls;
      if (opts.text != null) node.textContent = String(opts.text);
      if (opts.testid) node.setAttribute('data-testid', opts.testid);
      if (opts.attrs) {
        Object.keys(opts.attrs).forEach(function (k) {
          if (opts.attrs[k] != null) node.setAttribute(k, String(opts.attrs[k]));
        });
      }
    }
    for (var i = 2; i < arguments.length; i++) {
      var child = arguments[i];
      if (child == null || child === false) continue;
      node.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
    }
    return node;
  }

  function svgEl(tag, attrs) {
    var node = document.createElementNS(SVG_NS, tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    }
    return node;
  }

  function button(text, opts) {
    opts = opts || {};
    var b = el('button', {
      cls: 'btn ' + (opts.kind ? 'btn-' + opts.kind : 'btn-default') + (opts.compact ? ' btn-compact' : ''),
      text: text, testid: opts.testid, attrs: Object.assign({ type: opts.type || 'button' }, opts.attrs || {})
    });
    if (opts.onClick) b.addEventListener('click', opts.onClick);
    return b;
  }

  /* Text with <wbr> break opportunities after / ? & = (URLs wrap at their parts; textContent stays the same). */
  function setBreakableText(node, text) {
    if (node.textContent === text) return;
    clear(node);
    var first = true;
    String(text).split(/(?<=[\/?&=#])/).forEach(function (part) {
      for (var i = 0; i < part.length; i += 24) {
        if (!first) node.appendChild(document.createElement('wbr'));
        node.appendChild(document.createTextNode(part.slice(i, i + 24)));
        first = false;
      }
    });
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function lozenge(status, testid) {
    var text, kind;
    if (status === 'OK') { text = 'OK'; kind = 'success'; }
    else if (status === 'ERROR') { text = 'ERROR'; kind = 'removed'; }
    else if (status == null || status === '') { text = 'NEVER RUN'; kind = 'default'; }
    else { text = String(status); kind = 'default'; }
    return el('span', { cls: 'lozenge lozenge-' + kind, text: text, testid: testid });
  }

  function setBusy(btn, busy) {
    if (!btn) return;
    btn.disabled = !!busy;
    if (busy) btn.setAttribute('aria-busy', 'true'); else btn.removeAttribute('aria-busy');
  }

  /* ------------------------------------------------------------------ Connect glue */

  var resizeQueued = false;

  function resize() {
    if (resizeQueued) return;
    resizeQueued = true;
    var run = function () {
      resizeQueued = false;
      try {
        if (window.AP && typeof window.AP.resize === 'function') window.AP.resize();
      } catch (e) { /* not in Jira: nothing to size */ }
    };
    if (window.requestAnimationFrame) window.requestAnimationFrame(run); else setTimeout(run, 0);
  }

  /* A fresh context token for every call: AP.context.getToken(callback), or the promise it may return. */
  function getToken() {
    return new Promise(function (resolve, reject) {
      var AP = window.AP;
      if (!AP || !AP.context || typeof AP.context.getToken !== 'function') {
        reject(new ApiError(0, 'no_connect',
          'This page must be opened from Jira: Projectrak Administration → Outgoing webhooks.'));
        return;
      }
      var settled = false;
      var timer = setTimeout(function () {
        fail(new Error('Jira did not hand over a token in time.'));
      }, TOKEN_TIMEOUT_MS);
      function done(token) {
        if (settled) return;
        if (typeof token !== 'string' || !token) return;  // ignore empty callback calls; the promise may still come
        settled = true;
        clearTimeout(timer);
        resolve(token);
      }
      function fail(err) {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(new ApiError(0, 'no_token', 'Could not get a token from Jira: ' + ((err && err.message) || err)));
      }
      try {
        var result = AP.context.getToken(done);
        if (result && typeof result.then === 'function') result.then(done, fail);
        else if (typeof result === 'string') done(result);
      } catch (e) {
        fail(e);
      }
    });
  }

  /* ------------------------------------------------------------------ API client */

  function ApiError(status, code, message) {
    this.status = status;
    this.code = code || '';
    this.message = message || 'Something went wrong.';
  }
  ApiError.prototype = Object.create(Error.prototype);
  ApiError.prototype.name = 'ApiError';

  function readMeta(name) {
    var m = document.querySelector('meta[name="' + name + '"]');
    return m ? (m.getAttribute('content') || '').trim() : '';
  }

  /* The API lives on the add-on itself: the page's own origin, under the path of `api_base` (or `base_url` + /api). */
  function apiRoot() {
    var raw = readMeta('addon-api-base') || readMeta('addon-base-url') || '';
    var path = '';
    try {
      path = new URL(raw || '/', window.location.href).pathname;
    } catch (e) {
      path = '/';
    }
    path = path.replace(/\/+$/, '');
    if (!/\/api$/.test(path)) path += '/api';
    return window.location.origin + path;
  }

  function defaultMessage(status) {
    if (status === 401) return 'Your Jira session could not be verified. Reload the page.';
    if (status === 403) return 'Only Jira administrators can manage outgoing webhooks.';
    if (status === 404) return 'Not found. It may have been deleted meanwhile.';
    if (status === 429) return 'Too many requests. Wait a moment and try again.';
    if (status >= 500) return 'The add-on could not answer (HTTP ' + status + '). Try again in a moment.';
    return 'The request failed (HTTP ' + status + ').';
  }

  /*
   * A transport is `send(method, path, body)`, `path` relative to the API root (e.g. '/webhooks'), resolving to
   * `{status, data}` (data: the parsed JSON body, or null) for every HTTP answer, and rejecting when the add-on
   * could not be asked at all. Connect's: a fresh context token for every call, and fetch.
   */
  function connectTransport() {
    var root = apiRoot();
    return function send(method, path, body) {
      return getToken().then(function (token) {
        var init = {
          method: method,
          headers: {
            'Authorization': 'JWT ' + token,
            'Content-Type': 'application/json',
            'Accept': 'application/json'
          },
          credentials: 'omit',
          cache: 'no-store'
        };
        if (body !== undefined) init.body = JSON.stringify(body);
        return fetch(root + path, init).catch(function () {
          throw new ApiError(0, 'network_error', 'Could not reach the add-on. Check your connection and try again.');
        });
      }).then(function (res) {
        return res.text().then(function (text) {
          var data = null;
          if (text) {
            try { data = JSON.parse(text); } catch (e) { data = null; }
          }
          return { status: res.status, data: data };
        });
      });
    };
  }

  /* Forge's bundle hands its transport over before this script runs; anywhere else the page is Connect's. */
  var send = typeof window.projectrakAdminTransport === 'function' ? window.projectrakAdminTransport : connectTransport();

  function api(method, path, body) {
    return Promise.resolve().then(function () {
      return send(method, path, body);
    }).catch(function (err) {
      if (err instanceof ApiError) throw err;
      throw new ApiError(0, 'network_error', 'Could not reach the add-on: ' + ((err && err.message) || err) +
        '. Check your connection and try again.');
    }).then(function (res) {
      var status = res && res.status;
      var data = res ? res.data : null;
      if (typeof status !== 'number' || status < 200 || status >= 300) {
        var err = (data && typeof data === 'object' && data.error && typeof data.error === 'object') ? data.error : {};
        status = typeof status === 'number' ? status : 0;
        throw new ApiError(status, err.code ? String(err.code) : 'http_' + status,
          err.message ? String(err.message) : defaultMessage(status));
      }
      return { status: status, data: data === undefined ? null : data };
    });
  }

  function idPath(id) {
    return encodeURIComponent(String(id));
  }

  /* ------------------------------------------------------------------ time */

  function parseTime(v) {
    if (v == null || v === '') return null;
    if (typeof v === 'number') return isFinite(v) ? (v < 1e11 ? v * 1000 : v) : null;
    var s = String(v).trim();
    if (/^\d+(\.\d+)?$/.test(s)) return parseTime(Number(s));
    s = s.replace(/^(\d{4}-\d{2}-\d{2}) (\d)/, '$1T$2').replace(/(\.\d{3})\d+/, '$1');
    if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(s)) s += 'Z';  // a naive timestamp is UTC
    var t = Date.parse(s);
    return isNaN(t) ? null : t;
  }

  var rtf = (window.Intl && Intl.RelativeTimeFormat) ? new Intl.RelativeTimeFormat('en', { numeric: 'always' }) : null;

  function relativeTime(ms, now) {
    var diff = (ms - now) / 1000;
    var abs = Math.abs(diff);
    if (abs < 45) return 'just now';
    var value, unit;
    if (abs < 45 * 60) { value = diff / 60; unit = 'minute'; }
    else if (abs < 22 * 3600) { value = diff / 3600; unit = 'hour'; }
    else if (abs < 26 * 86400) { value = diff / 86400; unit = 'day'; }
    else if (abs < 320 * 86400) { value = diff / (30 * 86400); unit = 'month'; }
    else { value = diff / (365 * 86400); unit = 'year'; }
    value = Math.round(value) || (diff < 0 ? -1 : 1);
    if (rtf) return rtf.format(value, unit);
    var n = Math.abs(value);
    var words = n + ' ' + unit + (n === 1 ? '' : 's');
    return value < 0 ? words + ' ago' : 'in ' + words;
  }

  function exactTime(ms) {
    var d = new Date(ms);
    var local;
    try {
      local = d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'long' });
    } catch (e) {
      local = d.toLocaleString();
    }
    return local + ' (' + d.toISOString() + ')';
  }

  function shortTime(ms) {
    var d = new Date(ms);
    try {
      return d.toLocaleString(undefined, {
        year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit'
      });
    } catch (e) {
      return d.toLocaleString();
    }
  }

  function hourLabel(ms) {
    var d = new Date(ms);
    try {
      return d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
    } catch (e) {
      return String(d.getHours()).padStart(2, '0') + ':00';
    }
  }

  /* ------------------------------------------------------------------ formatting */

  function httpText(code) {
    if (code == null || code === '') return '';
    var reason = HTTP_REASONS[Number(code)];
    return 'HTTP ' + code + (reason ? ' ' + reason : '');
  }

  /* The error of an attempt, unless it only restates the HTTP code shown beside it (the sender records a plain
     non-2xx answer as "HTTP 500"). */
  function errorText(code, error) {
    if (error == null || error === '') return '';
    var text = String(error);
    if (code != null && code !== '' && text.trim() === 'HTTP ' + code) return '';
    return text;
  }

  function statusDetailText(code, error) {
    var parts = [];
    var h = httpText(code);
    if (h) parts.push(h);
    var e = errorText(code, error);
    if (e) parts.push(e);
    return parts.join(' · ');
  }

  function disabledText(w) {
    if (w.enabled) return '';
    var r = w.disabled_reason;
    if (r === 'gone') return 'disabled: receiver answered 410 Gone';
    if (r === 'failing') return 'disabled after 5 days of failures';
    if (r == null || r === '' || r === 'manual') return 'disabled';
    return 'disabled: ' + r;
  }

  function prettyBody(body) {
    if (body == null || body === '') return '(empty)';
    if (typeof body === 'string') {
      try { return JSON.stringify(JSON.parse(body), null, 2); } catch (e) { return body; }
    }
    try { return JSON.stringify(body, null, 2); } catch (e) { return String(body); }
  }

  function durationText(ms) {
    if (ms == null || ms === '') return '—';
    var n = Number(ms);
    if (!isFinite(n)) return String(ms);
    return Math.round(n).toLocaleString('en') + ' ms';
  }

  /* ------------------------------------------------------------------ banner (errors) */

  var banner = document.getElementById('banner');
  var bannerMessages = new Map();

  function showError(title, err, key) {
    var message = (err && err.message) ? err.message : String(err || 'Something went wrong.');
    key = key || (title + '|' + message);
    var existing = bannerMessages.get(key);
    if (existing) existing.remove();
    var close = button('×', { kind: 'subtle', compact: true, attrs: { 'aria-label': 'Dismiss', title: 'Dismiss' } });
    var box = el('div', { cls: 'section-message section-message-error', attrs: { 'data-code': err && err.code } },
      el('span', { cls: 'section-message-icon', attrs: { 'aria-hidden': 'true' }, text: '!' }),
      el('div', { cls: 'section-message-body' },
        el('strong', { cls: 'section-message-title', text: title }),
        el('span', { cls: 'section-message-text', text: message })),
      close);
    close.addEventListener('click', function () { clearError(key); });
    bannerMessages.set(key, box);
    banner.insertBefore(box, banner.firstChild);
    while (banner.children.length > 3) {
      var last = banner.lastElementChild;
      bannerMessages.forEach(function (v, k) { if (v === last) bannerMessages.delete(k); });
      last.remove();
    }
    resize();
  }

  function clearError(key) {
    var box = bannerMessages.get(key);
    if (box) {
      box.remove();
      bannerMessages.delete(key);
      resize();
    }
  }

  /* ------------------------------------------------------------------ the one-time secret panel */

  var secretPanel = document.getElementById('secret-panel');
  var secretHome = document.getElementById('secret-home');
  var secretValue = document.getElementById('secret-value');
  var secretFor = document.getElementById('secret-for');
  var secretNote = document.getElementById('secret-note');
  var copyFeedback = document.getElementById('copy-feedback');
  var secretOwner = null;  // webhook id whose row holds the panel, or null when it sits under the create form

  function showSecret(secret, webhookName, container, owner, note) {
    secretValue.textContent = secret || '';
    secretFor.textContent = '“' + (webhookName || 'webhook') + '”';
    secretNote.textContent = note;
    copyFeedback.textContent = '';
    secretOwner = owner == null ? null : String(owner);
    var previous = secretPanel.parentNode;
    container.appendChild(secretPanel);
    if (previous && previous !== container && previous.__syncDetail) previous.__syncDetail();
    secretPanel.hidden = false;
    resize();
    try { secretPanel.focus({ preventScroll: true }); } catch (e) { /* old browsers */ }
  }

  function hideSecret() {
    var host = secretPanel.parentNode;
    secretValue.textContent = '';
    secretPanel.hidden = true;
    secretOwner = null;
    secretHome.appendChild(secretPanel);
    if (host && host.__syncDetail) host.__syncDetail();
    resize();
  }

  function copyText(text) {
    if (navigator.clipboard && typeof navigator.clipboard.writeText === 'function') {
      return navigator.clipboard.writeText(text).then(function () { return true; }, function () { return fallbackCopy(text); });
    }
    return Promise.resolve(fallbackCopy(text));
  }

  function fallbackCopy(text) {
    var area = el('textarea', { cls: 'offscreen', attrs: { readonly: '', 'aria-hidden': 'true' } });
    area.value = text;
    document.body.appendChild(area);
    var ok = false;
    try {
      area.select();
      area.setSelectionRange(0, text.length);
      ok = document.execCommand && document.execCommand('copy');
    } catch (e) {
      ok = false;
    }
    area.remove();
    return !!ok;
  }

  function selectSecretText() {
    try {
      var sel = window.getSelection();
      sel.removeAllRanges();
      var range = document.createRange();
      range.selectNodeContents(secretValue);
      sel.addRange(range);
    } catch (e) { /* nothing more we can do */ }
  }

  document.getElementById('secret-copy').addEventListener('click', function () {
    var text = secretValue.textContent;
    copyText(text).then(function (ok) {
      if (ok) {
        copyFeedback.textContent = 'Copied to the clipboard.';
      } else {
        selectSecretText();
        copyFeedback.textContent = 'The browser blocked copying: the secret is selected, press Ctrl+C (⌘C) to copy it.';
      }
    });
  });
  document.getElementById('secret-dismiss').addEventListener('click', hideSecret);

  /* ------------------------------------------------------------------ create form */

  var createForm = document.getElementById('create-form');
  var createName = document.getElementById('create-name');
  var createUrl = document.getElementById('create-url');
  var createEnabled = document.getElementById('create-enabled');
  var createSubmit = document.getElementById('create-submit');
  var createError = document.getElementById('create-error');

  function errorField(err) {
    var code = (err.code || '').toLowerCase();
    var msg = (err.message || '').toLowerCase();
    if (/url|address|scheme|https|host|private/.test(code)) return 'url';
    if (/name/.test(code)) return 'name';
    if (/\burls?\b|https|address|host/.test(msg)) return 'url';
    if (/\bname\b/.test(msg)) return 'name';
    return 'form';
  }

  function placeFieldError(errorNode, inputs, where, message) {
    Object.keys(inputs).forEach(function (k) {
      inputs[k].removeAttribute('aria-invalid');
      inputs[k].removeAttribute('aria-describedby');
    });
    var target = inputs[where];
    if (target) {
      target.parentNode.appendChild(errorNode);
      target.setAttribute('aria-invalid', 'true');
      target.setAttribute('aria-describedby', errorNode.id);
    }
    errorNode.setAttribute('data-field', where);
    errorNode.textContent = message;
    errorNode.hidden = false;
    resize();
  }

  function clearFieldError(errorNode, inputs) {
    errorNode.hidden = true;
    errorNode.textContent = '';
    errorNode.removeAttribute('data-field');
    Object.keys(inputs).forEach(function (k) {
      inputs[k].removeAttribute('aria-invalid');
      inputs[k].removeAttribute('aria-describedby');
    });
  }

  var createInputs = { name: createName, url: createUrl };
  var createErrorHome = createError.parentNode;

  function clearCreateError() {
    clearFieldError(createError, createInputs);
    createErrorHome.insertBefore(createError, secretHome);
  }

  createName.addEventListener('input', function () { if (createError.getAttribute('data-field') === 'name') clearCreateError(); });
  createUrl.addEventListener('input', function () { if (createError.getAttribute('data-field') === 'url') clearCreateError(); });

  createForm.addEventListener('submit', function (ev) {
    ev.preventDefault();
    clearCreateError();
    var payload = { name: createName.value.trim(), url: createUrl.value.trim(), enabled: !!createEnabled.checked };
    setBusy(createSubmit, true);
    api('POST', '/webhooks', payload).then(function (res) {
      var data = res.data || {};
      var hook = (data.webhook && typeof data.webhook === 'object') ? data.webhook : data;
      var secret = data.secret || hook.secret;
      mutated();
      createForm.reset();
      createEnabled.checked = true;
      if (hook && hook.id != null) {
        state.webhooks = state.webhooks.filter(function (w) { return String(w.id) !== String(hook.id); });
        state.webhooks.push(hook);
        renderList(state.webhooks);
      }
      if (secret) {
        showSecret(secret, hook.name || payload.name, secretHome, null,
          'Copy it now and configure it in your receiver: it is shown only once.');
      }
      loadList();
    }, function (err) {
      if (err.status >= 400 && err.status < 500 && err.status !== 401 && err.status !== 403) {
        var where = errorField(err);
        placeFieldError(createError, createInputs, where, err.message);
        if (where === 'form') createErrorHome.insertBefore(createError, secretHome);
        (where === 'name' ? createName : createUrl).focus();
      } else {
        showError('Could not create the webhook', err);
      }
    }).then(function () {
      setBusy(createSubmit, false);
    });
  });

  /* ------------------------------------------------------------------ the list */

  var table = document.getElementById('webhooks-table');
  var thead = table.tHead;
  var stateBody = document.getElementById('state-body');
  var stateCell = document.getElementById('state-cell');
  var countNode = document.getElementById('webhook-count');

  var state = {
    webhooks: [],
    rows: new Map(),        // id -> row view
    charts: new Map(),      // id -> {key, fetchedAt, items, error}
    loading: null,
    reloadAfter: false,
    mutations: 0,           // bumped by every change the page makes, to drop list answers that predate it
    loaded: false,
    openEditor: null,       // row view with an open edit form or confirmation
    openDeliveries: null    // row view with the delivery log open
  };

  /* Loads the list. A call while a load is running queues one more load after it, so a change made meanwhile
     (create, edit, delete) is never overwritten by an answer computed before it. */
  function loadList() {
    if (state.loading) {
      state.reloadAfter = true;
      return state.loading;
    }
    state.reloadAfter = false;
    state.mutations = state.mutations || 0;
    var seenMutations = state.mutations;
    state.loading = api('GET', '/webhooks').then(function (res) {
      if (state.mutations !== seenMutations) {  // a change landed while this answer was on its way
        state.reloadAfter = true;
        return;
      }
      var list = Array.isArray(res.data) ? res.data : (res.data && Array.isArray(res.data.items) ? res.data.items : []);
      state.webhooks = list;
      state.loaded = true;
      clearError('list');
      renderList(list);
      refreshCharts(list);
    }, function (err) {
      showError('Could not load the webhooks', err, 'list');
      if (!state.loaded) {
        stateCell.textContent = 'The webhooks could not be loaded.';
        stateBody.hidden = false;
      }
      resize();
    }).then(function () {
      state.loading = null;
      if (state.reloadAfter) loadList();
    });
    return state.loading;
  }

  function mutated() {
    state.mutations = (state.mutations || 0) + 1;
  }

  function renderList(list) {
    var now = Date.now();
    var seen = new Set();
    var prev = thead;
    list.forEach(function (w) {
      var key = String(w.id);
      seen.add(key);
      var row = state.rows.get(key);
      if (!row) {
        row = createRow(w);
        state.rows.set(key, row);
      }
      updateRow(row, w, now);
      if (row.tbody.previousElementSibling !== prev || row.tbody.parentNode !== table) prev.after(row.tbody);
      prev = row.tbody;
    });
    state.rows.forEach(function (row, key) {
      if (!seen.has(key)) removeRow(row);
    });
    if (stateBody.previousElementSibling !== prev) table.appendChild(stateBody);
    if (list.length === 0) {
      stateCell.textContent = 'No webhooks yet. Create one above to send project field changes to another system.';
      stateCell.setAttribute('data-testid', 'list-state');
      stateBody.hidden = false;
    } else {
      stateBody.hidden = true;
    }
    countNode.textContent = list.length ? '(' + list.length + ')' : '';
    resize();
  }

  function removeRow(row) {
    if (secretOwner === row.key) hideSecret();
    if (state.openEditor === row) state.openEditor = null;
    if (state.openDeliveries === row) state.openDeliveries = null;
    state.rows.delete(row.key);
    state.charts.delete(row.key);
    row.tbody.remove();
    resize();
  }

  function createRow(w) {
    var key = String(w.id);
    var row = { key: key, id: w.id, data: w };

    row.tbody = el('tbody', { cls: 'webhook', testid: 'webhook-row', attrs: { 'data-webhook-id': key } });
    row.main = el('tr', { cls: 'webhook-main' });

    row.name = el('div', { cls: 'wh-name', testid: 'webhook-name' });
    row.url = el('div', { cls: 'wh-url', testid: 'webhook-url' });
    row.main.appendChild(el('td', { cls: 'col-name' }, row.name, row.url));

    row.statusCell = el('td', { cls: 'col-status' });
    row.status = lozenge(null, 'webhook-status');
    row.statusDetail = el('div', { cls: 'status-detail', testid: 'webhook-status-detail' });
    row.statusCell.appendChild(row.status);
    row.statusCell.appendChild(row.statusDetail);
    row.main.appendChild(row.statusCell);

    row.last = el('time', { cls: 'last-exec', testid: 'webhook-last-execution' });
    row.main.appendChild(el('td', { cls: 'col-last' }, row.last));

    row.chartCell = el('td', { cls: 'col-chart' });
    row.main.appendChild(row.chartCell);

    row.toggle = el('button', {
      cls: 'toggle', testid: 'action-toggle', attrs: { type: 'button', role: 'switch', 'aria-checked': 'false' }
    }, el('span', { cls: 'toggle-track', attrs: { 'aria-hidden': 'true' } }, el('span', { cls: 'toggle-knob' })));
    row.toggleLabel = el('span', { cls: 'toggle-label' });
    row.toggle.appendChild(row.toggleLabel);
    row.toggle.addEventListener('click', function () { toggleEnabled(row); });
    row.disabledReason = el('div', { cls: 'disabled-reason', testid: 'webhook-disabled-reason' });
    row.main.appendChild(el('td', { cls: 'col-enabled' }, row.toggle, row.disabledReason));

    var actions = el('div', { cls: 'actions' },
      button('Send test', { compact: true, testid: 'action-test', onClick: function () { sendTest(row); } }),
      button('Edit', { compact: true, testid: 'action-edit', onClick: function () { openEdit(row); } }),
      button('Deliveries', { compact: true, testid: 'action-deliveries', onClick: function () { toggleDeliveries(row); } }),
      button('Rotate secret', { compact: true, testid: 'action-rotate', onClick: function () { confirmRotate(row); } }),
      button('Delete', { compact: true, kind: 'danger-subtle', testid: 'action-delete', onClick: function () { confirmDelete(row); } }));
    row.actionButtons = actions;
    row.deliveriesButton = actions.querySelector('[data-testid="action-deliveries"]');
    row.testButton = actions.querySelector('[data-testid="action-test"]');
    row.main.appendChild(el('td', { cls: 'col-actions' }, actions));

    row.tbody.appendChild(row.main);

    // Everything that opens under a webhook lives in a second row of the same <tbody>.
    row.detailRow = el('tr', { cls: 'webhook-detail' });
    row.detailCell = el('td', { attrs: { colspan: 6 } });
    row.editorSlot = el('div', { cls: 'slot slot-editor' });
    row.messageSlot = el('div', { cls: 'slot slot-message' });
    row.testSlot = el('div', { cls: 'slot slot-test' });
    row.secretSlot = el('div', { cls: 'slot slot-secret' });
    row.deliveriesSlot = el('div', { cls: 'slot slot-deliveries' });
    [row.editorSlot, row.messageSlot, row.testSlot, row.secretSlot, row.deliveriesSlot].forEach(function (s) {
      row.detailCell.appendChild(s);
    });
    row.secretSlot.__syncDetail = function () { syncDetail(row); };
    row.detailRow.appendChild(row.detailCell);
    row.detailRow.hidden = true;
    row.tbody.appendChild(row.detailRow);
    return row;
  }

  function syncDetail(row) {
    var any = [row.editorSlot, row.messageSlot, row.testSlot, row.secretSlot, row.deliveriesSlot].some(function (s) {
      return s.childElementCount > 0 && Array.prototype.some.call(s.children, function (c) { return !c.hidden; });
    });
    row.detailRow.hidden = !any;
    row.tbody.classList.toggle('is-expanded', any);
    resize();
  }

  function updateRow(row, w, now) {
    row.data = w;
    row.tbody.setAttribute('data-enabled', w.enabled ? 'true' : 'false');
    row.tbody.classList.toggle('is-disabled', !w.enabled);

    row.name.textContent = w.name || '(no name)';
    setBreakableText(row.url, w.url || '');
    row.url.title = w.url || '';

    var statusValue = w.last_status == null ? null : w.last_status;
    var fresh = lozenge(statusValue, 'webhook-status');
    if (fresh.textContent !== row.status.textContent || fresh.className !== row.status.className) {
      row.statusCell.replaceChild(fresh, row.status);
      row.status = fresh;
    }
    row.statusDetail.textContent = statusValue == null ? '' : statusDetailText(w.last_status_code, w.last_error);
    row.statusDetail.title = row.statusDetail.textContent;

    var t = parseTime(w.last_execution_at);
    if (t == null) {
      row.last.textContent = 'Never';
      row.last.removeAttribute('datetime');
      row.last.removeAttribute('title');
    } else {
      row.last.textContent = relativeTime(t, now);
      row.last.setAttribute('datetime', new Date(t).toISOString());
      row.last.title = exactTime(t);
    }

    if (!row.toggle.hasAttribute('aria-busy')) {
      row.toggle.setAttribute('aria-checked', w.enabled ? 'true' : 'false');
      row.toggleLabel.textContent = w.enabled ? 'Enabled' : 'Disabled';
    }
    row.disabledReason.textContent = disabledText(w);
    row.disabledReason.hidden = !!w.enabled;

    drawChart(row, now);
  }

  function refreshRelativeTimes() {
    var now = Date.now();
    state.rows.forEach(function (row) {
      var t = parseTime(row.data.last_execution_at);
      if (t != null) row.last.textContent = relativeTime(t, now);
      drawChart(row, now);
    });
  }

  /* ------------------------------------------------------------------ 24-hour chart */

  function chartKey(w) {
    return String(w.last_execution_at || '') + '|' + String(w.last_status || '');
  }

  function refreshCharts(list) {
    var now = Date.now();
    var queue = list.filter(function (w) {
      var c = state.charts.get(String(w.id));
      return !c || c.key !== chartKey(w) || now - c.fetchedAt > CHART_MAX_AGE_MS;
    });
    var running = 0;
    function next() {
      while (running < 4 && queue.length) {
        running++;
        loadChart(queue.shift()).then(function () { running--; next(); });
      }
    }
    next();
  }

  function loadChart(w) {
    var key = String(w.id);
    var since = Date.now() - 25 * HOUR_MS;
    var items = [];
    var pages = 0;
    function page(before) {
      // bodies=0: the chart needs times and statuses only, never the request bodies.
      var q = '?bodies=0&limit=' + CHART_LIMIT + (before ? '&before=' + encodeURIComponent(before) : '');
      return api('GET', '/webhooks/' + idPath(w.id) + '/deliveries' + q).then(function (res) {
        var data = res.data || {};
        var got = Array.isArray(data.items) ? data.items : [];
        items = items.concat(got);
        pages++;
        var oldest = got.length ? parseTime(got[got.length - 1].at) : null;
        if (data.next && pages < CHART_MAX_PAGES && oldest != null && oldest > since) return page(data.next);
        return null;
      });
    }
    return page(null).then(function () {
      state.charts.set(key, { key: chartKey(w), fetchedAt: Date.now(), items: items, error: null });
      clearError('chart');
    }, function (err) {
      var old = state.charts.get(key);
      state.charts.set(key, {
        key: chartKey(w), fetchedAt: Date.now(), items: old ? old.items : null, error: err
      });
      if (err.status !== 404) showError('Could not load the delivery history', err, 'chart');
    }).then(function () {
      var row = state.rows.get(key);
      if (row) drawChart(row, Date.now());
    });
  }

  function buckets(items, now) {
    var end = new Date(now);
    end.setMinutes(0, 0, 0);
    var start = end.getTime() - 23 * HOUR_MS;       // 24 clock hours, the last one being the current hour
    var out = [];
    for (var i = 0; i < 24; i++) out.push({ from: start + i * HOUR_MS, ok: 0, err: 0 });
    (items || []).forEach(function (it) {
      var t = parseTime(it.at);
      if (t == null || t < start || t > now + 60000) return;
      var idx = Math.min(23, Math.floor((t - start) / HOUR_MS));
      if (it.status === 'OK') out[idx].ok++; else out[idx].err++;
    });
    return out;
  }

  function drawChart(row, now) {
    var info = state.charts.get(row.key);
    var W = 24 * 5 - 1, H = 24;
    var svg = svgEl('svg', {
      width: W, height: H, viewBox: '0 0 ' + W + ' ' + H, class: 'spark', role: 'img', focusable: 'false'
    });
    svg.setAttribute('data-testid', 'webhook-chart');
    if (!info || !info.items) {
      var pending = !info;
      svg.setAttribute('aria-label', pending ? 'Loading the last 24 hours' : 'The last 24 hours could not be loaded');
      svg.setAttribute('class', 'spark ' + (pending ? 'is-loading' : 'is-error'));
      var t0 = svgEl('title');
      t0.textContent = svg.getAttribute('aria-label');
      svg.appendChild(t0);
      for (var j = 0; j < 24; j++) svg.appendChild(svgEl('rect', { x: j * 5, y: H - 1, width: 4, height: 1, class: 'bar-empty' }));
      row.chartCell.replaceChildren(svg);
      return;
    }
    var bs = buckets(info.items, now);
    var max = 4, okTotal = 0, errTotal = 0;  // a scale of at least 4 attempts: one attempt is not a full bar
    bs.forEach(function (b) { max = Math.max(max, b.ok + b.err); okTotal += b.ok; errTotal += b.err; });
    var label = 'Last 24 hours: ' + okTotal + ' OK, ' + errTotal + ' ERROR';
    svg.setAttribute('aria-label', label);
    svg.setAttribute('data-ok', okTotal);
    svg.setAttribute('data-error', errTotal);
    var title = svgEl('title');
    title.textContent = label;
    svg.appendChild(title);
    bs.forEach(function (b, i) {
      var g = svgEl('g');
      var tip = svgEl('title');
      tip.textContent = hourLabel(b.from) + '–' + hourLabel(b.from + HOUR_MS) + ': ' + b.ok + ' OK, ' + b.err + ' ERROR';
      g.appendChild(tip);
      var x = i * 5;
      var total = b.ok + b.err;
      // an invisible full-height rect makes the whole hour hoverable
      g.appendChild(svgEl('rect', { x: x, y: 0, width: 5, height: H, class: 'bar-hit' }));
      if (total === 0) {
        g.appendChild(svgEl('rect', { x: x, y: H - 1, width: 4, height: 1, class: 'bar-empty' }));
      } else {
        var h = Math.max(2, Math.round(total / max * H));
        var errH = b.err ? Math.max(1, Math.round(h * b.err / total)) : 0;
        var okH = h - errH;
        if (b.ok && okH < 1) { okH = 1; errH = h - 1; }
        if (okH > 0) g.appendChild(svgEl('rect', { x: x, y: H - okH, width: 4, height: okH, class: 'bar-ok' }));
        if (errH > 0) g.appendChild(svgEl('rect', { x: x, y: H - okH - errH, width: 4, height: errH, class: 'bar-err' }));
      }
      svg.appendChild(g);
    });
    row.chartCell.replaceChildren(svg);
  }

  /* ------------------------------------------------------------------ row actions */

  function rowMessage(row, text) {
    clear(row.messageSlot);
    if (text) {
      var close = button('×', { kind: 'subtle', compact: true, attrs: { 'aria-label': 'Dismiss', title: 'Dismiss' } });
      close.addEventListener('click', function () { rowMessage(row, null); });
      row.messageSlot.appendChild(el('div', { cls: 'inline-message inline-error', testid: 'row-error' },
        el('span', { text: text }), close));
    }
    syncDetail(row);
  }

  function actionFailed(row, what, err) {
    showError(what, err);
    rowMessage(row, what + ': ' + err.message);
    if (err.status === 404) loadList();
  }

  function applyWebhook(row, w) {
    if (!w || w.id == null) return;
    mutated();
    var idx = state.webhooks.findIndex(function (x) { return String(x.id) === row.key; });
    if (idx >= 0) state.webhooks[idx] = w;
    updateRow(row, w, Date.now());
  }

  function toggleEnabled(row) {
    var want = !row.data.enabled;
    row.toggle.setAttribute('aria-checked', want ? 'true' : 'false');
    row.toggleLabel.textContent = want ? 'Enabled' : 'Disabled';
    setBusy(row.toggle, true);
    api('PATCH', '/webhooks/' + idPath(row.id), { enabled: want }).then(function (res) {
      setBusy(row.toggle, false);
      rowMessage(row, null);
      applyWebhook(row, res.data);
      loadList();
    }, function (err) {
      setBusy(row.toggle, false);
      applyWebhook(row, row.data);
      actionFailed(row, want ? 'Could not enable the webhook' : 'Could not disable the webhook', err);
    });
  }

  function closeEditor() {
    var row = state.openEditor;
    state.openEditor = null;
    if (row) {
      clear(row.editorSlot);
      syncDetail(row);
    }
  }

  function openEditorPanel(row, panel, focusNode) {
    closeEditor();
    state.openEditor = row;
    row.editorSlot.appendChild(panel);
    syncDetail(row);
    if (focusNode) focusNode.focus();
  }

  function openEdit(row) {
    if (state.openEditor === row && row.editorSlot.querySelector('form.edit-form')) {
      closeEditor();
      return;
    }
    var w = row.data;
    var nameInput = el('input', {
      cls: 'textfield', testid: 'edit-name',
      attrs: { id: 'edit-name-' + row.key, type: 'text', maxlength: 255, autocomplete: 'off' }
    });
    nameInput.value = w.name || '';
    var urlInput = el('input', {
      cls: 'textfield', testid: 'edit-url',
      attrs: { id: 'edit-url-' + row.key, type: 'url', inputmode: 'url', spellcheck: 'false', autocomplete: 'off' }
    });
    urlInput.value = w.url || '';
    var errorNode = el('div', { cls: 'field-error', testid: 'edit-error', attrs: { id: 'edit-error-' + row.key } });
    errorNode.hidden = true;
    var save = button('Save', { kind: 'primary', type: 'submit', testid: 'edit-save' });
    var cancel = button('Cancel', { kind: 'subtle', testid: 'edit-cancel', onClick: closeEditor });
    var inputs = { name: nameInput, url: urlInput };
    var form = el('form', { cls: 'edit-form', attrs: { novalidate: '', 'aria-label': 'Edit webhook' } },
      el('div', { cls: 'field field-name' }, el('label', { text: 'Name', attrs: { for: nameInput.id } }), nameInput),
      el('div', { cls: 'field field-url' }, el('label', { text: 'URL', attrs: { for: urlInput.id } }), urlInput),
      el('div', { cls: 'field field-submit' }, el('div', { cls: 'button-group' }, save, cancel)),
      errorNode);
    var errorHome = form;
    nameInput.addEventListener('input', function () { clearFieldError(errorNode, inputs); errorHome.appendChild(errorNode); });
    urlInput.addEventListener('input', function () { clearFieldError(errorNode, inputs); errorHome.appendChild(errorNode); });
    form.addEventListener('keydown', function (ev) { if (ev.key === 'Escape') closeEditor(); });
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      clearFieldError(errorNode, inputs);
      errorHome.appendChild(errorNode);
      var patch = {};
      var name = nameInput.value.trim();
      var url = urlInput.value.trim();
      if (name !== (row.data.name || '')) patch.name = name;
      if (url !== (row.data.url || '')) patch.url = url;
      if (!Object.keys(patch).length) { closeEditor(); return; }
      setBusy(save, true);
      api('PATCH', '/webhooks/' + idPath(row.id), patch).then(function (res) {
        closeEditor();
        rowMessage(row, null);
        applyWebhook(row, res.data);
        loadList();
      }, function (err) {
        setBusy(save, false);
        if (err.status >= 400 && err.status < 500 && err.status !== 401 && err.status !== 403 && err.status !== 404) {
          var where = errorField(err);
          placeFieldError(errorNode, inputs, where, err.message);
          if (where === 'form') errorHome.appendChild(errorNode);
        } else {
          closeEditor();
          actionFailed(row, 'Could not save the webhook', err);
        }
      });
    });
    openEditorPanel(row, form, nameInput);
  }

  function confirmPanel(row, opts) {
    var yes = button(opts.yes, { kind: opts.danger ? 'danger' : 'primary', testid: 'confirm-yes' });
    var no = button('Cancel', { kind: 'subtle', testid: 'confirm-no', onClick: closeEditor });
    var titleId = 'confirm-title-' + row.key;
    var panel = el('div', {
      cls: 'confirm' + (opts.danger ? ' confirm-danger' : ''), testid: 'confirm-dialog',
      attrs: { role: 'alertdialog', 'aria-labelledby': titleId, 'aria-describedby': 'confirm-text-' + row.key }
    },
      el('h3', { text: opts.title, attrs: { id: titleId } }),
      el('p', { text: opts.text, attrs: { id: 'confirm-text-' + row.key } }),
      el('div', { cls: 'button-group' }, yes, no));
    panel.addEventListener('keydown', function (ev) { if (ev.key === 'Escape') closeEditor(); });
    yes.addEventListener('click', function () {
      setBusy(yes, true);
      setBusy(no, true);
      opts.onConfirm().then(function () {
        if (state.openEditor === row) closeEditor();
      }, function () {
        if (state.openEditor === row) closeEditor();
      });
    });
    openEditorPanel(row, panel, no);
  }

  function confirmDelete(row) {
    confirmPanel(row, {
      danger: true,
      title: 'Delete “' + (row.data.name || 'webhook') + '”?',
      text: 'Project field changes will no longer be sent to ' + (row.data.url || 'this URL') +
        '. Pending deliveries are cancelled. This cannot be undone.',
      yes: 'Delete',
      onConfirm: function () {
        return api('DELETE', '/webhooks/' + idPath(row.id)).then(function () {
          mutated();
          state.webhooks = state.webhooks.filter(function (w) { return String(w.id) !== row.key; });
          removeRow(row);
          renderList(state.webhooks);
          loadList();
        }, function (err) {
          if (err.status === 404) {
            removeRow(row);
            loadList();
            return;
          }
          actionFailed(row, 'Could not delete the webhook', err);
        });
      }
    });
  }

  function confirmRotate(row) {
    confirmPanel(row, {
      title: 'Rotate the signing secret of “' + (row.data.name || 'webhook') + '”?',
      text: 'A new secret is created and shown once. For the next 24 hours requests carry signatures with both ' +
        'the old and the new secret, so you have time to update your receiver.',
      yes: 'Rotate secret',
      onConfirm: function () {
        return api('POST', '/webhooks/' + idPath(row.id) + '/rotate-secret').then(function (res) {
          var secret = res.data && res.data.secret;
          closeEditor();
          rowMessage(row, null);
          if (secret) {
            showSecret(secret, row.data.name, row.secretSlot, row.key,
              'This is the new secret; it is shown only once. The previous secret keeps signing alongside it for 24 hours.');
            syncDetail(row);
          }
        }, function (err) {
          actionFailed(row, 'Could not rotate the secret', err);
        });
      }
    });
  }

  function sendTest(row) {
    clear(row.testSlot);
    var result = el('div', { cls: 'test-result is-pending', testid: 'test-result', attrs: { 'aria-live': 'polite' } },
      el('span', { cls: 'spinner', attrs: { 'aria-hidden': 'true' } }),
      el('span', { text: 'Sending a test delivery…' }));
    row.testSlot.appendChild(result);
    syncDetail(row);
    setBusy(row.testButton, true);
    api('POST', '/webhooks/' + idPath(row.id) + '/test').then(function (res) {
      mutated();
      var data = res.data || {};
      var a = (data.attempt && typeof data.attempt === 'object') ? data.attempt : data;
      clear(result);
      result.classList.remove('is-pending');
      result.setAttribute('data-status', a.status || '');
      result.appendChild(el('span', { cls: 'test-label', text: 'Test delivery:' }));
      result.appendChild(lozenge(a.status || 'ERROR', 'test-status'));
      var parts = [];
      if (a.http_code != null) parts.push(httpText(a.http_code));
      if (a.duration_ms != null) parts.push(durationText(a.duration_ms));
      if (errorText(a.http_code, a.error)) parts.push(errorText(a.http_code, a.error));
      result.appendChild(el('span', { cls: 'test-detail', text: parts.join(' · ') || 'no answer details' }));
      var t = parseTime(a.at);
      if (t != null) result.appendChild(el('span', { cls: 'subtle', text: '(' + shortTime(t) + ')' }));
      result.appendChild(closeButtonFor(row, row.testSlot));
      state.charts.delete(row.key);
      loadList();
    }, function (err) {
      clear(result);
      result.classList.remove('is-pending');
      result.classList.add('is-failed');
      result.setAttribute('data-status', 'FAILED');
      result.appendChild(el('span', { cls: 'test-label', text: 'The test was not sent:' }));
      result.appendChild(el('span', { cls: 'test-detail', text: err.message }));
      result.appendChild(closeButtonFor(row, row.testSlot));
      showError('Could not send the test delivery', err);
    }).then(function () {
      setBusy(row.testButton, false);
      syncDetail(row);
    });
  }

  function closeButtonFor(row, slot) {
    var close = button('×', { kind: 'subtle', compact: true, attrs: { 'aria-label': 'Dismiss', title: 'Dismiss' } });
    close.addEventListener('click', function () { clear(slot); syncDetail(row); });
    return close;
  }

  /* ------------------------------------------------------------------ delivery log */

  function toggleDeliveries(row) {
    if (state.openDeliveries === row) {
      closeDeliveries();
      return;
    }
    closeDeliveries();
    state.openDeliveries = row;
    row.deliveriesButton.setAttribute('aria-expanded', 'true');
    row.deliveriesButton.classList.add('is-selected');

    var log = { row: row, next: null, tbody: null };
    var refresh = button('Refresh', { compact: true, testid: 'deliveries-refresh' });
    var close = button('Close', { compact: true, kind: 'subtle', testid: 'deliveries-close', onClick: closeDeliveries });
    var status = el('p', { cls: 'subtle log-state', testid: 'deliveries-state', text: 'Loading deliveries…' });
    var headRow = el('tr');
    ['Time', 'Attempt', 'Status', 'HTTP', 'Duration', 'Error', ''].forEach(function (h, i) {
      headRow.appendChild(el('th', { text: h, attrs: { scope: 'col' }, cls: 'dl-col-' + i }));
    });
    var tableNode = el('table', { cls: 'dyn-table deliveries-table', testid: 'deliveries-table' },
      el('caption', { cls: 'visually-hidden', text: 'Deliveries of ' + (row.data.name || 'webhook') }),
      el('thead', null, headRow));
    tableNode.hidden = true;
    var older = button('Load older', { testid: 'load-older' });
    older.hidden = true;
    var panel = el('section', { cls: 'log-panel', testid: 'deliveries-panel', attrs: { 'aria-label': 'Delivery log' } },
      el('div', { cls: 'log-head' },
        el('h3', { text: 'Delivery log' }, el('span', { cls: 'subtle', text: ' — newest first' })),
        el('div', { cls: 'button-group' }, refresh, close)),
      status, tableNode, el('div', { cls: 'log-foot' }, older));
    log.panel = panel;
    log.table = tableNode;
    log.status = status;
    log.older = older;
    row.log = log;
    row.deliveriesSlot.appendChild(panel);
    syncDetail(row);

    refresh.addEventListener('click', function () {
      setBusy(refresh, true);
      loadDeliveries(row, log, null).then(function () { setBusy(refresh, false); });
    });
    older.addEventListener('click', function () {
      setBusy(older, true);
      loadDeliveries(row, log, log.next).then(function () { setBusy(older, false); });
    });
    loadDeliveries(row, log, null);
  }

  function closeDeliveries() {
    var row = state.openDeliveries;
    state.openDeliveries = null;
    if (!row) return;
    row.log = null;
    row.deliveriesButton.setAttribute('aria-expanded', 'false');
    row.deliveriesButton.classList.remove('is-selected');
    clear(row.deliveriesSlot);
    syncDetail(row);
  }

  function loadDeliveries(row, log, before) {
    var q = '?limit=' + DELIVERY_PAGE + (before ? '&before=' + encodeURIComponent(before) : '');
    return api('GET', '/webhooks/' + idPath(row.id) + '/deliveries' + q).then(function (res) {
      if (row.log !== log) return;
      var data = res.data || {};
      var items = Array.isArray(data.items) ? data.items : [];
      if (!before) {
        // a fresh first page replaces what was shown
        Array.prototype.slice.call(log.table.tBodies).forEach(function (b) { b.remove(); });
      }
      items.forEach(function (item) { log.table.appendChild(deliveryRow(item)); });
      log.next = data.next || null;
      log.older.hidden = !log.next;
      var shown = log.table.tBodies.length;
      log.table.hidden = shown === 0;
      log.status.hidden = shown !== 0;
      log.status.textContent = shown ? '' : 'No deliveries yet. Send a test to see one here.';
      resize();
    }, function (err) {
      if (row.log !== log) return;
      log.status.hidden = false;
      log.status.textContent = 'The deliveries could not be loaded: ' + err.message;
      showError('Could not load the deliveries', err);
    });
  }

  function deliveryRow(item) {
    var tbody = el('tbody', {
      cls: 'delivery', testid: 'delivery-row',
      attrs: { 'data-delivery-id': item.delivery_id, 'data-attempt-id': item.id, 'data-status': item.status }
    });
    var t = parseTime(item.at);
    var time = el('time', { cls: 'dl-time', text: t == null ? '—' : shortTime(t) });
    if (t != null) {
      time.setAttribute('datetime', new Date(t).toISOString());
      time.title = exactTime(t) + ' — ' + relativeTime(t, Date.now());
    }
    var redeliverResult = el('span', { cls: 'redeliver-result', testid: 'redeliver-result', attrs: { 'aria-live': 'polite' } });
    var redeliver = button('Redeliver', { compact: true, testid: 'action-redeliver' });
    redeliver.addEventListener('click', function () {
      setBusy(redeliver, true);
      redeliverResult.className = 'redeliver-result';
      redeliverResult.textContent = '';
      api('POST', '/deliveries/' + idPath(item.delivery_id) + '/redeliver').then(function () {
        redeliverResult.className = 'redeliver-result lozenge lozenge-inprogress';
        redeliverResult.textContent = 'queued';
        redeliverResult.title = 'Queued again with the same webhook-id';
      }, function (err) {
        redeliverResult.className = 'redeliver-result field-error';
        redeliverResult.textContent = err.message;
        showError('Could not redeliver', err);
      }).then(function () {
        setBusy(redeliver, false);
        resize();
      });
    });

    var main = el('tr', { cls: 'delivery-main' },
      el('td', { cls: 'dl-col-0' }, time),
      el('td', { cls: 'dl-col-1 num', text: item.attempt == null ? '—' : '#' + item.attempt }),
      el('td', { cls: 'dl-col-2' }, lozenge(item.status, 'delivery-status')),
      el('td', { cls: 'dl-col-3 num', text: item.http_code == null ? '—' : String(item.http_code), testid: 'delivery-http-code' }),
      el('td', { cls: 'dl-col-4 num', text: durationText(item.duration_ms) }),
      el('td', { cls: 'dl-col-5 dl-error', text: errorText(item.http_code, item.error) }),
      el('td', { cls: 'dl-col-6' }, el('div', { cls: 'redeliver' }, redeliver, redeliverResult)));

    var meta = el('dl', { cls: 'meta' });
    [['webhook-id', item.webhook_id_header], ['Delivery', item.delivery_id], ['Attempt id', item.id]].forEach(function (p) {
      if (p[1] == null || p[1] === '') return;
      meta.appendChild(el('dt', { text: p[0] }));
      meta.appendChild(el('dd', null, el('code', { text: String(p[1]) })));
    });
    var requestBody = el('pre', { cls: 'code-block', testid: 'delivery-request-body', text: prettyBody(item.request_body) });
    var requestBlock = el('div', { cls: 'body-block' }, el('h4', { text: 'Request body' }), requestBody);
    if (item.request_body_truncated) {
      // A list item holds the body's first 2,048 characters; the attempt's own endpoint has the whole body.
      var note = el('p', { cls: 'subtle', testid: 'delivery-request-body-cut', text: 'First 2,048 characters.' });
      var full = button('View full body', { compact: true, testid: 'delivery-request-body-full' });
      full.addEventListener('click', function () {
        full.disabled = true;
        api('GET', '/attempts/' + idPath(item.id)).then(function (res) {
          requestBody.textContent = prettyBody((res.data || {}).request_body);
          note.remove();
          full.remove();
          resize();
        }, function (err) {
          full.disabled = false;
          showError('Could not load the whole request body', err);
        });
      });
      requestBlock.appendChild(note);
      requestBlock.appendChild(full);
    }
    var details = el('details', { cls: 'dl-details', testid: 'delivery-details' },
      el('summary', { text: 'Request and response' }),
      meta,
      el('div', { cls: 'bodies' },
        requestBlock,
        el('div', { cls: 'body-block' },
          el('h4', { text: 'Response body (start)' }),
          el('pre', {
            cls: 'code-block', testid: 'delivery-response-body',
            text: item.response_body_start == null || item.response_body_start === '' ? '(empty)' : String(item.response_body_start)
          }))));
    details.addEventListener('toggle', resize);
    var second = el('tr', { cls: 'delivery-more' }, el('td', { attrs: { colspan: 7 } }, details));
    tbody.appendChild(main);
    tbody.appendChild(second);
    return tbody;
  }

  /* ------------------------------------------------------------------ start */

  if (window.ResizeObserver) {
    new ResizeObserver(function () { resize(); }).observe(document.body);
  }

  loadList();
  setInterval(function () {
    if (document.hidden) return;
    loadList();
    refreshRelativeTimes();
  }, REFRESH_MS);
  document.addEventListener('visibilitychange', function () {
    if (!document.hidden) loadList();
  });
})();
