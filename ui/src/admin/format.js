// Times, HTTP codes and bodies as the page writes them. Times are the viewer's local time; the exact value
// (with its UTC form) is always one focus away.
const HTTP_REASONS = {
  200: 'OK', 201: 'Created', 202: 'Accepted', 204: 'No Content', 301: 'Moved Permanently', 302: 'Found',
  307: 'Temporary Redirect', 308: 'Permanent Redirect', 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden',
  404: 'Not Found', 405: 'Method Not Allowed', 408: 'Request Timeout', 409: 'Conflict', 410: 'Gone',
  413: 'Payload Too Large', 415: 'Unsupported Media Type', 422: 'Unprocessable Content', 429: 'Too Many Requests',
  500: 'Internal Server Error', 501: 'Not Implemented', 502: 'Bad Gateway', 503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

export const HOUR_MS = 3600 * 1000;

export function parseTime(value) {
  if (value == null || value === '') return null;
  const t = Date.parse(value);
  return Number.isNaN(t) ? null : t;
}

const relative = new Intl.RelativeTimeFormat('en', { numeric: 'always' });

export function relativeTime(ms, now) {
  const diff = (ms - now) / 1000;
  const abs = Math.abs(diff);
  if (abs < 45) return 'just now';
  let value;
  let unit;
  if (abs < 45 * 60) { value = diff / 60; unit = 'minute'; }
  else if (abs < 22 * 3600) { value = diff / 3600; unit = 'hour'; }
  else { value = diff / 86400; unit = 'day'; }
  return relative.format(Math.round(value) || (diff < 0 ? -1 : 1), unit);
}

export function exactTime(ms) {
  const d = new Date(ms);
  return `${d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'long' })} (${d.toISOString()})`;
}

export function clockTime(ms) {
  return new Date(ms).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
}

export function shortTime(ms) {
  return new Date(ms).toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

export function dayAndTime(ms) {
  return new Date(ms).toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

export function httpText(code) {
  if (code == null || code === '') return '';
  const reason = HTTP_REASONS[Number(code)];
  return `HTTP ${code}${reason ? ` ${reason}` : ''}`;
}

// The error of an attempt, unless it only restates the HTTP code shown beside it.
export function errorText(code, error) {
  if (!error) return '';
  return code != null && String(error).trim() === `HTTP ${code}` ? '' : String(error);
}

export function statusDetail(code, error) {
  return [httpText(code), errorText(code, error)].filter(Boolean).join(' · ');
}

export function prettyBody(body) {
  if (body == null || body === '') return '(empty)';
  try { return JSON.stringify(JSON.parse(body), null, 2); } catch (err) { return String(body); }
}

export function durationText(ms) {
  return ms == null ? '—' : `${Math.round(Number(ms)).toLocaleString('en')} ms`;
}
