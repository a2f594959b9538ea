// Builds the admin page (src/admin/main.jsx: React and Atlassian's design system) into one bundle, admin.js and
// admin.css, that serves both doors, and writes it to:
//   the Connect page's static folder (served by the add-on at /static/, packaged in the wheel; not committed);
//   forge/static/admin/ (the manifest's `admin-page` resource), with index.html: the Connect page's template
//   without Connect's all.js and Jinja placeholders.
// It also builds the demo page (src/demo/main.jsx: the same admin page beside the demo site's panel) into demo.js and
// demo.css in addon/demo/static/, which only `addon demo` serves (not committed), or into --demo-out; a build with
// --connect-out alone (a test's, into a folder of its own) leaves the demo's files alone.
// Usage: node ui/scripts/build.mjs [Forge output directory] [--connect-out directory] [--demo-out directory]
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import * as esbuild from 'esbuild';

const ui = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const root = path.resolve(ui, '..');
const args = process.argv.slice(2);
const connectFlag = args.indexOf('--connect-out');
const connectOut = connectFlag >= 0 ? path.resolve(args.splice(connectFlag, 2)[1]) : null;
const demoFlag = args.indexOf('--demo-out');
const demoOut = demoFlag >= 0 ? path.resolve(args.splice(demoFlag, 2)[1])
  : connectOut ? null : path.join(root, 'addon', 'demo', 'static');
const out = path.resolve(args[0] || path.join(root, 'forge', 'static', 'admin'));

// The Connect page's files: inside the package's admin/ when the package carries its own templates and static
// files, else at the repository's root (the layout before that move).
function pageFile(kind, name) {
  const candidates = [path.join(root, 'addon', 'admin', kind, name), path.join(root, kind, name)];
  const found = candidates.find((file) => existsSync(file));
  if (!found) throw new Error(`the Connect admin page's ${name} is at none of: ${candidates.join(', ')}`);
  return found;
}

function replaceOnce(text, pattern, replacement, what) {
  const matches = text.match(new RegExp(pattern.source, 'g' + pattern.flags.replace('g', ''))) || [];
  if (matches.length !== 1) throw new Error(`admin_webhooks.html: expected one ${what}, found ${matches.length}`);
  return text.replace(pattern, replacement);
}

function forgeIndexHtml(template) {
  let html = template;
  // Connect's all.js: under Forge the bridge is the host's, and Custom UI loads no outside script.
  html = replaceOnce(html, /[ \t]*<script src="https:\/\/connect-cdn\.atl-paas\.net\/all\.js"><\/script>\n/,
    '', 'all.js script tag');
  // The API's location: under Forge, invokeRemote paths are relative to the remote, so these have no use.
  html = replaceOnce(html, /[ \t]*<meta name="addon-base-url" content="\{\{ base_url \}\}">\n/, '', 'addon-base-url meta');
  html = replaceOnce(html, /[ \t]*<meta name="addon-api-base" content="\{\{ api_base \}\}">\n/, '', 'addon-api-base meta');
  // Forge serves a resource's files under a path of its own: relative URLs.
  html = replaceOnce(html, /\{\{ url_for\('static', filename='admin\.css'\) \}\}/, './admin.css', 'admin.css link');
  html = replaceOnce(html, /\{\{ url_for\('static', filename='admin\.js'\) \}\}/, './admin.js', 'admin.js script');
  const left = html.match(/\{\{.*?\}\}|\{%.*?%\}/);
  if (left) throw new Error(`admin_webhooks.html: ${left[0]} has no Forge value: teach scripts/build.mjs about it`);
  return html;
}

// The Connect page's static folder: beside its template (inside the package once it carries them).
function connectStaticDir() {
  const template = pageFile('templates', 'admin_webhooks.html');
  return path.join(path.dirname(path.dirname(template)), 'static');
}

const bundleDir = path.join(ui, 'build');
rmSync(bundleDir, { recursive: true, force: true });
await esbuild.build({
  entryPoints: { admin: path.join(ui, 'src', 'admin', 'main.jsx'), demo: path.join(ui, 'src', 'demo', 'main.jsx') },
  bundle: true,
  format: 'iife',
  platform: 'browser',
  target: ['es2020'],
  jsx: 'automatic',
  minify: true,
  legalComments: 'none',
  define: { 'process.env.NODE_ENV': '"production"', 'process.env': '{}' },
  loader: { '.svg': 'dataurl', '.png': 'dataurl', '.woff': 'dataurl', '.woff2': 'dataurl' },
  outdir: bundleDir,
  logLevel: 'warning',
});

function copyBundle(dir) {
  mkdirSync(dir, { recursive: true });
  for (const name of ['admin.js', 'admin.css']) copyFileSync(path.join(bundleDir, name), path.join(dir, name));
}

rmSync(out, { recursive: true, force: true });
copyBundle(out);
writeFileSync(path.join(out, 'index.html'), forgeIndexHtml(readFileSync(pageFile('templates', 'admin_webhooks.html'), 'utf8')));
const connectDir = connectOut || connectStaticDir();
copyBundle(connectDir);
if (demoOut) {
  mkdirSync(demoOut, { recursive: true });
  for (const name of ['demo.js', 'demo.css']) copyFileSync(path.join(bundleDir, name), path.join(demoOut, name));
}
console.log(`built the admin page into ${path.relative(process.cwd(), out) || '.'} (Forge) and ${path.relative(process.cwd(), connectDir) || '.'} (Connect)`);
