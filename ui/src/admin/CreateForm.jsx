// The create form: name, URL and whether it starts enabled. An error of the API is shown under the field it
// concerns, in plain words, with the field marked invalid; what was typed stays to be corrected.
import { useRef, useState } from 'react';

import Button from '@atlaskit/button/new';
import { Checkbox } from '@atlaskit/checkbox';
import Textfield from '@atlaskit/textfield';

import { call } from './host.js';
import { errorField, plainMessage } from './messages.js';
import { OrderedSwitch } from './OrderedSwitch.jsx';

export function FieldError({ id, field, testId = 'field-error', children }) {
  return (
    <p className="field-error" id={id} data-testid={testId} data-field={field} role="alert">{children}</p>
  );
}

export function CreateForm({ host, onCreated }) {
  const [name, setName] = useState('');
  const [url, setUrl] = useState('');
  const [enabled, setEnabled] = useState(true);
  const [ordered, setOrdered] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null); // {field, message}
  const submitRef = useRef(null);
  const nameRef = useRef(null);
  const urlRef = useRef(null);

  async function submit(event) {
    event.preventDefault();
    if (busy) return;
    setBusy(true);
    setError(null);
    try {
      const created = await call(host, 'POST', '/webhooks', { name, url, enabled, ordered });
      setName('');
      setUrl('');
      setEnabled(true);
      setOrdered(false);
      onCreated(created, submitRef);
    } catch (err) {
      const field = errorField(err);
      setError({ field: field || 'form', message: plainMessage(err), code: err.code });
      const target = field === 'url' ? urlRef : field === 'name' ? nameRef : null;
      if (target && target.current) target.current.focus();
    } finally {
      setBusy(false);
    }
  }

  const errorOf = (field) => (error && error.field === field ? error : null);
  const describedBy = (field) => (errorOf(field) ? `create-${field}-error` : undefined);

  return (
    <form className="create-form" onSubmit={submit} noValidate autoComplete="off" aria-labelledby="create-title">
      <div className="field field-name" id="create-name-field">
        <label className="field-label" htmlFor="create-name">Name</label>
        <Textfield id="create-name" ref={nameRef} value={name} maxLength={255} placeholder="e.g. Finance sync"
          testId="create-name" isInvalid={!!errorOf('name')} aria-describedby={describedBy('name')}
          onChange={(e) => { setName(e.target.value); if (errorOf('name')) setError(null); }} />
        {errorOf('name') && <FieldError id="create-name-error" field="name" testId="create-error">{error.message}</FieldError>}
      </div>
      <div className="field field-url" id="create-url-field">
        <label className="field-label" htmlFor="create-url">URL</label>
        <Textfield id="create-url" ref={urlRef} value={url} type="url" inputMode="url" spellCheck={false}
          placeholder="https://example.com/projectrak-webhook" testId="create-url" isInvalid={!!errorOf('url')}
          aria-describedby={describedBy('url')}
          onChange={(e) => { setUrl(e.target.value); if (errorOf('url')) setError(null); }} />
        {errorOf('url') && <FieldError id="create-url-error" field="url" testId="create-error">{error.message}</FieldError>}
      </div>
      <div className="field field-enabled">
        <Checkbox label="Enabled" isChecked={enabled} onChange={(e) => setEnabled(e.target.checked)} testId="create-enabled" />
      </div>
      <OrderedSwitch checked={ordered} onChange={setOrdered} testId="create-ordered" />
      <div className="field field-submit">
        <Button type="submit" appearance="primary" ref={submitRef} isLoading={busy} testId="create-submit">Create webhook</Button>
      </div>
      {errorOf('form') && <FieldError id="create-form-error" field="form" testId="create-error">{error.message}</FieldError>}
    </form>
  );
}
