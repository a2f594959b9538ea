// A webhook's custom headers (CONTRACT §10.3): names are shown, values never come back from the add-on. A stored
// header's value field starts empty and means "keep the stored value"; typing replaces it. Saving sends every
// header listed, so one left out is removed.
import Button from '@atlaskit/button/new';
import Textfield from '@atlaskit/textfield';

export const MAX_HEADERS = 10;

// The rows an editor starts with: one per stored name, value empty (kept).
export function headerRows(webhook) {
  return Object.keys((webhook && webhook.headers) || {}).map((name, index) => ({ key: `stored-${index}`, name, value: '', stored: true }));
}

// The `headers` of a PATCH: a stored header left empty is sent as null (keep its value).
export function headersPayload(rows) {
  const headers = {};
  for (const row of rows) {
    const name = row.name.trim();
    if (!name && !row.value) continue;
    headers[name] = row.stored && row.value === '' ? null : row.value;
  }
  return headers;
}

export function HeadersEditor({ rows, onChange, idPrefix = 'headers' }) {
  const update = (key, change) => onChange(rows.map((row) => (row.key === key ? { ...row, ...change } : row)));
  const remove = (key) => onChange(rows.filter((row) => row.key !== key));
  const add = () => onChange(rows.concat([{ key: `new-${Date.now()}-${rows.length}`, name: '', value: '', stored: false }]));
  return (
    <fieldset className="headers-editor" data-testid="headers-editor">
      <legend className="field-label">Custom headers</legend>
      <p className="subtle">
        Sent with every request, e.g. an API key for a gateway in front of your receiver. Values are stored
        encrypted and never shown again: leave a saved header’s value empty to keep it.
      </p>
      {rows.map((row, index) => (
        <div className="header-row" key={row.key} data-testid="header-row" data-stored={String(row.stored)}>
          <Textfield id={`${idPrefix}-name-${index}`} aria-label={`Header ${index + 1} name`} value={row.name}
            placeholder="X-Api-Key" spellCheck={false} maxLength={64} testId="header-name"
            onChange={(e) => update(row.key, { name: e.target.value })} />
          <Textfield id={`${idPrefix}-value-${index}`} aria-label={`Header ${index + 1} value${row.stored ? ' (empty keeps the saved value)' : ''}`}
            value={row.value} type="password" autoComplete="new-password" spellCheck={false} maxLength={1024}
            placeholder={row.stored ? 'Saved (type to replace)' : 'Value'} testId="header-value"
            onChange={(e) => update(row.key, { value: e.target.value })} />
          <Button appearance="subtle" spacing="compact" onClick={() => remove(row.key)} testId="header-remove"
            aria-label={`Remove header ${row.name || index + 1}`}>Remove</Button>
        </div>
      ))}
      {rows.length < MAX_HEADERS && (
        <Button spacing="compact" onClick={add} testId="header-add">Add a header</Button>
      )}
    </fieldset>
  );
}
