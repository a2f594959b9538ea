// A delivery's Projectrak-Sequence in the log: its change's number in its project (0: a test, no project's).

export function SequenceNumber({ value }) {
  if (value === undefined || value === null) return null;
  return (
    <span className="mono subtle sequence-number" data-testid="delivery-sequence" title="Projectrak-Sequence: this change's number in its project">
      #{value}
    </span>
  );
}
