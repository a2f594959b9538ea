// The last 24 hours of a webhook's attempts, one bar per clock hour: OK in green, ERROR in red with stripes (so
// the two differ by more than colour). The chart takes focus; its values are then shown in a tooltip and read
// out as its description, so they are reachable without a mouse.
import Tooltip from '@atlaskit/tooltip';

import { HOUR_MS, clockTime, parseTime } from './format.js';

export function hourlyBuckets(items, now) {
  const end = new Date(now);
  end.setMinutes(0, 0, 0);
  const start = end.getTime() - 23 * HOUR_MS; // 24 clock hours, the last one the current hour
  const buckets = Array.from({ length: 24 }, (_, i) => ({ from: start + i * HOUR_MS, ok: 0, error: 0 }));
  for (const item of items || []) {
    const t = parseTime(item.at);
    if (t == null || t < start || t > now + 60000) continue;
    const bucket = buckets[Math.min(23, Math.floor((t - start) / HOUR_MS))];
    if (item.status === 'OK') bucket.ok += 1; else bucket.error += 1;
  }
  return buckets;
}

export function Chart({ name, items, now, loading }) {
  const buckets = hourlyBuckets(items, now);
  const ok = buckets.reduce((n, b) => n + b.ok, 0);
  const error = buckets.reduce((n, b) => n + b.error, 0);
  const busiest = Math.max(1, ...buckets.map((b) => b.ok + b.error));
  const summary = loading && !items
    ? `${name}, last 24 hours: loading`
    : `${name}, last 24 hours: ${ok} OK, ${error} ERROR`;
  const hours = buckets.filter((b) => b.ok + b.error > 0)
    .map((b) => `${clockTime(b.from)}–${clockTime(b.from + HOUR_MS)}: ${b.ok} OK, ${b.error} ERROR`);
  const details = hours.length ? hours.join('; ') : 'No attempts in the last 24 hours';
  const width = 24 * 5;
  const height = 28;
  return (
    <Tooltip content={<span><strong>{ok} OK, {error} ERROR</strong><br />{details}</span>} position="top">
      {(tooltipProps) => (
        <div {...tooltipProps} className="chart" tabIndex={0} role="img" aria-label={`${summary}. ${details}.`}
          data-testid="webhook-chart" data-ok={ok} data-error={error}>
          <svg width={width} height={height} viewBox={`0 0 ${width} ${height}`} aria-hidden="true" focusable="false">
            <defs>
              <pattern id="error-stripes" width="4" height="4" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">
                <rect width="4" height="4" className="bar-error" />
                <rect width="1.5" height="4" className="bar-error-stripe" />
              </pattern>
            </defs>
            <line x1="0" y1={height - 0.5} x2={width} y2={height - 0.5} className="chart-axis" />
            {buckets.map((b, i) => {
              const okHeight = Math.round((b.ok / busiest) * (height - 2));
              const errorHeight = Math.round((b.error / busiest) * (height - 2));
              return (
                <g key={b.from}>
                  {b.ok > 0 && <rect x={i * 5} y={height - 1 - okHeight} width="4" height={Math.max(2, okHeight)} className="bar-ok" />}
                  {b.error > 0 && (
                    <rect x={i * 5} y={height - 1 - okHeight - Math.max(2, errorHeight)} width="4"
                      height={Math.max(2, errorHeight)} fill="url(#error-stripes)" className="bar-error-outline" />
                  )}
                </g>
              );
            })}
          </svg>
          <span className="chart-totals" aria-hidden="true">{ok} OK · {error} ERR</span>
        </div>
      )}
    </Tooltip>
  );
}
