// A webhook's filter (CONTRACT.md section 10.1), edited in the Edit dialog: which projects (searched in Jira by
// name or key, GET /api/projects?query=) and which fields (GET /api/fields: the Jira attributes and the fields this
// site has sent lately) the webhook receives. "All" stands for null: everything. The value handed to `onChange` is
// the `filter` of a PATCH: null, or {projects: [id, …] | null, fields: [id, …] | null}.
import { useEffect, useMemo, useRef, useState } from 'react';

import Button from '@atlaskit/button/new';
import { Checkbox } from '@atlaskit/checkbox';
import Textfield from '@atlaskit/textfield';

import { call } from './host.js';
import { plainMessage } from './messages.js';

const SEARCH_DELAY_MS = 250;

// The filter to send for what the editor holds.
export function filterValue(projects, fields) {
  const chosenProjects = projects == null ? null : projects.map((p) => p.id);
  const chosenFields = fields == null ? null : fields;
  return chosenProjects == null && chosenFields == null ? null : { projects: chosenProjects, fields: chosenFields };
}

// A short line for the webhooks table: what a filtered webhook receives.
export function FilterSummary({ webhook }) {
  const filter = webhook.filter;
  if (!filter) return null;
  const parts = [];
  if (filter.projects) parts.push(`projects ${filter.projects.map((p) => p.key).join(', ')}`);
  if (filter.fields) parts.push(`${filter.fields.length} field${filter.fields.length === 1 ? '' : 's'}`);
  return <div className="filter-summary subtle" data-testid="webhook-filter">Only {parts.join(' · ')}</div>;
}

function ProjectPicker({ host, chosen, onChange }) {
  const [query, setQuery] = useState('');
  const [found, setFound] = useState([]);
  const [error, setError] = useState('');
  const asked = useRef(0);
  useEffect(() => {
    const ask = ++asked.current;
    const timer = setTimeout(async () => {
      try {
        const answer = await call(host, 'GET', `/projects?query=${encodeURIComponent(query.trim())}`);
        if (ask === asked.current) { setFound(answer); setError(''); }
      } catch (err) {
        if (ask === asked.current) setError(plainMessage(err));
      }
    }, SEARCH_DELAY_MS);
    return () => clearTimeout(timer);
  }, [host, query]);
  const chosenIds = new Set(chosen.map((p) => p.id));
  return (
    <div className="filter-picker" data-testid="filter-projects">
      <ul className="filter-chosen" aria-label="Chosen projects">
        {chosen.map((project) => (
          <li key={project.id} data-testid="filter-project-chosen" data-project-id={project.id}>
            <span>{project.name} ({project.key})</span>{' '}
            <Button spacing="compact" appearance="subtle" aria-label={`Remove ${project.name}`}
              testId="filter-project-remove" onClick={() => onChange(chosen.filter((p) => p.id !== project.id))}>Remove</Button>
          </li>
        ))}
      </ul>
      <label className="field-label" htmlFor="filter-project-search">Find a project by name or key</label>
      <Textfield id="filter-project-search" value={query} testId="filter-project-search" autoComplete="off"
        onChange={(e) => setQuery(e.target.value)} />
      {error && <p className="field-error" role="alert">{error}</p>}
      <ul className="filter-found" aria-label="Projects found">
        {found.filter((p) => !chosenIds.has(p.id)).map((project) => (
          <li key={project.id}>
            <Button spacing="compact" testId="filter-project-add" aria-label={`Add ${project.name}`}
              onClick={() => onChange(chosen.concat([project]))}>Add {project.name} ({project.key})</Button>
          </li>
        ))}
      </ul>
    </div>
  );
}

function FieldPicker({ host, chosen, onChange }) {
  const [fields, setFields] = useState(null);
  const [query, setQuery] = useState('');
  const [error, setError] = useState('');
  useEffect(() => {
    let live = true;
    call(host, 'GET', '/fields').then((answer) => { if (live) setFields(answer); },
      (err) => { if (live) setError(plainMessage(err)); });
    return () => { live = false; };
  }, [host]);
  // Fields chosen earlier that were not sent lately stay listed, by id, so they can be unticked.
  const listed = useMemo(() => {
    const known = fields || [];
    const ids = new Set(known.map((f) => f.id));
    return known.concat(chosen.filter((id) => !ids.has(id)).map((id) => ({ id, name: `Field ${id}`, type: '' })));
  }, [fields, chosen]);
  const wanted = query.trim().toLowerCase();
  const shown = listed.filter((f) => !wanted || f.name.toLowerCase().includes(wanted) || chosen.includes(f.id));
  const toggle = (id, on) => onChange(on ? chosen.concat([id]) : chosen.filter((other) => other !== id));
  return (
    <div className="filter-picker" data-testid="filter-fields">
      <label className="field-label" htmlFor="filter-field-search">Find a field by name</label>
      <Textfield id="filter-field-search" value={query} testId="filter-field-search" autoComplete="off"
        onChange={(e) => setQuery(e.target.value)} />
      {error && <p className="field-error" role="alert">{error}</p>}
      {fields == null && !error && <p className="subtle">Loading fields…</p>}
      <ul className="filter-field-list" aria-label="Fields">
        {shown.map((field) => (
          <li key={field.id} data-testid="filter-field" data-field-id={field.id}>
            <Checkbox label={`${field.name}${field.type ? ` (${field.type})` : ''}`} isChecked={chosen.includes(field.id)}
              onChange={(e) => toggle(field.id, e.target.checked)} testId={`filter-field-${field.id}`} />
          </li>
        ))}
      </ul>
    </div>
  );
}

// `filter` is the webhook's (null, or {projects: [{id, key, name}] | null, fields: [id] | null}).
export function FilterEditor({ host, filter, onChange }) {
  const [projects, setProjects] = useState(filter && filter.projects ? filter.projects : null);
  const [fields, setFields] = useState(filter && filter.fields ? filter.fields : null);
  const update = (nextProjects, nextFields) => {
    setProjects(nextProjects);
    setFields(nextFields);
    onChange(filterValue(nextProjects, nextFields));
  };
  return (
    <fieldset className="filter-editor" data-testid="filter-editor">
      <legend className="field-label">What it receives</legend>
      <Checkbox label="Every project" isChecked={projects == null} testId="filter-all-projects"
        onChange={(e) => update(e.target.checked ? null : [], fields)} />
      {projects != null && <ProjectPicker host={host} chosen={projects} onChange={(next) => update(next, fields)} />}
      <Checkbox label="Every field" isChecked={fields == null} testId="filter-all-fields"
        onChange={(e) => update(projects, e.target.checked ? null : [])} />
      {fields != null && <FieldPicker host={host} chosen={fields} onChange={(next) => update(projects, next)} />}
      <p className="subtle filter-note">
        An event of another project, or with none of the chosen fields, is not sent to this webhook; the fields sent
        keep the event’s order. Tests are sent whatever the filter.
      </p>
    </fieldset>
  );
}
