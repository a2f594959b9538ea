// The admin page's one bundle, for both doors: Jira's Connect iframe (served by the add-on at /admin/webhooks)
// and Forge Custom UI (forge/static/admin). Which door it is behind is read from the host at start.
import { createRoot } from 'react-dom/client';

import '@atlaskit/css-reset';
import './page.css';

import { Component } from 'react';

import SectionMessage from '@atlaskit/section-message';

import { App } from './App.jsx';
import { createHost } from './host.js';

// A fault in the page shows as a message that says what to do, not as a blank frame.
class Fault extends Component {
  constructor(props) {
    super(props);
    this.state = { failed: false };
  }

  static getDerivedStateFromError() {
    return { failed: true };
  }

  render() {
    if (!this.state.failed) return this.props.children;
    return (
      <main className="page" data-testid="page-fault">
        <SectionMessage appearance="error" title="This page stopped working">
          <p>Reload the page. If it happens again, tell your Projectrak contact what you were doing.</p>
        </SectionMessage>
      </main>
    );
  }
}

createRoot(document.getElementById('root')).render(<Fault><App host={createHost()} /></Fault>);
