// The "ordered" setting of a webhook (CONTRACT §10.2), on the create form and in the edit dialog: one delivery at
// a time per project, in the order the changes were accepted.
import { Checkbox } from '@atlaskit/checkbox';

export function OrderedSwitch({ checked, onChange, testId }) {
  return (
    <div className="field field-ordered">
      <Checkbox label="In order, one at a time per project" isChecked={checked} testId={testId}
        onChange={(e) => onChange(e.target.checked)} aria-describedby={`${testId}-help`} />
      <div className="subtle" id={`${testId}-help`}>
        A change waits until the previous change of its project was delivered, given up or cancelled.
      </div>
    </div>
  );
}
