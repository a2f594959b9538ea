// The banner at the top of the page (CONTRACT §10.5): each webhook the add-on disabled (410 Gone, or 5 days of
// failures) or that has had only failed deliveries for 24 hours, with the reason and since when. The add-on keeps
// an alert until the webhook succeeds again or an administrator changes it.
import SectionMessage from '@atlaskit/section-message';

import { exactTime, parseTime } from './format.js';

export function alertText(webhook) {
  const alert = webhook.alert;
  if (alert.state === 'disabled' && alert.reason === 'gone') return 'was disabled: its receiver answered 410 Gone.';
  if (alert.state === 'disabled') return 'was disabled: every delivery failed for 5 days.';
  return 'has had only failed deliveries for more than 24 hours; it is disabled after 5 days.';
}

export function AlertBanner({ webhooks }) {
  const alerted = (webhooks || []).filter((webhook) => webhook.alert);
  if (!alerted.length) return null;
  const disabled = alerted.some((webhook) => webhook.alert.state === 'disabled');
  return (
    <div className="alert-banner" data-testid="alert-banner">
      <SectionMessage appearance={disabled ? 'error' : 'warning'}
        title={alerted.length === 1 ? 'A webhook needs attention' : `${alerted.length} webhooks need attention`}>
        <ul className="alert-list">
          {alerted.map((webhook) => {
            const since = parseTime(webhook.alert.since);
            return (
              <li key={webhook.id} data-testid="alert-item" data-webhook-id={webhook.id} data-state={webhook.alert.state}>
                <strong>{webhook.name}</strong> {alertText(webhook)}
                {since != null && <> Since {exactTime(since)}.</>}
              </li>
            );
          })}
        </ul>
        <p className="subtle">Fix the receiver, then re-enable the webhook or resend what failed (“Resend failed since…” in its menu).</p>
      </SectionMessage>
    </div>
  );
}
