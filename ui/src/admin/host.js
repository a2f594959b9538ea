// The two doors of the admin page. Under Forge Custom UI the host frame provides `window.__bridge` (what
// @forge/bridge talks to); under Connect, Atlassian's all.js provides `window.AP`. Both give the page one
// transport, `send(method, path, body)` resolving to `{status, data}` for every HTTP answer, and one way to show a
// flag in Jira (AP.flag / showFlag of @forge/bridge).
import { forgeTransport } from '../forge-transport.js';

const TOKEN_TIMEOUT_MS = 15000;

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || 'Something went wrong.');
    this.name = 'ApiError';
    this.status = status;
    this.code = code || '';
  }
}

export function isForge() {
  return !!(window.__bridge && typeof window.__bridge.callBridge === 'function');
}

// A fresh context token for every call: AP.context.getToken(callback), or the promise it may return.
function getToken() {
  return new Promise((resolve, reject) => {
    const AP = window.AP;
    if (!AP || !AP.context || typeof AP.context.getToken !== 'function') {
      reject(new ApiError(0, 'no_host', 'This page must be opened from Jira: Projectrak Administration → Outgoing webhooks.'));
      return;
    }
    let settled = false;
    const fail = (err) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(new ApiError(0, 'no_token', `Jira did not confirm who you are (${(err && err.message) || err}).`));
    };
    const done = (token) => {
      if (settled || typeof token !== 'string' || !token) return;
      settled = true;
      clearTimeout(timer);
      resolve(token);
    };
    const timer = setTimeout(() => fail(new Error('no token in time')), TOKEN_TIMEOUT_MS);
    try {
      const result = AP.context.getToken(done);
      if (result && typeof result.then === 'function') result.then(done, fail);
      else if (typeof result === 'string') done(result);
    } catch (err) {
      fail(err);
    }
  });
}

// The API lives on the add-on itself, under the path the page's <meta name="addon-api-base"> gives.
function apiRoot() {
  const meta = document.querySelector('meta[name="addon-api-base"]');
  let path = '/api';
  try {
    path = new URL((meta && meta.content) || '/api', window.location.href).pathname.replace(/\/+$/, '');
  } catch (err) { /* keep /api */ }
  return window.location.origin + path;
}

function connectTransport() {
  const root = apiRoot();
  return async function send(method, path, body) {
    const token = await getToken();
    const init = {
      method,
      headers: { Authorization: `JWT ${token}`, 'Content-Type': 'application/json', Accept: 'application/json' },
      credentials: 'omit',
      cache: 'no-store',
    };
    if (body !== undefined) init.body = JSON.stringify(body);
    const response = await fetch(root + path, init);
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (err) { data = null; }
    return { status: response.status, data };
  };
}

let forgeBridge = null;

// @forge/bridge looks for the host's bridge when it loads, so it is loaded only under Forge.
async function bridge() {
  if (!forgeBridge) forgeBridge = await import('@forge/bridge');
  return forgeBridge;
}

export function createHost() {
  if (isForge()) {
    const sendThroughBridge = (method, path, body) =>
      bridge().then((b) => forgeTransport(b.invokeRemote)(method, path, body));
    return {
      door: 'forge',
      send: sendThroughBridge,
      flag({ title, description, type }) {
        bridge().then((b) => b.showFlag({
          id: `flag-${Date.now()}-${Math.random().toString(36).slice(2)}`,
          title, description, type, isAutoDismiss: true,
        })).catch(() => { /* the in-page announcement still says it */ });
        return true;
      },
      resize() { /* Forge sizes Custom UI itself */ },
    };
  }
  return {
    door: 'connect',
    send: connectTransport(),
    flag({ title, description, type }) {
      const AP = window.AP;
      if (!AP || !AP.flag || typeof AP.flag.create !== 'function') return false;
      AP.flag.create({ title, body: description || '', type, close: 'auto' });
      return true;
    },
    resize() {
      try {
        if (window.AP && typeof window.AP.resize === 'function') window.AP.resize();
      } catch (err) { /* not in Jira: nothing to size */ }
    },
  };
}

// One call to the admin API: resolves to the JSON body of a 2xx answer, rejects with an ApiError otherwise.
export async function call(host, method, path, body) {
  let answer;
  try {
    answer = await host.send(method, path, body);
  } catch (err) {
    if (err instanceof ApiError) throw err;
    throw new ApiError(0, 'network_error', (err && err.message) || String(err));
  }
  const status = answer && typeof answer.status === 'number' ? answer.status : 0;
  const data = answer ? answer.data : null;
  if (status < 200 || status >= 300) {
    const error = data && typeof data === 'object' && data.error && typeof data.error === 'object' ? data.error : {};
    throw new ApiError(status, error.code ? String(error.code) : `http_${status}`, error.message ? String(error.message) : '');
  }
  return data;
}
