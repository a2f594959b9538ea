// Builds the admin page as Forge Custom UI into forge/static/admin/ (the manifest's `admin-page` resource):
//   index.html  the Connect page's template (the same markup) without Connect's all.js and Jinja placeholders;
//   admin.css   the Connect page's stylesheet, as is;
//   admin.js    the Connect page's script bundled behind src/forge-entry.js (invokeRemote as its transport).
// Usage: node ui/scripts/build.mjs [output directory]
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import * as esbuild from 'esbuild';

const ui = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const root = path.resolve(ui, '..');
const out = path.resolve(process.argv[2] || path.join(root, 'forge', 'static', 'admin'));

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

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
writeFileSync(path.join(out, 'index.html'), forgeIndexHtml(readFileSync(pageFile('templates', 'admin_webhooks.html'), 'utf8')));
copyFileSync(pageFile('static', 'admin.css'), path.join(out, 'admin.css'));
await esbuild.build({
  entryPoints: [path.join(ui, 'src', 'forge-entry.js')],
  alias: { 'admin-page-script': pageFile('static', 'admin.js') },
  bundle: true,
  format: 'iife',
  platform: 'browser',
  target: ['es2020'],
  minify: true,
  legalComments: 'none',
  define: { 'process.env.NODE_ENV': '"production"' },
  outfile: path.join(out, 'admin.js'),
  logLevel: 'warning',
});
console.log(`built the Forge admin page into ${path.relative(process.cwd(), out) || '.'}`);
