// The delivery log of one webhook, in a modal: one row per delivery (when, event, project, state, next attempt)
// with its attempts nested under it, a redelivery marked as such, a "failed only" filter, and a live refresh that
// merges new deliveries in without losing what is loaded, opened or scrolled to.
import { useCallback, useEffect, useRef, useState } from 'react';

import Button from '@atlaskit/button/new';
import { Checkbox } from '@atlaskit/checkbox';
import Lozenge from '@atlaskit/lozenge';
import { ModalBody, ModalFooter, ModalHeader, ModalTitle } from '@atlaskit/modal-dialog';
import SectionMessage from '@atlaskit/section-message';
import Spinner from '@atlaskit/spinner';

import { Dialog } from './dialogs.jsx';
import { SequenceNumber } from './SequenceNumber.jsx';
import { clockTime, durationText, errorText, httpText, parseTime, prettyBody } from './format.js';
import { call } from './host.js';
import { plainMessage } from './messages.js';
import { Time } from './Time.jsx';

export const LOG_REFRESH_MS = 5000;
const PAGE = 20;

const STATES = {
  delivered: { text: 'DELIVERED', appearance: 'success' },
  retrying: { text: 'RETRYING', appearance: 'moved' },
  queued: { text: 'QUEUED', appearance: 'inprogress' },
  gave_up: { text: 'GAVE UP', appearance: 'removed' },
  cancelled: { text: 'CANCELLED', appearance: 'default' },
};

function stateNote(item) {
  const next = parseTime(item.next_attempt_at);
  if (item.state === 'retrying' && next) return `retrying at ${clockTime(next)}`;
  if (item.state === 'queued') return item.redelivered ? 'queued for redelivery' : 'queued';
  if (item.state === 'gave_up') return 'gave up';
  if (item.state === 'cancelled') return 'cancelled: the webhook was disabled';
  return '';
}

// New items first, then what was loaded before and is older than all of them (so "Load older" pages stay).
function merge(fresh, old) {
  if (!old.length) return fresh;
  const oldest = fresh.length ? fresh[fresh.length - 1].delivery_id : Infinity;
  return fresh.concat(old.filter((item) => item.delivery_id < oldest));
}

export function DeliveryLog({ host, log, now, onClose, onRedeliver, announce }) {
  const open = !!log;
  return (
    <Dialog open={open} onClose={onClose} returnFocus={log && log.returnFocus} testId="delivery-log" width="x-large"
      label={log ? `Deliveries of ${log.webhook.name}` : undefined}>
      {open && <LogBody host={host} webhook={log.webhook} now={now} onClose={onClose} onRedeliver={onRedeliver} announce={announce} />}
    </Dialog>
  );
}

function LogBody({ host, webhook, now, onClose, onRedeliver, announce }) {
  const [failedOnly, setFailedOnly] = useState(false);
  const [items, setItems] = useState(null);
  const [next, setNext] = useState(null);
  const [error, setError] = useState('');
  const [updatedAt, setUpdatedAt] = useState(null);
  const [expanded, setExpanded] = useState(() => new Set());
  const [loadingMore, setLoadingMore] = useState(false);
  const itemsRef = useRef(null);
  itemsRef.current = items;
  const query = (extra) => `/webhooks/${webhook.id}/delivery-log?limit=${PAGE}${failedOnly ? '&failed=true' : ''}${extra || ''}`;

  const refresh = useCallback(async () => {
    try {
      const page = await call(host, 'GET', query());
      const old = itemsRef.current || [];
      const known = new Set(old.map((item) => item.delivery_id));
      const added = page.items.filter((item) => !known.has(item.delivery_id)).length;
      setItems(merge(page.items, old));
      if (!old.length) setNext(page.next);
      setUpdatedAt(Date.now());
      setError('');
      if (old.length && added) announce(`${added} new ${added === 1 ? 'delivery' : 'deliveries'} in the log of ${webhook.name}`);
    } catch (err) {
      setError(plainMessage(err));
    }
  }, [host, webhook.id, failedOnly]); // eslint-disable-line react-hooks/exhaustive-deps

  useEffect(() => {
    itemsRef.current = null;
    setItems(null);
    setNext(null);
    refresh();
    const timer = setInterval(refresh, LOG_REFRESH_MS);
    return () => clearInterval(timer);
  }, [refresh]);

  async function loadOlder() {
    setLoadingMore(true);
    try {
      const page = await call(host, 'GET', query(`&before=${next}`));
      setItems((old) => (old || []).concat(page.items));
      setNext(page.next);
    } catch (err) {
      setError(plainMessage(err));
    } finally {
      setLoadingMore(false);
    }
  }

  function toggle(id) {
    setExpanded((old) => {
      const copy = new Set(old);
      if (copy.has(id)) copy.delete(id); else copy.add(id);
      return copy;
    });
  }

  return (
    <>
      <ModalHeader><ModalTitle>Deliveries of “{webhook.name}”</ModalTitle></ModalHeader>
      <ModalBody>
        <div className="log-controls">
          <Checkbox label="Failed only" isChecked={failedOnly} onChange={(e) => setFailedOnly(e.target.checked)} testId="failed-only" />
          <span className="subtle" data-testid="log-updated">
            {updatedAt ? `Updated at ${new Date(updatedAt).toLocaleTimeString()}; refreshes every 5 seconds` : 'Loading…'}
          </span>
        </div>
        {!webhook.enabled && (
          <p className="subtle" data-testid="redeliver-off">Redelivery is off while this webhook is disabled: enable it first.</p>
        )}
        <div role="alert">{error && <SectionMessage appearance="error"><p data-testid="log-error">{error}</p></SectionMessage>}</div>
        {items == null && !error && <div className="log-loading"><Spinner label="Loading deliveries" /></div>}
        {items && items.length === 0 && (
          <p data-testid="log-empty">{failedOnly ? 'No failed deliveries.' : 'No deliveries yet: send a test, or change a project field.'}</p>
        )}
        {items && items.length > 0 && (
          <table className="log-table" data-testid="log-table">
            <caption className="visually-hidden">Deliveries of {webhook.name}, newest first</caption>
            <thead>
              <tr>
                <th scope="col">When</th><th scope="col">Event</th><th scope="col">Project</th>
                <th scope="col">State</th><th scope="col"><span className="visually-hidden">Actions</span></th>
              </tr>
            </thead>
            {items.map((item) => (
              <DeliveryRows key={item.delivery_id} host={host} item={item} now={now} webhook={webhook}
                expanded={expanded.has(item.delivery_id)} onToggle={() => toggle(item.delivery_id)}
                onRedeliver={(returnFocus) => onRedeliver(webhook, item, returnFocus, refresh)} />
            ))}
          </table>
        )}
        {next != null && items && items.length > 0 && (
          <div className="log-more">
            <Button onClick={loadOlder} isLoading={loadingMore} testId="log-load-more">Load older deliveries</Button>
          </div>
        )}
      </ModalBody>
      <ModalFooter>
        <Button appearance="primary" onClick={onClose} testId="deliveries-close">Close</Button>
      </ModalFooter>
    </>
  );
}

// The request body: its first 2,048 characters as listed, the whole of it on demand (the attempt's endpoint).
function RequestBody({ host, item, label }) {
  const [whole, setWhole] = useState(null);
  const [state, setState] = useState('');
  const cut = item.request_body_truncated && whole == null;
  async function loadWhole() {
    setState('loading');
    try {
      const attempt = await call(host, 'GET', `/attempts/${item.attempts[0].id}`);
      setWhole(attempt.request_body);
      setState('Whole request body shown.');
    } catch (err) {
      setState(`The whole body could not be loaded: ${plainMessage(err)}`);
    }
  }
  return (
    <details data-testid="delivery-details">
      <summary>Request body</summary>
      <pre className="code-block" tabIndex={0} aria-label={`Request body of the ${label}`} data-testid="delivery-request-body">
        {whole != null ? prettyBody(whole) : cut ? item.request_body : prettyBody(item.request_body)}
      </pre>
      {cut && (
        <p className="subtle">
          <span data-testid="delivery-request-body-cut">First 2,048 characters. </span>
          {item.attempts.length > 0 && (
            <Button spacing="compact" onClick={loadWhole} isLoading={state === 'loading'} testId="delivery-request-body-full">
              View full body
            </Button>
          )}
        </p>
      )}
      <span className="visually-hidden" role="status">{state === 'loading' ? '' : state}</span>
    </details>
  );
}

function DeliveryRows({ host, item, now, webhook, expanded, onToggle, onRedeliver }) {
  const redeliverRef = useRef(null);
  const state = STATES[item.state] || { text: String(item.state).toUpperCase(), appearance: 'default' };
  const project = item.project ? [item.project.key, item.project.name].filter(Boolean).join(' · ') : '—';
  const panelId = `attempts-${item.delivery_id}`;
  const canRedeliver = webhook.enabled && item.state !== 'queued';
  const count = item.attempts.length;
  const label = `${item.event || 'event'} of ${item.project ? item.project.key : 'no project'}`;
  return (
    <tbody data-testid="delivery-row" data-delivery-id={item.delivery_id} data-state={item.state}>
      <tr className="delivery-main">
        <td><Time value={item.created_at} now={now} testId="delivery-time" /></td>
        <td>
          <span data-testid="delivery-event">{item.event || '—'}</span>
          {item.redelivered && <> <Lozenge appearance="new" testId="delivery-redelivered">REDELIVERY</Lozenge></>}
          <SequenceNumber value={item.sequence} />
        </td>
        <td data-testid="delivery-project">{project}</td>
        <td>
          <Lozenge appearance={state.appearance} testId="delivery-state">{state.text}</Lozenge>
          <div className="subtle" data-testid="delivery-next">{stateNote(item)}</div>
        </td>
        <td className="log-actions">
          <Button appearance="subtle" onClick={onToggle} aria-expanded={expanded} aria-controls={panelId} testId="attempts-toggle"
            aria-label={`${expanded ? 'Hide' : 'Show'} ${count} ${count === 1 ? 'attempt' : 'attempts'} of the ${label}`}>
            {count} {count === 1 ? 'attempt' : 'attempts'}
          </Button>
          {canRedeliver && (
            <Button ref={redeliverRef} onClick={() => onRedeliver(redeliverRef)} testId="action-redeliver"
              aria-label={`Redeliver the ${label} to ${webhook.name}`}>Redeliver</Button>
          )}
        </td>
      </tr>
      {expanded && (
        <tr className="delivery-detail" id={panelId}>
          <td colSpan={5}>
            <AttemptTable item={item} now={now} />
            <p className="mono subtle">webhook-id: <span data-testid="delivery-webhook-id">{item.webhook_id_header}</span></p>
            <RequestBody host={host} item={item} label={label} />
          </td>
        </tr>
      )}
    </tbody>
  );
}

function AttemptTable({ item, now }) {
  if (!item.attempts.length) return <p className="subtle">No attempt yet.</p>;
  return (
    <table className="attempt-table" data-testid="attempt-table">
      <caption className="visually-hidden">Attempts, newest first</caption>
      <thead>
        <tr><th scope="col">#</th><th scope="col">When</th><th scope="col">Result</th><th scope="col">Time taken</th><th scope="col">Answer</th></tr>
      </thead>
      <tbody>
        {item.attempts.map((attempt) => (
          <tr key={attempt.id} data-testid="attempt-row" data-attempt-id={attempt.id}>
            <td>
              <span data-testid="attempt-number">#{attempt.attempt}</span>
              {attempt.redelivery && <span className="subtle" data-testid="attempt-redelivery"> (redelivery)</span>}
            </td>
            <td><Time value={attempt.at} now={now} testId="attempt-time" /></td>
            <td>
              <Lozenge appearance={attempt.status === 'OK' ? 'success' : 'removed'} testId="attempt-status">{attempt.status}</Lozenge>{' '}
              <span data-testid="attempt-http-code">{httpText(attempt.http_code) || 'no answer'}</span>
              {errorText(attempt.http_code, attempt.error) && <div className="subtle">{errorText(attempt.http_code, attempt.error)}</div>}
            </td>
            <td>{durationText(attempt.duration_ms)}</td>
            <td><code className="answer" data-testid="attempt-response-body">{attempt.response_body_start || '—'}</code></td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
