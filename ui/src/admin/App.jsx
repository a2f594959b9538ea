// The Outgoing webhooks page (Projectrak Administration → Outgoing webhooks), for both doors.
import { useCallback, useEffect, useRef, useState } from 'react';

import EmptyState from '@atlaskit/empty-state';
import Flag, { FlagGroup } from '@atlaskit/flag';
import Heading from '@atlaskit/heading';
import SectionMessage, { SectionMessageAction } from '@atlaskit/section-message';
import Spinner from '@atlaskit/spinner';

import { AlertBanner } from './AlertBanner.jsx';
import { CreateForm } from './CreateForm.jsx';
import { DeliveryLog } from './DeliveryLog.jsx';
import { ConfirmDialog, EditDialog, RotateDialog, SecretDialog } from './dialogs.jsx';
import { HOUR_MS, parseTime } from './format.js';
import { call } from './host.js';
import { isTransient, plainMessage } from './messages.js';
import { RecoverDialog } from './RecoverDialog.jsx';
import { Settings } from './Settings.jsx';
import { WebhookTable } from './WebhookTable.jsx';

export const REFRESH_MS = 15000;
export const RETRY_MS = 5000;
const CHART_PAGE = 200;
const CHART_PAGES = 5;
const CHART_MAX_AGE_MS = 60 * 1000;

function useNow(intervalMs) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), intervalMs);
    return () => clearInterval(timer);
  }, [intervalMs]);
  return now;
}

export function App({ host }) {
  const now = useNow(15000);
  const [webhooks, setWebhooks] = useState(null);
  const [load, setLoad] = useState({ kind: 'loading' }); // loading | ready | forbidden | retrying | error
  const [charts, setCharts] = useState({});
  const [feedback, setFeedback] = useState({});
  const [busy, setBusy] = useState({});
  const [secret, setSecret] = useState(null);
  const [confirm, setConfirm] = useState(null);
  const [editing, setEditing] = useState(null);
  const [rotating, setRotating] = useState(null);
  const [recovering, setRecovering] = useState(null);
  const [log, setLog] = useState(null);
  const [announcement, setAnnouncement] = useState('');
  const [pageFlags, setPageFlags] = useState([]);
  const menuRefs = useRef(new Map());
  const logRefs = useRef(new Map());
  const listHeadingRef = useRef(null);
  const chartsFetched = useRef(new Map()); // id -> {at, lastRun}
  const busyRef = useRef({});

  const announce = useCallback((text) => {
    // The same text twice in a row is still announced: the region is emptied first.
    setAnnouncement('');
    setTimeout(() => setAnnouncement(text), 50);
  }, []);

  const flag = useCallback((title, description, type = 'success') => {
    if (!host.flag({ title, description, type })) {
      setPageFlags((old) => [{ id: `${Date.now()}-${Math.random()}`, title, description, type }, ...old]);
    }
    announce(description ? `${title}. ${description}` : title);
  }, [host, announce]);

  const loadChart = useCallback(async (webhook) => {
    const since = Date.now() - 25 * HOUR_MS;
    let items = [];
    let before = null;
    // bodies=0: the chart needs times and statuses only, never the request bodies.
    for (let page = 0; page < CHART_PAGES; page += 1) {
      const answer = await call(host, 'GET', `/webhooks/${webhook.id}/deliveries?bodies=0&limit=${CHART_PAGE}${before ? `&before=${before}` : ''}`);
      items = items.concat(answer.items.map((item) => ({ at: item.at, status: item.status })));
      const oldest = answer.items.length ? parseTime(answer.items[answer.items.length - 1].at) : null;
      if (!answer.next || oldest == null || oldest < since) break;
      before = answer.next;
    }
    setCharts((old) => ({ ...old, [webhook.id]: items }));
  }, [host]);

  const refreshCharts = useCallback((list) => {
    for (const webhook of list) {
      const fetched = chartsFetched.current.get(webhook.id);
      if (fetched && fetched.lastRun === webhook.last_execution_at && Date.now() - fetched.at < CHART_MAX_AGE_MS) continue;
      chartsFetched.current.set(webhook.id, { at: Date.now(), lastRun: webhook.last_execution_at });
      loadChart(webhook).catch(() => chartsFetched.current.delete(webhook.id));
    }
  }, [loadChart]);

  const loadList = useCallback(async () => {
    try {
      const list = await call(host, 'GET', '/webhooks');
      setWebhooks(list);
      setLoad((old) => {
        if (old.kind === 'retrying') announce('Jira is answering again: the webhooks are up to date.');
        return { kind: 'ready' };
      });
      refreshCharts(list);
      return list;
    } catch (err) {
      if (err.status === 403) setLoad({ kind: 'forbidden', message: plainMessage(err) });
      else if (isTransient(err)) setLoad({ kind: 'retrying', message: plainMessage(err), code: err.code });
      else setLoad({ kind: 'error', message: plainMessage(err), code: err.code });
      return null;
    }
  }, [host, refreshCharts, announce]);

  useEffect(() => { loadList(); }, [loadList]);

  // The list refreshes by itself; after a transient failure it tries again sooner, and says so.
  useEffect(() => {
    if (load.kind === 'forbidden' || load.kind === 'error') return undefined;
    const timer = setTimeout(loadList, load.kind === 'retrying' ? RETRY_MS : REFRESH_MS);
    return () => clearTimeout(timer);
  });

  // Jira's iframe follows the page's height.
  useEffect(() => {
    host.resize();
    if (typeof ResizeObserver !== 'function') return undefined;
    const observer = new ResizeObserver(() => host.resize());
    observer.observe(document.body);
    return () => observer.disconnect();
  }, [host]);

  function setRowFeedback(id, value) {
    setFeedback((old) => ({ ...old, [id]: value }));
  }

  function setRowBusy(id, value) {
    busyRef.current = { ...busyRef.current, [id]: value };
    setBusy(busyRef.current);
  }

  function replaceWebhook(saved) {
    setWebhooks((old) => (old || []).map((w) => (w.id === saved.id ? saved : w)));
  }

  function rowError(webhook, err, what) {
    const message = `${what} “${webhook.name}” did not work: ${plainMessage(err)}`;
    setRowFeedback(webhook.id, { kind: 'error', message, code: err.code });
    announce(message);
    if (err.code === 'not_found') loadList();
  }

  async function setEnabled(webhook, enabled, busyKind) {
    if (busyRef.current[webhook.id]) return;
    setRowBusy(webhook.id, busyKind);
    setRowFeedback(webhook.id, null);
    try {
      const saved = await call(host, 'PATCH', `/webhooks/${webhook.id}`, { enabled });
      replaceWebhook(saved);
      flag(enabled ? `“${saved.name}” enabled` : `“${saved.name}” disabled`,
        enabled ? 'Changes are sent to it again.' : 'Nothing is sent to it until it is enabled again; pending retries were cancelled.');
      return saved;
    } catch (err) {
      rowError(webhook, err, enabled ? 'Enabling' : 'Disabling');
      return null;
    } finally {
      setRowBusy(webhook.id, null);
    }
  }

  function focusToggle(id) {
    const input = document.querySelector(`[data-webhook-id="${id}"] [data-testid="action-toggle--input"]`);
    if (input) input.focus();
  }

  const actions = {
    toggle: (webhook) => setEnabled(webhook, !webhook.enabled, 'toggle'),
    reenable: async (webhook) => {
      const saved = await setEnabled(webhook, true, 'enable');
      // The re-enable button is gone with the DISABLED state: focus moves to the row's switch.
      if (saved) setTimeout(() => focusToggle(webhook.id), 0);
    },
    test: async (webhook) => {
      if (busyRef.current[webhook.id]) return;
      setRowBusy(webhook.id, 'test');
      setRowFeedback(webhook.id, { kind: 'pending', message: `Sending a test to “${webhook.name}”…` });
      try {
        const attempt = await call(host, 'POST', `/webhooks/${webhook.id}/test`);
        setRowFeedback(webhook.id, { kind: 'test', attempt });
        announce(`Test of ${webhook.name}: ${attempt.status}${attempt.http_code ? `, HTTP ${attempt.http_code}` : ''}`);
        loadList();
      } catch (err) {
        rowError(webhook, err, 'The test of');
      } finally {
        setRowBusy(webhook.id, null);
      }
    },
    edit: (webhook, returnFocus) => setEditing({ webhook, returnFocus }),
    rotate: (webhook, returnFocus) => setRotating({ webhook, returnFocus }),
    recover: (webhook, returnFocus) => setRecovering({ webhook, returnFocus }),
    remove: (webhook) => setConfirm({
      title: `Delete “${webhook.name}”?`,
      body: <p>Nothing more is sent to <strong>{webhook.url}</strong>, and its pending retries are cancelled. This cannot be undone.</p>,
      confirmLabel: 'Delete',
      appearance: 'danger',
      returnFocus: listHeadingRef,
      onConfirm: async () => {
        await call(host, 'DELETE', `/webhooks/${webhook.id}`);
        setWebhooks((old) => (old || []).filter((w) => w.id !== webhook.id));
        flag(`“${webhook.name}” deleted`, '');
      },
    }),
    openLog: (webhook, returnFocus) => setLog({ webhook, returnFocus }),
  };

  function onCreated(created, submitRef) {
    setWebhooks((old) => (old || []).concat([created]));
    setSecret({ value: created.secret, name: created.name, returnFocus: submitRef });
    flag(`“${created.name}” created`, 'Copy its signing secret now: it is shown only once.');
    loadList();
  }

  function onRotated(request, answer) {
    const webhook = request.webhook;
    setRotating(null);
    setSecret({ value: answer.secret, name: webhook.name, rotated: true, oldExpiresAt: answer.old_secret_expires_at,
      returnFocus: request.returnFocus });
    flag(`New secret for “${webhook.name}”`, answer.old_secret_expires_at
      ? 'The old secret keeps signing for 24 hours.' : 'The old secret stopped signing.');
    loadList();
  }

  function onRedeliver(webhook, item, returnFocus, refreshLog) {
    setConfirm({
      title: `Redeliver to “${webhook.name}”?`,
      body: (
        <p>The {item.event || ''} event{item.project && item.project.key ? ` of ${item.project.key}` : ''} is sent again
          to <strong>{webhook.url}</strong>, with the same webhook-id ({item.webhook_id_header}), and retried for up to
          12 hours if it fails. A receiver that already handled it should ignore it by that id.</p>
      ),
      confirmLabel: 'Redeliver',
      appearance: 'warning',
      returnFocus,
      onConfirm: async () => {
        await call(host, 'POST', `/deliveries/${item.delivery_id}/redeliver`);
        flag('Redelivery queued', `The ${item.event || ''} event is sent again to “${webhook.name}”.`);
        refreshLog();
      },
    });
  }

  const forbidden = load.kind === 'forbidden';
  return (
    <main className="page" aria-busy={load.kind === 'loading'}>
      <header className="page-header">
        <Heading size="large" as="h1">Outgoing webhooks</Heading>
        <p className="lead">
          Every change to a project’s fields (Jira’s project attributes and Projectrak fields; formula fields
          excepted) is sent as a signed JSON <code>POST</code> to each enabled webhook. A <code>2xx</code> answer is
          OK; anything else is an ERROR, retried for up to 12 hours. Requests carry Standard Webhooks signatures, so
          your receiver can check they come from Projectrak. Only <code>https://</code> addresses are accepted.
        </p>
        <details className="example">
          <summary>Example request body</summary>
          <pre className="code-block" tabIndex={0} aria-label="Example request body">{EXAMPLE}</pre>
        </details>
      </header>

      <div className="status-region" role="status" aria-live="polite" data-testid="announcer">{announcement}</div>
      {!forbidden && <AlertBanner webhooks={webhooks} />}

      {forbidden && (
        <div data-testid="forbidden-state">
          <EmptyState header="Only Jira administrators can manage outgoing webhooks" headingLevel={2}
            description="Ask a Jira administrator of this site to set up webhooks, or to give you the Administer Jira permission." />
        </div>
      )}
      {/* The list's own state (retrying, failed), in a live region that is always there, so it is announced. */}
      <div aria-live="polite" data-testid="load-state">
        {load.kind === 'retrying' && (
          <div data-testid="retrying">
            <SectionMessage appearance="warning" title="Jira is not answering: retrying">
              <p>{load.message} The page tries again every few seconds and updates by itself; nothing you entered is lost.</p>
            </SectionMessage>
          </div>
        )}
        {load.kind === 'error' && (
          <div data-testid="load-error" data-code={load.code}>
            <SectionMessage appearance="error" title="The webhooks could not be loaded"
              actions={[
                <SectionMessageAction key="retry" onClick={() => { setLoad({ kind: 'loading' }); loadList(); }}>Try again</SectionMessageAction>,
              ]}>
              <p>{load.message}</p>
            </SectionMessage>
          </div>
        )}
      </div>

      {!forbidden && (
        <section className="card" aria-labelledby="create-title">
          <Heading size="medium" as="h2" id="create-title">Create a webhook</Heading>
          <CreateForm host={host} onCreated={onCreated} />
        </section>
      )}

      {!forbidden && (
        <section className="card" aria-labelledby="list-title">
          <div className="list-head">
            <h2 id="list-title" ref={listHeadingRef} tabIndex={-1} className="list-title">
              Webhooks{webhooks ? <span className="count" data-testid="webhook-count"> ({webhooks.length})</span> : null}
            </h2>
            <span className="subtle">Refreshes every 15 seconds</span>
          </div>
          {webhooks == null && load.kind === 'loading' && <Spinner label="Loading webhooks" testId="list-loading" />}
          {webhooks && webhooks.length === 0 && (
            <p className="list-empty" data-testid="list-state">No webhooks yet. Create one above to start sending changes.</p>
          )}
          {webhooks && webhooks.length > 0 && (
            <WebhookTable webhooks={webhooks} now={now} charts={charts} feedback={feedback} busy={busy}
              actions={actions} menuRefs={menuRefs} logRefs={logRefs} />
          )}
        </section>
      )}

      {!forbidden && webhooks && <Settings host={host} onSecret={setSecret} flag={flag} />}

      <SecretDialog secret={secret} onClose={() => setSecret(null)} />
      <RecoverDialog host={host} recovering={recovering} onClose={() => setRecovering(null)}
        onRecovered={(webhook, answer) => { announce(`${answer.queued} deliveries to ${webhook.name} queued again.`); loadList(); }} />
      <ConfirmDialog request={confirm} onClose={() => setConfirm(null)} />
      <EditDialog host={host} editing={editing} onClose={() => setEditing(null)}
        onSaved={(saved) => { replaceWebhook(saved); setEditing(null); flag(`“${saved.name}” saved`, ''); }} />
      <RotateDialog host={host} rotating={rotating} onClose={() => setRotating(null)} onRotated={onRotated} />
      <DeliveryLog host={host} log={log} now={now} onClose={() => setLog(null)} onRedeliver={onRedeliver} announce={announce} />
      <FlagGroup onDismissed={(id) => setPageFlags((old) => old.filter((f) => f.id !== id))}>
        {pageFlags.map((f) => (
          <Flag key={f.id} id={f.id} title={f.title} description={f.description || undefined} />
        ))}
      </FlagGroup>
    </main>
  );
}

const EXAMPLE = `{
  "data": {
    "event": "updated",
    "user": "5b10ac8d82e05b22cc7d4ef5",
    "timestamp": 1675182117615,
    "project": {"id": 13647, "key": "DEMO", "name": "Demo project"},
    "fields": [
      {"id": 12345, "name": "Budget", "type": "number", "value": {"current": "23000", "previous": "25000"}}
    ]
  }
}`;
