// "Resend failed since…" (CONTRACT §10.4): every delivery of the webhook accepted since a time that did not
// succeed is queued again, oldest first, with its webhook-id; at most 10,000 a time, the answer says how many are
// left and the dialog offers to go on.
import { useState } from 'react';

import Button from '@atlaskit/button/new';
import { ModalBody, ModalFooter, ModalHeader, ModalTitle } from '@atlaskit/modal-dialog';
import SectionMessage from '@atlaskit/section-message';

import { Dialog } from './dialogs.jsx';
import { HOUR_MS } from './format.js';
import { call } from './host.js';
import { plainMessage } from './messages.js';

// `yyyy-mm-ddThh:mm` in the viewer's local time, as <input type="datetime-local"> takes it.
function localInputValue(ms) {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
}

export function RecoverDialog({ host, recovering, onClose, onRecovered }) {
  const open = !!recovering;
  return (
    <Dialog open={open} onClose={onClose} returnFocus={recovering && recovering.returnFocus} testId="recover-dialog">
      {open && <RecoverForm host={host} webhook={recovering.webhook} onClose={onClose} onRecovered={onRecovered} />}
    </Dialog>
  );
}

function RecoverForm({ host, webhook, onClose, onRecovered }) {
  const [since, setSince] = useState(localInputValue(Date.now() - 24 * HOUR_MS));
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  const [result, setResult] = useState(null);
  async function recover(event) {
    event.preventDefault();
    const ms = Date.parse(since); // a datetime-local value is read in local time
    if (Number.isNaN(ms)) {
      setError('Choose a date and time.');
      return;
    }
    setBusy(true);
    setError('');
    try {
      const answer = await call(host, 'POST', `/webhooks/${webhook.id}/recover`, { since: new Date(ms).toISOString() });
      setResult(answer);
      onRecovered(webhook, answer);
    } catch (err) {
      setError(err.code === 'webhook_disabled' ? 'Enable the webhook first: nothing is sent to a disabled webhook.' : plainMessage(err));
    } finally {
      setBusy(false);
    }
  }
  return (
    <form onSubmit={recover} noValidate>
      <ModalHeader><ModalTitle>Resend failed deliveries to “{webhook.name}”</ModalTitle></ModalHeader>
      <ModalBody>
        <p>
          Every change accepted since this time that did not reach the receiver (given up, refused, or cancelled
          when the webhook was disabled) is sent again, oldest first, with the webhook-id it had, so a receiver
          that already has one can skip it.
        </p>
        <div className="field">
          <label className="field-label" htmlFor="recover-since">Resend failed since</label>
          <input id="recover-since" className="datetime-input" type="datetime-local" value={since} required
            data-testid="recover-since" onChange={(e) => setSince(e.target.value)} />
        </div>
        <div role="status" data-testid="recover-result">
          {result && (
            <SectionMessage appearance="success">
              <p>{result.queued === 0 ? 'Nothing to resend since then.' : `${result.queued} ${result.queued === 1 ? 'delivery' : 'deliveries'} queued.`}
                {result.remaining > 0 && ` ${result.remaining} more wait: resend again to queue them.`}</p>
            </SectionMessage>
          )}
        </div>
        <div role="alert" data-testid="recover-error">{error && <SectionMessage appearance="error"><p>{error}</p></SectionMessage>}</div>
      </ModalBody>
      <ModalFooter>
        <Button appearance="subtle" onClick={onClose} testId="recover-close">{result ? 'Close' : 'Cancel'}</Button>
        <Button appearance="primary" type="submit" isLoading={busy} testId="recover-submit">
          {result && result.remaining > 0 ? 'Resend the rest' : 'Resend'}
        </Button>
      </ModalFooter>
    </form>
  );
}
