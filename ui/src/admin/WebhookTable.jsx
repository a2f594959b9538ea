// The webhooks, one row each: name and URL (and until when an old secret still signs), status (a DISABLED
// lozenge with its reason and a re-enable action when the add-on or an administrator stopped it), last run,
// the last 24 hours, the switch, the delivery log and the other actions behind "•••". A row's own results
// (a test, a failed action) are shown in the row.
import { useRef } from 'react';

import Button from '@atlaskit/button/new';
import DropdownMenu, { DropdownItem, DropdownItemGroup } from '@atlaskit/dropdown-menu';
import DynamicTable from '@atlaskit/dynamic-table';
import Lozenge from '@atlaskit/lozenge';
import Toggle from '@atlaskit/toggle';

import { Chart } from './Chart.jsx';
import { FilterSummary } from './FilterEditor.jsx';
import { dayAndTime, parseTime, statusDetail } from './format.js';
import { Time } from './Time.jsx';

const HEAD = {
  cells: [
    { key: 'name', content: 'Webhook', width: 28 },
    { key: 'status', content: 'Status', width: 19 },
    { key: 'last', content: 'Last run', width: 10 },
    { key: 'chart', content: 'Last 24 hours', width: 17 },
    { key: 'enabled', content: 'Enabled', width: 8 },
    { key: 'actions', content: <span className="visually-hidden">Actions</span>, width: 18 },
  ],
};

export function disabledReason(webhook) {
  if (webhook.disabled_reason === 'gone') return 'The receiver answered 410 Gone, so sending stopped.';
  if (webhook.disabled_reason === 'failing') return 'Every delivery failed for 5 days, so sending stopped.';
  return 'Paused by an administrator.';
}

function StatusCell({ webhook, busy, onReenable }) {
  const reenableRef = useRef(null);
  if (!webhook.enabled) {
    const stoppedByAddon = webhook.disabled_reason === 'gone' || webhook.disabled_reason === 'failing';
    return (
      <div className="status-cell">
        <Lozenge appearance={stoppedByAddon ? 'removed' : 'default'} isBold={stoppedByAddon} testId="webhook-status">DISABLED</Lozenge>
        <div className="status-detail" data-testid="webhook-disabled-reason">{disabledReason(webhook)}</div>
        {stoppedByAddon && (
          <Button ref={reenableRef} appearance="default" spacing="compact" isLoading={busy} onClick={() => onReenable(webhook)}
            testId="action-reenable" aria-label={`Re-enable ${webhook.name}`}>Re-enable</Button>
        )}
      </div>
    );
  }
  const status = webhook.last_status;
  return (
    <div className="status-cell">
      <Lozenge appearance={status === 'OK' ? 'success' : status === 'ERROR' ? 'removed' : 'default'} testId="webhook-status">
        {status === 'OK' ? 'OK' : status === 'ERROR' ? 'ERROR' : 'NEVER RUN'}
      </Lozenge>
      {status === 'ERROR' && <span className="visually-hidden">, retried for up to 12 hours</span>}
      <div className="status-detail" data-testid="webhook-status-detail">{statusDetail(webhook.last_status_code, webhook.last_error)}</div>
    </div>
  );
}

function Feedback({ feedback }) {
  if (!feedback) return null;
  if (feedback.kind === 'test') {
    const attempt = feedback.attempt;
    return (
      <div className="row-feedback" data-testid="test-result" data-status={attempt.status}>
        Test: <Lozenge appearance={attempt.status === 'OK' ? 'success' : 'removed'} testId="test-status">{attempt.status}</Lozenge>{' '}
        {statusDetail(attempt.http_code, attempt.error) || 'no answer'} in {attempt.duration_ms} ms
      </div>
    );
  }
  if (feedback.kind === 'pending') return <div className="row-feedback subtle" data-testid="row-pending">{feedback.message}</div>;
  return <div className="row-feedback row-error" data-testid="row-error" data-code={feedback.code}>{feedback.message}</div>;
}

function ActionsCell({ webhook, actions, menuRefs, logRefs }) {
  const triggerRef = (node) => { if (node) menuRefs.current.set(webhook.id, node); };
  const logRef = (node) => { if (node) logRefs.current.set(webhook.id, node); };
  const focusTrigger = { get current() { return menuRefs.current.get(webhook.id) || null; } };
  return (
    <div className="actions-cell">
      <Button ref={logRef} spacing="compact" onClick={() => actions.openLog(webhook, { current: logRefs.current.get(webhook.id) })}
        testId="action-deliveries" aria-label={`Deliveries of ${webhook.name}`}>Deliveries</Button>
      <DropdownMenu
        placement="bottom-end"
        testId="row-menu"
        trigger={({ triggerRef: menuTriggerRef, ...props }) => (
          <Button {...props} spacing="compact" appearance="subtle" aria-label={`More actions for ${webhook.name}`}
            ref={(node) => {
              triggerRef(node);
              if (typeof menuTriggerRef === 'function') menuTriggerRef(node);
              else if (menuTriggerRef) menuTriggerRef.current = node;
            }}>
            •••
          </Button>
        )}>
        <DropdownItemGroup>
          <DropdownItem onClick={() => actions.test(webhook)} testId="action-test">Send a test</DropdownItem>
          <DropdownItem onClick={() => actions.edit(webhook, focusTrigger)} testId="action-edit">Edit</DropdownItem>
          <DropdownItem onClick={() => actions.rotate(webhook, focusTrigger)} testId="action-rotate">Rotate secret</DropdownItem>
          <DropdownItem onClick={() => actions.recover(webhook, focusTrigger)} testId="action-recover">Resend failed since…</DropdownItem>
        </DropdownItemGroup>
        <DropdownItemGroup hasSeparator>
          <DropdownItem onClick={() => actions.remove(webhook, focusTrigger)} testId="action-delete">Delete</DropdownItem>
        </DropdownItemGroup>
      </DropdownMenu>
    </div>
  );
}

export function WebhookTable({ webhooks, now, charts, feedback, busy, actions, menuRefs, logRefs }) {
  const rows = webhooks.map((webhook) => {
    const oldUntil = parseTime(webhook.old_secret_expires_at);
    return {
      key: String(webhook.id),
      testId: 'webhook-row',
      'data-webhook-id': webhook.id,
      'data-enabled': String(webhook.enabled),
      cells: [
        {
          key: 'name',
          content: (
            <div className="name-cell">
              <div className="webhook-name" data-testid="webhook-name">{webhook.name}</div>
              <div className="webhook-url" data-testid="webhook-url">{webhook.url}</div>
              <FilterSummary webhook={webhook} />
              {oldUntil && (
                <div className="old-secret" data-testid="old-secret-until">Old secret valid until {dayAndTime(oldUntil)}</div>
              )}
              <Feedback feedback={feedback[webhook.id]} />
            </div>
          ),
        },
        { key: 'status', content: <StatusCell webhook={webhook} busy={busy[webhook.id] === 'enable'} onReenable={actions.reenable} /> },
        {
          key: 'last',
          content: <Time value={webhook.last_execution_at} now={now} testId="webhook-last-execution">{null}</Time>,
        },
        { key: 'chart', content: <Chart name={webhook.name} items={charts[webhook.id]} now={now} loading /> },
        {
          key: 'enabled',
          content: (
            <Toggle isChecked={webhook.enabled} onChange={() => actions.toggle(webhook)}
              label={`${webhook.name} enabled`} testId="action-toggle" />
          ),
        },
        { key: 'actions', content: <ActionsCell webhook={webhook} actions={actions} menuRefs={menuRefs} logRefs={logRefs} /> },
      ],
    };
  });
  return (
    <DynamicTable head={HEAD} rows={rows} testId="webhooks-table" caption={<span className="visually-hidden">Outgoing webhooks</span>} />
  );
}
