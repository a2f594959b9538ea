// The admin page's one bundle, for both doors: Jira's Connect iframe (served by the add-on at /admin/webhooks)
// and Forge Custom UI (forge/static/admin). Which door it is behind is read from the host at start.
import { createRoot } from 'react-dom/client';

import '@atlaskit/css-reset';
import './page.css';

import { App } from './App.jsx';
import { createHost } from './host.js';

createRoot(document.getElementById('root')).render(<App host={createHost()} />);
