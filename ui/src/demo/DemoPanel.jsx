// The demo site's panel: change a project's Jira attributes (sent to the add-on as Jira's signed project_updated
// webhook), send a Projectrak field change of any type (Projectrak's signed request), and watch what the local
// HTTPS receiver got, with whether its signature verifies.
import { useCallback, useEffect, useRef, useState } from 'react';

import Button from '@atlaskit/button/new';
import Heading from '@atlaskit/heading';
import Lozenge from '@atlaskit/lozenge';
import SectionMessage from '@atlaskit/section-message';
import Textfield from '@atlaskit/textfield';

import { site } from './host.js';

const POLL_MS = 1000;
const MULTI = new Set(['multi_list', 'multi_user', 'multi_project']);

function Answer({ result }) {
  if (!result) return null;
  if (result.error) {
    return <p className="field-error" role="alert" data-testid={`${result.testId}-error`}>{result.error}</p>;
  }
  const { status, body } = result.addon;
  const ok = status >= 200 && status < 300;
  return (
    <p className="demo-answer" data-testid={`${result.testId}-answer`} data-status={status}>
      <Lozenge appearance={ok ? 'success' : 'removed'}>{status}</Lozenge>{' '}
      {result.what}: the add-on answered <span className="mono">{status}</span>
      {body ? <> <span className="mono">{JSON.stringify(body)}</span></> : null}
    </p>
  );
}

function Select({ id, label, value, onChange, children, testId }) {
  return (
    <div className="field">
      <label className="field-label" htmlFor={id}>{label}</label>
      <select id={id} className="demo-select" value={value} data-testid={testId} onChange={(e) => onChange(e.target.value)}>
        {children}
      </select>
    </div>
  );
}

function Text({ id, label, value, onChange, testId, ...rest }) {
  return (
    <div className="field">
      <label className="field-label" htmlFor={id}>{label}</label>
      <Textfield id={id} value={value} testId={testId} onChange={(e) => onChange(e.target.value)} {...rest} />
    </div>
  );
}

function ProjectForm({ state, onSaved }) {
  const [projectId, setProjectId] = useState(state.projects[0].id);
  const project = state.projects.find((p) => p.id === projectId) || state.projects[0];
  const [draft, setDraft] = useState(project);
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState(null);
  useEffect(() => { setDraft(project); }, [projectId]); // a project chosen: its attributes, not the edits

  const set = (name) => (value) => setDraft((old) => ({ ...old, [name]: value }));
  async function submit(event) {
    event.preventDefault();
    const changes = {};
    for (const name of ['name', 'key', 'lead', 'category', 'assigneeType', 'description', 'url']) {
      if (draft[name] !== project[name]) changes[name] = draft[name];
    }
    if (!Object.keys(changes).length) {
      setResult({ testId: 'project', error: 'Nothing changed: edit an attribute first.' });
      return;
    }
    setBusy(true);
    try {
      const answer = await site('POST', `/projects/${project.id}`, changes);
      setResult({ testId: 'project', what: 'Jira sent project_updated', addon: answer.addon });
      onSaved(answer.project);
    } catch (err) {
      setResult({ testId: 'project', error: err.message });
    } finally {
      setBusy(false);
    }
  }

  return (
    <form onSubmit={submit} noValidate autoComplete="off" aria-labelledby="demo-project-title" data-testid="demo-project-form">
      <Heading size="small" as="h3" id="demo-project-title">A project’s Jira attributes</Heading>
      <Select id="demo-project" label="Project" value={projectId} onChange={setProjectId} testId="demo-project">
        {state.projects.map((p) => <option key={p.id} value={p.id}>{p.key}: {p.name}</option>)}
      </Select>
      <div className="demo-grid">
        <Text id="demo-name" label="Name" value={draft.name} onChange={set('name')} testId="demo-name" />
        <Text id="demo-key" label="Key" value={draft.key} onChange={set('key')} testId="demo-key" />
        <Select id="demo-lead" label="Lead" value={draft.lead} onChange={set('lead')} testId="demo-lead">
          {state.users.map((u) => <option key={u.accountId} value={u.accountId}>{u.displayName}</option>)}
        </Select>
        <Select id="demo-category" label="Category" value={draft.category || ''} testId="demo-category"
          onChange={(v) => set('category')(v || null)}>
          <option value="">(none)</option>
          {state.categories.map((c) => <option key={c.id} value={c.id}>{c.name}</option>)}
        </Select>
        <Select id="demo-assignee" label="Default assignee" value={draft.assigneeType} onChange={set('assigneeType')}
          testId="demo-assignee">
          {state.assigneeTypes.map((t) => <option key={t} value={t}>{t}</option>)}
        </Select>
        <Text id="demo-url" label="URL" value={draft.url} onChange={set('url')} testId="demo-url" placeholder="(none)" />
      </div>
      <div className="field">
        <label className="field-label" htmlFor="demo-description">Description</label>
        <textarea id="demo-description" className="demo-textarea" rows={2} value={draft.description}
          onChange={(e) => set('description')(e.target.value)} data-testid="demo-description" />
      </div>
      <Button type="submit" appearance="primary" isLoading={busy} testId="demo-project-save">Save in Jira</Button>
      <Answer result={result} />
    </form>
  );
}

function listOf(text) {
  return text.split(',').map((v) => v.trim()).filter(Boolean);
}

function FieldChangeForm({ state }) {
  const types = state.fieldTypes;
  const [projectKey, setProjectKey] = useState(state.projects[0].key);
  const [example, setExample] = useState(types[0]);
  const [field, setField] = useState(types[0]);
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState(null);

  function chooseType(type) {
    const chosen = types.find((t) => t.type === type);
    setExample(chosen);
    setField(chosen);
  }
  const set = (name) => (value) => setField((old) => ({ ...old, [name]: value }));

  async function submit(event) {
    event.preventDefault();
    const multi = MULTI.has(field.type);
    const value = (text) => (multi ? listOf(text) : text === '' ? null : text);
    const id = Number(field.id);
    const body = {
      project: { key: projectKey },
      changes: [{ field: { id: Number.isFinite(id) && String(field.id).trim() !== '' ? id : field.id, name: field.name, type: field.type },
        previous: value(field.previous), current: value(field.current) }],
    };
    setBusy(true);
    try {
      const answer = await site('POST', '/field-changes', body);
      setResult({ testId: 'field', what: 'Projectrak sent the change', addon: answer.addon });
    } catch (err) {
      setResult({ testId: 'field', error: err.message });
    } finally {
      setBusy(false);
    }
  }

  return (
    <form onSubmit={submit} noValidate autoComplete="off" aria-labelledby="demo-field-title" data-testid="demo-field-form">
      <Heading size="small" as="h3" id="demo-field-title">A Projectrak field change</Heading>
      <div className="demo-grid">
        <Select id="demo-field-project" label="Project" value={projectKey} onChange={setProjectKey} testId="demo-field-project">
          {state.projects.map((p) => <option key={p.id} value={p.key}>{p.key}: {p.name}</option>)}
        </Select>
        <Select id="demo-field-type" label="Field type" value={example.type} onChange={chooseType} testId="demo-field-type">
          {types.map((t) => <option key={t.type} value={t.type}>{t.type}</option>)}
        </Select>
        <Text id="demo-field-id" label="Field id" value={String(field.id)} onChange={set('id')} testId="demo-field-id" />
        <Text id="demo-field-name" label="Field name" value={field.name} onChange={set('name')} testId="demo-field-name" />
        <Text id="demo-field-previous" label="Previous" value={field.previous} onChange={set('previous')} testId="demo-field-previous" />
        <Text id="demo-field-current" label="Current" value={field.current} onChange={set('current')} testId="demo-field-current" />
      </div>
      <p className="subtle">{MULTI.has(field.type) ? 'A list: values separated by commas.' : 'Empty means no value (null).'}
        {field.type === 'formula' ? ' Formula fields are never sent.' : ''}</p>
      <Button type="submit" appearance="primary" isLoading={busy} testId="demo-field-send">Send change</Button>
      <Answer result={result} />
    </form>
  );
}

function Received({ item, first }) {
  let body = item.body;
  try { body = JSON.stringify(JSON.parse(item.body), null, 2); } catch (err) { /* shown as received */ }
  return (
    <li className="demo-received" data-testid="received-item" data-verified={item.verified ? 'yes' : 'no'}>
      <div className="demo-received-head">
        <Lozenge appearance={item.verified ? 'success' : 'removed'} testId="received-verified">
          {item.verified ? 'signature verifies' : 'signature fails'}
        </Lozenge>
        <span className="subtle"><time dateTime={item.at}>{new Date(item.at).toLocaleTimeString()}</time> · POST {item.path} · answered {item.answered}</span>
      </div>
      <p className="subtle" data-testid="received-detail">{item.detail}</p>
      <details>
        <summary>Headers</summary>
        <pre className="code-block" tabIndex={0} aria-label="Headers received" data-testid="received-headers">{item.headers.map(([k, v]) => `${k}: ${v}`).join('\n')}</pre>
      </details>
      <details open={first}>
        <summary>Body</summary>
        <pre className="code-block" tabIndex={0} aria-label="Body received" data-testid="received-body">{body}</pre>
      </details>
    </li>
  );
}

// What the receiver answers: 200, or a failure to watch the retries (5xx) or the webhook disabled (410).
function ReceiverAnswer({ state }) {
  const [answer, setAnswer] = useState(String(state.receiverAnswer));
  const [error, setError] = useState(null);
  async function change(value) {
    setError(null);
    try {
      await site('PUT', '/receiver', { answer: Number(value) });
      setAnswer(value);
    } catch (err) {
      setError(err.message);
    }
  }
  return (
    <div className="demo-receiver-answer">
      <Select id="demo-receiver-answer" label="The receiver answers" value={answer} onChange={change}
        testId="demo-receiver-answer">
        {state.receiverAnswers.map((a) => <option key={a.status} value={String(a.status)}>{a.status} {a.reason}</option>)}
      </Select>
      {error && <p className="field-error" role="alert">{error}</p>}
    </div>
  );
}

export function DemoPanel() {
  const [state, setState] = useState(null);
  const [error, setError] = useState(null);
  const [items, setItems] = useState([]);
  const last = useRef(0);
  const [copied, setCopied] = useState(false);

  const loadState = useCallback(() => site('GET', '/state').then(setState, (err) => setError(err.message)), []);
  useEffect(() => { loadState(); }, [loadState]);
  useEffect(() => {
    let stopped = false;
    let timer = null;
    async function poll() {
      try {
        const answer = await site('GET', `/received?after=${last.current}`);
        if (answer.items.length) {
          last.current = answer.items[0].id;
          setItems((old) => answer.items.concat(old).slice(0, 50));
        }
      } catch (err) { /* the next poll tries again */ }
      if (!stopped) timer = setTimeout(poll, POLL_MS);
    }
    poll();
    return () => { stopped = true; clearTimeout(timer); };
  }, []);

  async function copy() {
    try {
      await navigator.clipboard.writeText(state.receiverUrl);
      setCopied(true);
    } catch (err) { setCopied(false); }
  }

  return (
    <aside className="demo-panel" aria-labelledby="demo-title" data-testid="demo-panel">
      <div className="demo-title-row">
        <Heading size="medium" as="h2" id="demo-title">Demo site</Heading>
        <Lozenge appearance="new">local</Lozenge>
      </div>
      {error && <SectionMessage appearance="error" title="The demo site is not answering"><p>{error}</p></SectionMessage>}
      {state && (
        <>
          <p className="subtle">
            A Jira site inside <code>addon demo</code>. You are <strong>{state.administrator.displayName}</strong>, its
            administrator. Every change below reaches the add-on as Jira or Projectrak would send it, signed; the add-on
            then delivers it over HTTPS to this local receiver:
          </p>
          <p className="demo-receiver">
            <span className="mono" data-testid="receiver-url">{state.receiverUrl}</span>{' '}
            <Button appearance="subtle" onClick={copy} testId="receiver-copy">{copied ? 'Copied' : 'Copy'}</Button>
          </p>
          <ReceiverAnswer state={state} />
          <section className="demo-section"><ProjectForm state={state} onSaved={() => loadState()} /></section>
        </>
      )}
      <section className="demo-section" aria-labelledby="received-title">
        <Heading size="small" as="h3" id="received-title">What the receiver got ({items.length})</Heading>
        {items.length === 0 && <p className="subtle" data-testid="received-empty">Nothing yet. Create a webhook with the receiver’s URL, then change a project.</p>}
        <ol className="demo-received-list">{items.map((item, i) => <Received key={item.id} item={item} first={i === 0} />)}</ol>
      </section>
      {state && <section className="demo-section"><FieldChangeForm state={state} /></section>}
    </aside>
  );
}
