// Plain-language messages for the admin API's error codes (CONTRACT.md section 8's `{"error": {code, message}}`).
// The API's own message names the field and the rule for programs; the page says what to do about it.

// Which form field an error belongs to, or null for the form as a whole.
export function errorField(err) {
  if (err.code === 'invalid_url' || err.code === 'private_address') return 'url';
  if (err.code === 'invalid_body') {
    const field = /^(\w+):/.exec(err.message || '');
    if (field && (field[1] === 'name' || field[1] === 'url')) return field[1];
  }
  return null;
}

function fieldMessage(err) {
  const text = err.message || '';
  if (err.code === 'private_address') {
    return 'This address points into a private network. Use an address your receiver can be reached at from the internet.';
  }
  if (err.code === 'invalid_url') {
    if (/https:\/\//.test(text)) return 'Use an address that starts with https://.';
    if (/user info/.test(text)) return 'Leave the user name and password out of the address.';
    if (/longer than/.test(text)) return 'This address is too long.';
    return 'This is not a web address we can send to. Check it, e.g. https://example.com/webhook.';
  }
  if (/^name:/.test(text)) {
    return /at most/.test(text) ? 'Use a name of at most 255 characters.' : 'Give the webhook a name.';
  }
  if (/^url:/.test(text)) return 'Enter the address your receiver listens on, starting with https://.';
  if (/^filter\.projects/.test(text)) {
    return /Jira knows no project/.test(text) ? 'A chosen project no longer exists in Jira. Remove it and save again.'
      : 'Choose at least one project, or every project.';
  }
  if (/^filter\.fields/.test(text)) return 'Choose at least one field, or every field.';
  return null;
}

const BY_CODE = {
  too_many_webhooks: 'A site can have at most 50 webhooks. Delete one you no longer use first.',
  not_found: 'This webhook no longer exists: someone may have deleted it. The list has been refreshed.',
  rate_limited: 'Too many tests in a minute. Wait a minute, then try again.',
  webhook_disabled: 'This webhook is disabled. Enable it before redelivering.',
  delivery_in_flight: 'This delivery is being sent right now. Try again once that attempt has finished.',
  test_cancelled: 'The test was cancelled because the webhook was disabled or deleted meanwhile.',
  forbidden: 'Only Jira administrators can manage outgoing webhooks.',
  unauthorized: 'Jira could not confirm who you are. Reload the page.',
  no_token: 'Jira could not confirm who you are. Reload the page.',
  no_host: 'Open this page from Jira: Projectrak Administration → Outgoing webhooks.',
  jira_unavailable: 'Jira is not answering right now.',
  tenant_changed: 'The app was just reinstalled on this site. Try again.',
  database_unavailable: 'The app cannot reach its storage right now. Try again in a moment.',
  network_error: 'The app could not be reached. Check your connection and try again.',
  invalid_json: 'The page sent something the app could not read. Reload the page and try again.',
};

// The message an administrator sees for an error of the API.
export function plainMessage(err) {
  const field = fieldMessage(err);
  if (field) return field;
  if (BY_CODE[err.code]) return BY_CODE[err.code];
  if (err.status === 429) return 'Too many requests. Wait a moment, then try again.';
  if (err.status >= 500) return 'The app could not do this right now. Try again in a moment.';
  return 'That did not work. Reload the page and try again.';
}

// Errors the page waits out by itself (and says so) rather than asks the administrator to act on.
export function isTransient(err) {
  return err.status === 503 || err.status === 0 || err.code === 'jira_unavailable';
}
