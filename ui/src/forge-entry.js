// The admin page as Forge Custom UI: the Connect page's own script, with invokeRemote as its transport.
// Imports run in order: the transport is in place before the page script starts.
import './install-transport.js';
// `admin-page-script` is the Connect page's static admin.js, aliased by scripts/build.mjs (one codebase).
import 'admin-page-script';
