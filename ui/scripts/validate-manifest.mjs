// Checks a Forge manifest with Atlassian's own validator (@forge/manifest), the checks `forge lint` and
// `forge deploy` make offline:
//   1. the full validation (schema, modules, endpoints, resources, permissions, remotes...);
//   2. validateTriggerScopes for every event of every trigger (the scopes each product event needs);
//   3. every event name against the events Forge knows: the product events of @forge/manifest's own
//      event-to-scope mapping and Forge's app lifecycle events. The full validation lets an unknown name through.
// Usage: node ui/scripts/validate-manifest.mjs [--json] [path/to/manifest.yml]
//   (default: the repository's forge/manifest.yml). Exits 0 when valid, 1 with one line per error on stderr
//   otherwise; warnings are printed and do not fail. With --json, stdout is one JSON object
//   {valid, errors, warnings, manifest}: the manifest as the validator parsed it, for tests to read.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import forgeManifest from '@forge/manifest';

const { ProcessorBuilder, ValidationTypes, validateTriggerScopes } = forgeManifest;
const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));

// Forge's app lifecycle events (developer.atlassian.com/platform/forge/events-reference/life-cycle/): they need no
// scope, so they are not in the product event mapping.
const LIFECYCLE_EVENTS = new Set(['avi:forge:installed:app', 'avi:forge:upgraded:app']);
const PRODUCT_EVENTS = new Set(
  // the package's exports hide the file: find it beside the package's main module (out/index.js)
  JSON.parse(readFileSync(
    path.join(path.dirname(require.resolve('@forge/manifest')), 'mapping', 'product-event-to-scope-mapping.json'), 'utf8'))
    .mapping.map((entry) => entry.productEvent));

function where(item) {
  return item.line ? ` (line ${item.line}${item.column ? `, column ${item.column}` : ''})` : '';
}

const args = process.argv.slice(2);
const json = args.includes('--json');
const file = path.resolve(args.find((arg) => arg !== '--json') || path.join(here, '..', '..', 'forge', 'manifest.yml'));
const result = await ProcessorBuilder.instance().withValidation(ValidationTypes.FULL).build().process(file);
const errors = [];
const warnings = [];
for (const item of result.errors || []) {
  const line = `${item.message}${where(item)}`;
  if (item.level === 'error') errors.push(`full validation: ${line}`);
  else warnings.push(`${item.level}: ${line}`);
}

const content = result.manifestObject && result.manifestObject.typedContent;
if (content) {
  const scopes = (content.permissions && content.permissions.scopes) || [];
  const scopeNames = Array.isArray(scopes) ? scopes : Object.keys(scopes);
  const triggers = (content.modules && content.modules.trigger) || [];
  for (const trigger of triggers) {
    const events = Array.isArray(trigger.events) ? trigger.events : [];
    for (const entry of events) {
      const event = typeof entry === 'string' ? entry : entry && entry.name;
      if (!PRODUCT_EVENTS.has(event) && !LIFECYCLE_EVENTS.has(event)) {
        errors.push(`trigger ${trigger.key}: ${JSON.stringify(event)} is not an event Forge knows`);
        continue;
      }
      const check = await validateTriggerScopes(event, scopeNames);
      if (!check.valid) {
        errors.push(`trigger ${trigger.key}: ${event} needs the scopes ${check.missingScopes.join(', ')}`);
      }
    }
  }
} else if (!errors.length) {
  errors.push('full validation: the manifest could not be read');
}

if (json) {
  console.log(JSON.stringify({ valid: errors.length === 0, errors, warnings, manifest: content || null }));
} else {
  for (const line of warnings) console.log(line);
}
if (errors.length) {
  for (const line of errors) console.error(line);
  console.error(`${file}: ${errors.length} error(s)`);
  process.exit(1);
}
if (!json) console.log(`${file}: valid`);
