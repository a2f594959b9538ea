// Hands the Forge transport to the page script, which picks its transport when it starts.
import { invokeRemote } from '@forge/bridge';

import { forgeTransport } from './forge-transport.js';

window.projectrakAdminTransport = forgeTransport(invokeRemote);
