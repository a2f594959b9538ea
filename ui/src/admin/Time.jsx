// A time shown relative ("3 minutes ago"), its exact value one focus or hover away (tooltip and description).
import Tooltip from '@atlaskit/tooltip';

import { exactTime, parseTime, relativeTime } from './format.js';

export function Time({ value, now, testId, prefix = '', children }) {
  const ms = parseTime(value);
  if (ms == null) return <span data-testid={testId}>{children || 'Never'}</span>;
  const exact = exactTime(ms);
  return (
    <Tooltip content={exact}>
      {(tooltipProps) => (
        <time {...tooltipProps} dateTime={new Date(ms).toISOString()} tabIndex={0} title={exact}
          className="time" data-testid={testId}>
          {prefix}{children || relativeTime(ms, now)}
        </time>
      )}
    </Tooltip>
  );
}
