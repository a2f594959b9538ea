// The page's modal dialogs: the signing secret (shown once), confirmations, editing and rotating. Each returns
// focus to the control that opened it (`returnFocus`), or to where the page says when that control is gone.
import { useRef, useState } from 'react';

import Button from '@atlaskit/button/new';
import ModalDialog, { ModalBody, ModalFooter, ModalHeader, ModalTitle, ModalTransition } from '@atlaskit/modal-dialog';
import SectionMessage from '@atlaskit/section-message';
import Textfield from '@atlaskit/textfield';

import { FieldError } from './CreateForm.jsx';
import { FilterEditor } from './FilterEditor.jsx';
import { dayAndTime, parseTime } from './format.js';
import { HeadersEditor, headerRows, headersPayload } from './HeadersEditor.jsx';
import { call } from './host.js';
import { errorField, plainMessage } from './messages.js';
import { OrderedSwitch } from './OrderedSwitch.jsx';

export function Dialog({ open, onClose, returnFocus, testId, width = 'medium', label, children }) {
  return (
    <ModalTransition>
      {open && (
        <ModalDialog onClose={onClose} shouldReturnFocus={returnFocus || true} testId={testId} width={width}
          label={label} shouldScrollInViewport>
          {children}
        </ModalDialog>
      )}
    </ModalTransition>
  );
}

export function SecretDialog({ secret, onClose }) {
  const [copied, setCopied] = useState('');
  const valueRef = useRef(null);
  const open = !!secret;
  async function copy() {
    try {
      await navigator.clipboard.writeText(secret.value);
      setCopied('Copied to the clipboard.');
    } catch (err) {
      const range = document.createRange();
      range.selectNodeContents(valueRef.current);
      window.getSelection().removeAllRanges();
      window.getSelection().addRange(range);
      setCopied('The browser blocked copying: the secret is selected, press Ctrl+C (⌘C) to copy it.');
    }
  }
  const oldUntil = secret && parseTime(secret.oldExpiresAt);
  return (
    <Dialog open={open} onClose={() => { setCopied(''); onClose(); }} returnFocus={secret && secret.returnFocus}
      testId="secret-panel" width="large">
      {open && (
        <>
          <ModalHeader>
            <ModalTitle>Signing secret for “{secret.name}”</ModalTitle>
          </ModalHeader>
          <ModalBody>
            <p>Copy it now and keep it with your receiver: it is shown only once.</p>
            {secret.rotated && (
              <p data-testid="secret-rotation-note">
                {oldUntil
                  ? `The old secret keeps signing beside it until ${dayAndTime(oldUntil)}, so your receiver can switch over.`
                  : 'The old secret no longer signs anything: requests carry only this one.'}
              </p>
            )}
            <div className="secret-box">
              <code className="secret-value" ref={valueRef} data-testid="secret-value">{secret.value}</code>
              <Button onClick={copy} testId="secret-copy">Copy</Button>
            </div>
            <p className="copy-feedback" role="status" data-testid="copy-feedback">{copied}</p>
            <h3 className="verify-title">How to verify a request</h3>
            <p className="verify-note">
              Every request carries <code>webhook-id</code>, <code>webhook-timestamp</code> (Unix seconds) and{' '}
              <code>webhook-signature</code>. The signature is <code>v1,</code> followed by the base64 HMAC-SHA256
              of <code>{'{webhook-id}.{webhook-timestamp}.{raw body}'}</code>, keyed with the base64-decoded bytes
              after <code>whsec_</code>. While a secret is being rotated the header holds several space-separated
              signatures: accept the request when any of them matches. The standardwebhooks libraries do all of
              this, e.g. in Python <code>Webhook(secret).verify(body, headers)</code>.
            </p>
          </ModalBody>
          <ModalFooter>
            <Button appearance="primary" onClick={() => { setCopied(''); onClose(); }} testId="secret-dismiss">I've saved it</Button>
          </ModalFooter>
        </>
      )}
    </Dialog>
  );
}

// A yes/no question about one webhook or delivery; `onConfirm` returns a promise, its error is shown inside.
export function ConfirmDialog({ request, onClose }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  const open = !!request;
  const close = () => { setError(''); setBusy(false); onClose(); };
  async function confirm() {
    setBusy(true);
    setError('');
    try {
      await request.onConfirm();
      close();
    } catch (err) {
      setBusy(false);
      setError(plainMessage(err));
    }
  }
  return (
    <Dialog open={open} onClose={close} returnFocus={request && request.returnFocus} testId="confirm-dialog">
      {open && (
        <>
          <ModalHeader>
            <ModalTitle appearance={request.appearance === 'danger' ? 'danger' : undefined}>{request.title}</ModalTitle>
          </ModalHeader>
          <ModalBody>
            {request.body}
            <div role="alert" data-testid="confirm-error">
              {error && <SectionMessage appearance="error"><p>{error}</p></SectionMessage>}
            </div>
          </ModalBody>
          <ModalFooter>
            <Button appearance="subtle" onClick={close} testId="confirm-no">Cancel</Button>
            <Button appearance={request.appearance || 'primary'} onClick={confirm} isLoading={busy} testId="confirm-yes" autoFocus>
              {request.confirmLabel}
            </Button>
          </ModalFooter>
        </>
      )}
    </Dialog>
  );
}

export function EditDialog({ host, editing, onClose, onSaved }) {
  const open = !!editing;
  return (
    <Dialog open={open} onClose={onClose} returnFocus={editing && editing.returnFocus} testId="edit-dialog">
      {open && <EditForm host={host} webhook={editing.webhook} onClose={onClose} onSaved={onSaved} />}
    </Dialog>
  );
}

function EditForm({ host, webhook, onClose, onSaved }) {
  const [name, setName] = useState(webhook.name);
  const [url, setUrl] = useState(webhook.url);
  const [headers, setHeaders] = useState(headerRows(webhook));
  const [filter, setFilter] = useState(webhook.filter || null);
  const [ordered, setOrdered] = useState(!!webhook.ordered);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  async function save(event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const saved = await call(host, 'PATCH', `/webhooks/${webhook.id}`, { name, url, headers: headersPayload(headers), filter, ordered });
      onSaved(saved);
    } catch (err) {
      setBusy(false);
      setError({ field: errorField(err) || 'form', message: plainMessage(err) });
    }
  }
  const errorOf = (field) => (error && error.field === field ? error : null);
  return (
    <form onSubmit={save} noValidate autoComplete="off">
      <ModalHeader><ModalTitle>Edit “{webhook.name}”</ModalTitle></ModalHeader>
      <ModalBody>
        <div className="field">
          <label className="field-label" htmlFor="edit-name">Name</label>
          <Textfield id="edit-name" value={name} maxLength={255} testId="edit-name" autoFocus isInvalid={!!errorOf('name')}
            aria-describedby={errorOf('name') ? 'edit-name-error' : undefined} onChange={(e) => setName(e.target.value)} />
          {errorOf('name') && <FieldError id="edit-name-error" field="name">{error.message}</FieldError>}
        </div>
        <div className="field">
          <label className="field-label" htmlFor="edit-url">URL</label>
          <Textfield id="edit-url" value={url} type="url" spellCheck={false} testId="edit-url" isInvalid={!!errorOf('url')}
            aria-describedby={errorOf('url') ? 'edit-url-error' : undefined} onChange={(e) => setUrl(e.target.value)} />
          {errorOf('url') && <FieldError id="edit-url-error" field="url">{error.message}</FieldError>}
        </div>
        <HeadersEditor rows={headers} onChange={setHeaders} idPrefix="edit-headers" />
        <FilterEditor host={host} filter={webhook.filter || null} onChange={setFilter} />
        <OrderedSwitch checked={ordered} onChange={setOrdered} testId="edit-ordered" />
        {errorOf('form') && <FieldError id="edit-form-error" field="form">{error.message}</FieldError>}
      </ModalBody>
      <ModalFooter>
        <Button appearance="subtle" onClick={onClose} testId="edit-cancel">Cancel</Button>
        <Button appearance="primary" type="submit" isLoading={busy} testId="edit-save">Save</Button>
      </ModalFooter>
    </form>
  );
}

// Rotation: a new secret now; the old one keeps signing for 24 h (receivers switch over) or stops at once (leaked).
export function RotateDialog({ host, rotating, onClose, onRotated }) {
  const [busy, setBusy] = useState('');
  const [error, setError] = useState('');
  const open = !!rotating;
  const close = () => { setBusy(''); setError(''); onClose(); };
  async function rotate(keepOld) {
    setBusy(keepOld ? 'keep' : 'stop');
    setError('');
    try {
      const answer = await call(host, 'POST', `/webhooks/${rotating.webhook.id}/rotate-secret`, { keep_old: keepOld });
      setBusy('');
      onRotated(rotating, answer);
    } catch (err) {
      setBusy('');
      setError(plainMessage(err));
    }
  }
  return (
    <Dialog open={open} onClose={close} returnFocus={rotating && rotating.returnFocus} testId="rotate-dialog">
      {open && (
        <>
          <ModalHeader><ModalTitle>Rotate the secret of “{rotating.webhook.name}”</ModalTitle></ModalHeader>
          <ModalBody>
            <p>A new signing secret is made and shown once. What should happen to the current one?</p>
            <ul className="rotate-choices">
              <li><strong>Stop the old secret in 24 h</strong>: requests carry both signatures meanwhile, so your receiver can switch over without missing any.</li>
              <li><strong>Stop the old secret now</strong>: for a secret that leaked. Requests are signed with the new one only, from now on.</li>
            </ul>
            <div role="alert">{error && <SectionMessage appearance="error"><p>{error}</p></SectionMessage>}</div>
          </ModalBody>
          <ModalFooter>
            <Button appearance="subtle" onClick={close} testId="rotate-cancel">Cancel</Button>
            <Button appearance="warning" onClick={() => rotate(false)} isLoading={busy === 'stop'} testId="rotate-now">Stop the old secret now</Button>
            <Button appearance="primary" onClick={() => rotate(true)} isLoading={busy === 'keep'} testId="rotate-24h">Stop the old secret in 24 h</Button>
          </ModalFooter>
        </>
      )}
    </Dialog>
  );
}
