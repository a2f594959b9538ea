// The operational webhook (CONTRACT §10.5): one address of the site that is told when a webhook is disabled by the
// add-on, fails for 24 hours, or recovers. Its signing secret is shown once, when an address is saved (each save
// makes a new one) or rotated.
import { useEffect, useRef, useState } from 'react';

import Button from '@atlaskit/button/new';
import Heading from '@atlaskit/heading';
import SectionMessage from '@atlaskit/section-message';
import Textfield from '@atlaskit/textfield';

import { FieldError } from './CreateForm.jsx';
import { call } from './host.js';
import { plainMessage } from './messages.js';

const NAME = 'the operational webhook';
// How long a rotated secret keeps signing beside the new one (the server's SECRET_ROTATION_GRACE).
const OLD_SECRET_GRACE_MS = 24 * 60 * 60 * 1000;

export function Settings({ host, onSecret, flag }) {
  const [current, setCurrent] = useState(undefined); // undefined: loading; null: none set
  const [url, setUrl] = useState('');
  const [busy, setBusy] = useState('');
  const [error, setError] = useState(null); // {field, message}
  const saveRef = useRef(null);
  const rotateRef = useRef(null);

  useEffect(() => {
    call(host, 'GET', '/settings').then((answer) => {
      setCurrent(answer.operational_url);
      setUrl(answer.operational_url || '');
    }).catch((err) => setError({ field: 'load', message: plainMessage(err) }));
  }, [host]);

  async function run(kind, work) {
    if (busy) return;
    setBusy(kind);
    setError(null);
    try {
      await work();
    } catch (err) {
      const field = err.code === 'invalid_url' || err.code === 'private_address' || err.code === 'invalid_body' ? 'url' : 'form';
      setError({ field, message: plainMessage(err) });
    } finally {
      setBusy('');
    }
  }

  const save = (event) => {
    event.preventDefault();
    return run('save', async () => {
      const answer = await call(host, 'PATCH', '/settings', { operational_url: url.trim() });
      setCurrent(answer.operational_url);
      setUrl(answer.operational_url);
      onSecret({ value: answer.secret, name: NAME, returnFocus: saveRef });
      flag('Operational webhook saved', 'Copy its signing secret now: it is shown only once.');
    });
  };
  const rotate = () => run('rotate', async () => {
    const answer = await call(host, 'POST', '/settings/rotate-secret', { keep_old: true });
    // The answer is {secret} alone (CONTRACT §10.5); the old secret keeps signing for the rotation's 24 hours.
    const oldExpiresAt = new Date(Date.now() + OLD_SECRET_GRACE_MS).toISOString();
    onSecret({ value: answer.secret, name: NAME, rotated: true, oldExpiresAt, returnFocus: rotateRef });
    flag('New secret for the operational webhook', 'The old secret keeps signing for 24 hours.');
  });
  const remove = () => run('remove', async () => {
    await call(host, 'PATCH', '/settings', { operational_url: null });
    setCurrent(null);
    setUrl('');
    flag('Operational webhook removed', 'Nothing more is sent to it.');
  });

  const urlError = error && error.field === 'url' ? error : null;
  return (
    <section className="card" aria-labelledby="settings-title" data-testid="settings">
      <Heading size="medium" as="h2" id="settings-title">Operational webhook</Heading>
      <p className="lead">
        An address of yours that is told, as a signed <code>POST</code>, when a webhook is disabled by the add-on
        (<code>webhook.disabled</code>), has had only failed deliveries for 24 hours (<code>webhook.failing</code>), or
        succeeds again (<code>webhook.recovered</code>). Point it at your alerting or chat tool.
      </p>
      <p data-testid="settings-current">
        {current === undefined ? 'Loading…' : current ? <>Notices go to <strong>{current}</strong>.</> : 'No operational webhook is set.'}
      </p>
      <form className="settings-form" onSubmit={save} noValidate autoComplete="off">
        <div className="field">
          <label className="field-label" htmlFor="settings-url">Address</label>
          <Textfield id="settings-url" value={url} type="url" spellCheck={false} placeholder="https://alerts.example.com/projectrak"
            testId="settings-url" isInvalid={!!urlError} aria-describedby={urlError ? 'settings-url-error' : undefined}
            onChange={(e) => setUrl(e.target.value)} />
          {urlError && <FieldError id="settings-url-error" field="operational_url">{urlError.message}</FieldError>}
        </div>
        <div className="settings-actions">
          <Button ref={saveRef} appearance="primary" type="submit" isLoading={busy === 'save'} testId="settings-save">
            {current ? 'Save (new secret)' : 'Save'}
          </Button>
          {current && (
            <>
              <Button ref={rotateRef} onClick={rotate} isLoading={busy === 'rotate'} testId="settings-rotate">Rotate secret</Button>
              <Button appearance="subtle" onClick={remove} isLoading={busy === 'remove'} testId="settings-remove">Remove</Button>
            </>
          )}
        </div>
      </form>
      <div role="alert" data-testid="settings-error">
        {error && error.field !== 'url' && <SectionMessage appearance="error"><p>{error.message}</p></SectionMessage>}
      </div>
    </section>
  );
}
