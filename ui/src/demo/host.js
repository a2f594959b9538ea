// The admin page's transport in the demo: every call to the admin API carries a fresh context token of the demo
// site's administrator, which the demo site hands its signed-in page (`POST /demo/site/token`), as Jira's
// AP.context.getToken() does. The add-on checks it like any door's token, then asks the demo site's Jira whether
// that user is an administrator.
import { ApiError } from '../admin/host.js';

async function readJson(response) {
  const text = await response.text();
  try { return text ? JSON.parse(text) : null; } catch (err) { return null; }
}

async function contextToken() {
  const response = await fetch('/demo/site/token', {
    method: 'POST', credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' },
  });
  if (!response.ok) {
    throw new ApiError(response.status, 'no_token', 'The demo site did not sign you in: open the URL `addon demo` printed.');
  }
  return (await readJson(response)).token;
}

export function demoHost() {
  return {
    door: 'demo',
    async send(method, path, body) {
      const token = await contextToken();
      const init = {
        method,
        headers: { Authorization: `JWT ${token}`, 'Content-Type': 'application/json', Accept: 'application/json' },
        credentials: 'omit',
        cache: 'no-store',
      };
      if (body !== undefined) init.body = JSON.stringify(body);
      const response = await fetch('/api' + path, init);
      return { status: response.status, data: await readJson(response) };
    },
    flag() { return false; }, // the page shows its own flags
    resize() { /* a page of its own: nothing to size */ },
  };
}

// A call to the demo site's own endpoints (signed in by cookie): resolves to the JSON body, or rejects with the
// message of its error.
export async function site(method, path, body) {
  const init = { method, credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  const response = await fetch('/demo/site' + path, init);
  const data = await readJson(response);
  if (!response.ok) {
    const error = data && data.error ? data.error : {};
    throw new ApiError(response.status, error.code || `http_${response.status}`, error.message || `HTTP ${response.status}`);
  }
  return data;
}
