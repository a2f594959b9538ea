// The demo page (`addon demo`): the real admin page, signed in as the demo site's administrator, beside the demo
// site's panel (its projects, Projectrak field changes, and what the local receiver got).
import { createRoot } from 'react-dom/client';

import '@atlaskit/css-reset';
import '../admin/page.css';
import './demo.css';

import { App } from '../admin/App.jsx';
import { demoHost } from './host.js';
import { DemoPanel } from './DemoPanel.jsx';

createRoot(document.getElementById('root')).render(
  <div className="demo-layout">
    <div className="demo-admin"><App host={demoHost()} /></div>
    <DemoPanel />
  </div>,
);
